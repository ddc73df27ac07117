package labels

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCodings(t *testing.T) {
	require.Len(t, Codings, Count)
	require.Equal(t, Coding{}, Codings[0], "background has no coding")
	used := map[string]bool{}
	for i := 1; i < Count; i++ {
		c, name := Codings[i], Names[i]
		require.Equal(t, anatomicalStructure, c.Category, name)
		require.Equal(t, "SCT", c.Type.Scheme, name)
		require.True(t, validSCTID(c.Type.Value), "class %d %s: %s is not a SNOMED CT concept id", i, name, c.Type.Value)
		require.NotEmpty(t, c.Type.Meaning, name)
		used[c.Type.Value] = true
		// the side in the name is the modifier, except where SNOMED codes the side itself
		sided := strings.Contains(name, "_left") || strings.Contains(name, "_right")
		switch {
		case strings.HasPrefix(name, "heart_") || name == "lung_middle_lobe_right":
			require.Nil(t, c.Modifier, name)
		case sided:
			require.NotNil(t, c.Modifier, name)
			require.Equal(t, strings.Contains(name, "_left"), *c.Modifier == left, name)
		default:
			require.Nil(t, c.Modifier, name)
		}
	}
	for _, tc := range structureCodes {
		require.True(t, used[tc[0]], "table entry %s %q is used by no class", tc[0], tc[1])
	}
	for _, c := range []Code{anatomicalStructure, left, right} {
		require.True(t, validSCTID(c.Value), c.Value)
	}
	require.Equal(t, "Kidney", Codings[2].Type.Meaning)
	require.Equal(t, right, *Codings[2].Modifier) // kidney_right
	require.Equal(t, "Third rib", Codings[60].Type.Meaning)
	require.Equal(t, left, *Codings[60].Modifier) // rib_left_3
}

// validSCTID checks a SNOMED CT identifier's form: 6 to 18 digits, the partition of a concept
// (00, or 10 in an extension), and its Verhoeff check digit, which catches every single-digit
// typo and every swap of neighbouring digits.
func validSCTID(s string) bool {
	if len(s) < 6 || len(s) > 18 || s[0] == '0' || strings.Trim(s, "0123456789") != "" {
		return false
	}
	if p := s[len(s)-3 : len(s)-1]; p != "00" && p != "10" {
		return false
	}
	d := [10][10]int{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 0, 6, 7, 8, 9, 5}, {2, 3, 4, 0, 1, 7, 8, 9, 5, 6},
		{3, 4, 0, 1, 2, 8, 9, 5, 6, 7}, {4, 0, 1, 2, 3, 9, 5, 6, 7, 8}, {5, 9, 8, 7, 6, 0, 4, 3, 2, 1}, {6, 5, 9, 8, 7, 1, 0, 4, 3, 2},
		{7, 6, 5, 9, 8, 2, 1, 0, 4, 3}, {8, 7, 6, 5, 9, 3, 2, 1, 0, 4}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0}}
	p := [8][10]int{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 5, 7, 6, 2, 8, 3, 0, 9, 4}, {5, 8, 0, 3, 7, 9, 6, 1, 4, 2},
		{8, 9, 1, 6, 0, 4, 3, 5, 2, 7}, {9, 4, 5, 3, 1, 2, 6, 8, 7, 0}, {4, 2, 8, 6, 5, 7, 3, 9, 0, 1}, {2, 7, 9, 3, 8, 0, 6, 4, 1, 5},
		{7, 0, 4, 6, 9, 1, 3, 2, 5, 8}}
	c := 0
	for i := 0; i < len(s); i++ {
		c = d[c][p[i%8][s[len(s)-1-i]-'0']]
	}
	return c == 0
}

func TestValidSCTID(t *testing.T) {
	require.True(t, validSCTID("10200004"))  // liver
	require.False(t, validSCTID("10200005")) // check digit
	require.False(t, validSCTID("12000004")) // swapped digits
	require.False(t, validSCTID("10200024")) // partition 02 is a description id
}
