// Package shared locates the read-only ../shared folder (golden vectors, sample CTs) that sits
// beside the repository root, for tests, benchmarks and the dev server.
package shared

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the absolute path of ../shared relative to the repository root (the folder
// holding go.mod), or an error that says where it looked. CTSEG_SHARED overrides it.
func Dir() (string, error) {
	if d := os.Getenv("CTSEG_SHARED"); d != "" {
		return filepath.Abs(d)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			s := filepath.Join(filepath.Dir(d), "shared")
			if _, err := os.Stat(filepath.Join(s, "golden")); err != nil {
				return "", fmt.Errorf("shared folder not found at %s (expected beside the repository root)", s)
			}
			return s, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: cannot locate ../shared", wd)
		}
	}
}

// Path joins parts under the shared folder and fails the test when the folder or the file is
// missing: a golden test must never pass because its data is absent.
func Path(t testing.TB, parts ...string) string {
	t.Helper()
	d, err := Dir()
	if err != nil {
		t.Fatalf("%v", err)
	}
	p := filepath.Join(append([]string{d}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared test data missing: %v", err)
	}
	return p
}
