package labels

import (
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/shared"
)

// The embedded copy must be the bundle's label map in ../shared.
func TestNamesMatchGolden(t *testing.T) {
	b, err := os.ReadFile(shared.Path(t, "golden", "labels.json"))
	require.NoError(t, err)
	var m map[string]string
	require.NoError(t, json.Unmarshal(b, &m))
	require.Len(t, m, Count)
	for k, v := range m {
		i, err := strconv.Atoi(k)
		require.NoError(t, err)
		require.Equal(t, v, Names[i])
	}
	require.Equal(t, "background", Names[0])
	require.Equal(t, "urinary_bladder", Names[104])
}

func TestColorsDistinct(t *testing.T) {
	seen := map[[3]uint8]int{}
	for i := 1; i < Count; i++ {
		c := Colors[i]
		j, dup := seen[c]
		require.False(t, dup, "classes %d and %d share a colour", i, j)
		seen[c] = i
		require.NotEqual(t, [3]uint8{}, c)
	}
}
