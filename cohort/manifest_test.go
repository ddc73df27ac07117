package cohort

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const dir = "/data/cohort"

func parse(s string) (*Manifest, error) { return Parse(strings.NewReader(s), "m.csv", dir) }

func TestParse(t *testing.T) {
	m, err := parse("\ufeffcase_id, input ,age,series,site\r\n" +
		"a,a.nii.gz,54,,north\r\n" +
		"b,/abs/b,61,1.2.3,south\r\n" +
		"\"c d\",\"sub/x y.nii\",70, - ,\"east, upper\"\r\n")
	require.NoError(t, err)
	assert.Equal(t, []string{"case_id", "input", "age", "series", "site"}, m.Header, "BOM and spaces trimmed from the header")
	assert.Equal(t, []string{"age", "site"}, m.Carried())
	require.Len(t, m.Cases, 3)
	want := []Case{
		{Index: 0, Line: 2, ID: "a", Input: filepath.Join(dir, "a.nii.gz"), Row: []string{"a", filepath.Join(dir, "a.nii.gz"), "54", "", "north"}},
		{Index: 1, Line: 3, ID: "b", Input: "/abs/b", Series: "1.2.3", Row: []string{"b", "/abs/b", "61", "1.2.3", "south"}},
		{Index: 2, Line: 4, ID: "c d", Input: filepath.Join(dir, "sub/x y.nii"), Series: "-", Row: []string{"c d", filepath.Join(dir, "sub/x y.nii"), "70", " - ", "east, upper"}},
	}
	assert.Equal(t, want, m.Cases)
	assert.Equal(t, []string{"70", "east, upper"}, m.CarriedValues(m.Cases[2]))

	// Encode writes the same form with absolute inputs, and parses back to the same cases
	var b bytes.Buffer
	require.NoError(t, m.Encode(&b, nil))
	assert.Equal(t, "case_id,input,age,series,site\n"+
		"a,/data/cohort/a.nii.gz,54,,north\nb,/abs/b,61,1.2.3,south\nc d,/data/cohort/sub/x y.nii,70,\" - \",\"east, upper\"\n", b.String())
	back, err := Parse(&b, "copy", "/elsewhere")
	require.NoError(t, err)
	assert.Equal(t, m.Cases, back.Cases)
	require.NoError(t, m.Within(back))

	b.Reset()
	require.NoError(t, m.Encode(&b, []Case{m.Cases[1]}))
	sub, err := Parse(&b, "rerun", "/elsewhere")
	require.NoError(t, err)
	require.NoError(t, sub.Within(m), "a part of the manifest (rerun.csv) is within it")
	require.Error(t, m.Within(sub), "the whole is not within a part")
}

// Every problem is refused before anything runs, with the line it is on.
func TestParseRefuses(t *testing.T) {
	long := strings.Repeat("x", MaxCaseIDBytes+1)
	for _, c := range []struct{ name, csv, want string }{
		{"empty file", "", "empty"},
		{"header only", "case_id,input\n", "no cases"},
		{"no input column", "case_id,path\na,x\n", "lacks case_id or input"},
		{"no case_id column", "id,input\na,x\n", "lacks case_id or input"},
		{"duplicate column", "case_id,input,age,age\na,x,1,2\n", `names column "age" twice`},
		{"unnamed column", "case_id,input,\na,x,1\n", "column 3 of the header has no name"},
		{"reserved column", "case_id,input,volume_ml\na,x,1\n", `"volume_ml" is one of the summary's own columns`},
		{"volume-like column", "case_id,input,liver_volume_ml\na,x,1\n", "ends like the summary's volume columns"},
		{"duplicate id", "case_id,input\na,x\nb,y\na,z\n", `line 4: case id "a" repeats line 2`},
		{"ids differing in case", "case_id,input\nCase1,x\ncase1,y\n", "only in case"},
		{"empty id", "case_id,input\n,x\n", "line 2: empty case id"},
		{"slash", "case_id,input\na/b,x\n", "path-like"},
		{"backslash", "case_id,input\na\\b,x\n", "path-like"},
		{"dot dot", "case_id,input\n..,x\n", "path-like"},
		{"dot", "case_id,input\n.,x\n", "path-like"},
		{"hidden", "case_id,input\n.a,x\n", "path-like"},
		{"spaces", "case_id,input\n a,x\n", "leading or trailing spaces"},
		{"control", "case_id,input\n\"a\tb\",x\n", "cannot be in a folder name"},
		{"windows-reserved", "case_id,input\na:b,x\n", "cannot be in a folder name"},
		{"too long", "case_id,input\n" + long + ",x\n", "bytes long"},
		{"no input", "case_id,input\na, \n", `case "a" has no input`},
		{"short row", "case_id,input,age\na,x,1\nb,y\n", "line 3: not as many fields"},
		{"long row", "case_id,input\na,x,1\n", "line 2: not as many fields"},
		{"broken quote", "case_id,input\n\"a,x\n", "line 2"},
		{"not UTF-8", "case_id,input\na\xff,x\n", "not UTF-8"},
		{"several problems", "case_id,input\na/b,x\n,y\n", "(and 1 more problems)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(c.csv)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrManifest), "%v is not ErrManifest", err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestParseLimits(t *testing.T) {
	wide := "case_id,input" + strings.Repeat(",c", MaxColumns) + "\n"
	for i := 0; i < MaxColumns; i++ {
		wide = strings.Replace(wide, ",c,", fmt.Sprintf(",c%d,", i), 1)
	}
	_, err := parse(wide)
	require.ErrorContains(t, err, "columns; at most")
	// a file past the size limit is refused without being read whole
	defer func(n int64) { maxManifestBytes = n }(maxManifestBytes)
	maxManifestBytes = 1 << 20
	_, err = Parse(zeros{}, "big.csv", dir)
	require.ErrorContains(t, err, "larger than 1 MiB")
}

// zeros is an endless reader.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestShard(t *testing.T) {
	var b strings.Builder
	b.WriteString("case_id,input\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "c%d,x\n", i)
	}
	m, err := parse(b.String())
	require.NoError(t, err)
	seen := map[string]int{}
	for i := 0; i < 3; i++ {
		for _, c := range m.Shard(i, 3) {
			assert.Equal(t, i, c.Index%3, "stride")
			seen[c.ID]++
		}
	}
	assert.Len(t, seen, 10)
	for id, n := range seen {
		assert.Equal(t, 1, n, "case %s in %d shards", id, n)
	}
	assert.Equal(t, []string{"c1", "c4", "c7"}, ids(m.Shard(1, 3)))
	assert.Len(t, m.Shard(0, 1), 10)
	assert.Empty(t, m.Shard(12, 20), "more shards than cases: some are empty")
	assert.Nil(t, m.Shard(3, 3))
	assert.Nil(t, m.Shard(-1, 3))
}

func ids(cs []Case) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func TestCheckCaseID(t *testing.T) {
	for _, ok := range []string{"a", "LIDC-IDRI-0001", "1.2.840.113619.2.55", "case 7", "ü-42", "a..b", "x[1]"} {
		assert.NoError(t, CheckCaseID(ok), ok)
	}
}
