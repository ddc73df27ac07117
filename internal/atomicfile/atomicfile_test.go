package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func writeString(s string) func(io.Writer) error {
	return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// entries lists a directory, temporaries included.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// A set whose second file fails leaves the first target as it was (here: an earlier result
// being replaced with --force) and no temporary behind; a set that succeeds replaces both.
func TestSetAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "labels.nii"), filepath.Join(dir, "labels.txt")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opt := Options{Force: true}
	var s Set
	if err := s.Write(a, opt, writeString("new labels")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk full")
	if err := s.Write(b, opt, func(w io.Writer) error { io.WriteString(w, "half"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the fill's error", err)
	}
	s.Abort()
	if read(t, a) != "old" || read(t, b) != "old" {
		t.Fatalf("a failed set changed its targets: %q, %q", read(t, a), read(t, b))
	}
	if got := entries(t, dir); len(got) != 2 {
		t.Fatalf("temporaries left behind: %v", got)
	}

	var ok Set
	for p, content := range map[string]string{a: "new labels", b: "new table"} {
		if err := ok.Write(p, opt, writeString(content)); err != nil {
			t.Fatal(err)
		}
	}
	if read(t, a) != "old" {
		t.Fatal("a file changed before Commit")
	}
	if err := ok.Commit(); err != nil {
		t.Fatal(err)
	}
	ok.Abort() // harmless after Commit
	if read(t, a) != "new labels" || read(t, b) != "new table" {
		t.Fatalf("committed set: %q, %q", read(t, a), read(t, b))
	}
	if got := entries(t, dir); len(got) != 2 {
		t.Fatalf("temporaries left behind: %v", got)
	}
}

// Without Force an existing target is refused before anything is written.
func TestSetRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.nii")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var s Set
	if err := s.Write(p, Options{}, writeString("new")); !errors.Is(err, ErrExists) {
		t.Fatalf("got %v, want ErrExists", err)
	}
	if got := entries(t, dir); len(got) != 1 {
		t.Fatalf("something was written: %v", got)
	}
}

// WriteNew never replaces a file: the second writer gets ErrExist and the first one's content
// stays; nothing temporary is left either way.
func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "manifest.csv")
	if err := WriteNew(p, writeString("first")); err != nil {
		t.Fatal(err)
	}
	if err := WriteNew(p, writeString("second")); !errors.Is(err, os.ErrExist) {
		t.Fatalf("got %v, want ErrExist", err)
	}
	if read(t, p) != "first" {
		t.Fatalf("replaced: %q", read(t, p))
	}
	boom := errors.New("boom")
	if err := WriteNew(filepath.Join(dir, "other"), func(w io.Writer) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	if got := entries(t, dir); len(got) != 1 {
		t.Fatalf("left behind: %v", got)
	}
}
