package volume

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"ctseg/internal/atomicfile"

	// Same API and level constants as compress/gzip; deflates ~10x faster at the default level
	// (its level 5, a few % larger output than compress/gzip's level 6).
	"github.com/klauspost/compress/gzip"
)

// writeAtomic writes a file through a temporary file in the same directory and renames it
// into place (internal/atomicfile), so readers never see a partial file and a failed write
// leaves nothing behind. Whether an existing file may be replaced is the caller's decision.
// With gz the content is gzip-compressed at level (0 means gzip.DefaultCompression).
func writeAtomic(path string, gz bool, level int, fill func(w io.Writer) error) error {
	return atomicfile.Write(path, atomicfile.Options{Force: true}, func(f io.Writer) error {
		return encodeStream(f, gz, level, fill)
	})
}

// encode runs fill over a buffered (and with gz, gzip-compressing) writer on top of w.
func encodeStream(w io.Writer, gz bool, level int, fill func(w io.Writer) error) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	var out io.Writer = bw
	var zw *gzip.Writer
	if gz {
		if level == 0 {
			level = gzip.DefaultCompression
		}
		// klauspost also takes -3 (stateless); keep compress/gzip's range -2..9.
		if level < gzip.HuffmanOnly {
			return fmt.Errorf("gzip: invalid compression level: %d", level)
		}
		var err error
		if zw, err = gzip.NewWriterLevel(bw, level); err != nil {
			return err
		}
		out = zw
	}
	if err := fill(out); err != nil {
		return err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return err
		}
	}
	return bw.Flush()
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
