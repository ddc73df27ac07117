package volume

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// writeAtomic writes a file through a temporary file in the same directory and renames it
// into place, so readers never see a partial file and a failed write leaves nothing behind.
// With gz the content is gzip-compressed at level (0 means gzip.DefaultCompression).
func writeAtomic(path string, gz bool, level int, fill func(w io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	var w io.Writer = bw
	var zw *gzip.Writer
	if gz {
		if level == 0 {
			level = gzip.DefaultCompression
		}
		if zw, err = gzip.NewWriterLevel(bw, level); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		w = zw
	}
	if err = fill(w); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if zw != nil {
		if err = zw.Close(); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// CreateTemp makes the file 0600; outputs are ordinary files.
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// niftiKind tells from the file name whether to gzip; other extensions are refused so that a
// typo cannot silently produce an uncompressed file named like something else.
func niftiKind(path string) (gz bool, err error) {
	p := strings.ToLower(path)
	switch {
	case strings.HasSuffix(p, ".nii.gz"):
		return true, nil
	case strings.HasSuffix(p, ".nii"):
		return false, nil
	}
	return false, fmt.Errorf("write %s: output name must end in .nii or .nii.gz", path)
}
