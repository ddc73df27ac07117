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
func Write(path string, opt Options, fill func(w io.Writer) error) (err error) {
	if err := Check(path, opt); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = fill(f); err != nil {
		return err // the caller's own error, with its own context
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// Make the rename itself durable; a failure here is not worth failing the write over.
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
