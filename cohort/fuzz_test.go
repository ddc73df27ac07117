package cohort

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse: any bytes give a manifest or an error, never a panic; a manifest that parses has
// valid, distinct case ids, and its own form (Encode) parses back to the same cases.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"case_id,input\na,a.nii\n",
		"\ufeffcase_id,input,series,age\r\na,x,1.2,3\r\n\"b c\",\"y, z\",,4\r\n",
		"case_id,input\na/b,x\n",
		"input,case_id\n\"a\"\"b\",x\n",
		"case_id,input\na,x\nA,y\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(bytes.NewReader(b), "fuzz.csv", "/d")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of several lines: %q", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, c := range m.Cases {
			if err := CheckCaseID(c.ID); err != nil {
				t.Fatalf("accepted %v", err)
			}
			if seen[strings.ToLower(c.ID)] {
				t.Fatalf("accepted a duplicate id %q", c.ID)
			}
			seen[strings.ToLower(c.ID)] = true
			if !strings.HasPrefix(c.Input, "/") {
				t.Fatalf("input %q not absolute", c.Input)
			}
		}
		var out bytes.Buffer
		if err := m.Encode(&out, nil); err != nil {
			t.Fatal(err)
		}
		back, err := Parse(&out, "again", "/elsewhere")
		if err != nil {
			t.Fatalf("its own form does not parse: %v\n%q", err, out.String())
		}
		if err := back.Within(m); err != nil || len(back.Cases) != len(m.Cases) {
			t.Fatalf("round trip changed the cases: %v", err)
		}
	})
}
