// Package atomicfile writes output files so that a failure never leaves a partial or corrupt
// file behind: the data goes to a temporary file in the same directory, is synced, and is
// renamed over the target only when complete.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrExists is returned when the target exists and overwriting was not allowed.
var ErrExists = errors.New("output exists (use --force to overwrite)")

// Options control overwriting and input protection.
type Options struct {
	// Force allows replacing an existing file.
	Force bool
	// Inputs are paths the output must not be (never overwrite an input, even with Force).
	Inputs []string
}

// Check reports whether path may be written under opt, before any work is done.
func Check(path string, opt Options) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for _, in := range opt.Inputs {
		if in == "" {
			continue
		}
		a, err := filepath.Abs(in)
		if err == nil && a == abs {
			return fmt.Errorf("output %s is also an input: refusing to overwrite it", path)
		}
		if si, err1 := os.Stat(in); err1 == nil {
			if so, err2 := os.Stat(path); err2 == nil && os.SameFile(si, so) {
				return fmt.Errorf("output %s is also an input: refusing to overwrite it", path)
			}
		}
	}
	fi, err := os.Stat(path)
	if err == nil {
		if fi.IsDir() {
			return fmt.Errorf("output %s is a directory", path)
		}
		if !opt.Force {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
	}
	dir := filepath.Dir(path)
	if di, err := os.Stat(dir); err != nil || !di.IsDir() {
		return fmt.Errorf("output directory %s does not exist", dir)
	}
	return nil
}

// Write creates path atomically with the bytes fill writes. fill's errors are returned as
// they are; the others name the path.
func Write(path string, opt Options, fill func(w io.Writer) error) error {
	var s Set
	if err := s.Write(path, opt, fill); err != nil {
		return err
	}
	return s.Commit()
}

// Set writes several files that belong together (a label map and its colour table): each is
// written completely to a temporary file beside it, and Commit puts them all in place only
// once every one was written. A failure before Commit leaves every target as it was.
type Set struct {
	pending []pendingFile
}

type pendingFile struct{ tmp, path string }

// Write writes path's future content to a temporary file (checked against opt first).
func (s *Set) Write(path string, opt Options, fill func(w io.Writer) error) error {
	if err := Check(path, opt); err != nil {
		return err
	}
	tmp, err := writeTemp(path, fill)
	if err != nil {
		return err
	}
	s.pending = append(s.pending, pendingFile{tmp: tmp, path: path})
	return nil
}

// writeTemp writes a complete, synced temporary file beside path and returns its name.
func writeTemp(path string, fill func(w io.Writer) error) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := fill(f); err != nil {
		return fail(err) // the caller's own error, with its own context
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("writing %s: %w", path, err))
	}
	if err := f.Close(); err != nil {
		return fail(fmt.Errorf("writing %s: %w", path, err))
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fail(fmt.Errorf("writing %s: %w", path, err))
	}
	return f.Name(), nil
}

// WriteNew creates path with the bytes fill writes, complete or not at all, and never replaces
// a file: when path exists, also when another process creates it meanwhile, the error is
// os.ErrExist (errors.Is) and nothing changes. The complete file is hard-linked into place,
// which fails rather than replaces.
func WriteNew(path string, fill func(w io.Writer) error) error {
	tmp, err := writeTemp(path, fill)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	SyncDir(filepath.Dir(path))
	return nil
}

// SyncDir makes the renames and removals in dir durable, as far as the file system allows (a
// failure is not worth failing a write over).
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Commit renames every written file into place. Renames within a directory do not fail for
// want of space, so once the writes succeeded the set lands whole in practice; should one
// fail, the files not yet renamed are removed and the error names it.
func (s *Set) Commit() error {
	dirs := map[string]bool{}
	for i, p := range s.pending {
		if err := os.Rename(p.tmp, p.path); err != nil {
			s.pending = s.pending[i:]
			s.Abort()
			return fmt.Errorf("writing %s: %w", p.path, err)
		}
		dirs[filepath.Dir(p.path)] = true
	}
	s.pending = nil
	// Make the renames durable; a failure here is not worth failing the write over.
	for dir := range dirs {
		SyncDir(dir)
	}
	return nil
}

// Abort removes the temporary files of a set not committed (nothing after Commit).
func (s *Set) Abort() {
	for _, p := range s.pending {
		os.Remove(p.tmp)
	}
	s.pending = nil
}
