// Command archive writes one release archive, .tar.gz or .zip by its name, holding the given
// files flat under their base names. The archive depends only on the files' contents and
// -mtime: entries in the order given, every timestamp -mtime, owner root, mode 0755 for
// executables and 0644 for the rest, no gzip name or time. So the same build gives the same
// bytes, and SHA256SUMS can be compared between machines. Used by scripts/release.sh.
//
//	go run ./scripts/archive -o ctseg_1.0.0_linux_amd64.tar.gz -mtime 1700000000 FILE...
package main

import (
	"archive/tar"
	"archive/zip"
	"compress/flate"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	out := flag.String("o", "", "the archive to write: NAME.tar.gz or NAME.zip")
	mtime := flag.Int64("mtime", -1, "the time of every entry, in seconds since 1970 (SOURCE_DATE_EPOCH)")
	flag.Parse()
	if *out == "" || *mtime < 0 || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: archive -o NAME.tar.gz|NAME.zip -mtime SECONDS FILE...")
		os.Exit(2)
	}
	if err := write(*out, time.Unix(*mtime, 0).UTC(), flag.Args()); err != nil {
		os.Remove(*out)
		fmt.Fprintf(os.Stderr, "archive: %v\n", err)
		os.Exit(1)
	}
}

// entry is one file to archive.
type entry struct {
	name string
	mode int64
	data []byte
}

func write(out string, mtime time.Time, files []string) error {
	var ents []entry
	seen := map[string]bool{}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", f)
		}
		name := filepath.Base(f)
		if seen[name] {
			return fmt.Errorf("two files named %s", name)
		}
		seen[name] = true
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if st.Mode()&0o111 != 0 {
			mode = 0o755
		}
		ents = append(ents, entry{name, mode, data})
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	switch {
	case strings.HasSuffix(out, ".tar.gz"):
		err = writeTarGz(f, mtime, ents)
	case strings.HasSuffix(out, ".zip"):
		err = writeZip(f, mtime, ents)
	default:
		err = fmt.Errorf("%s: want a .tar.gz or .zip name", out)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeTarGz(w io.Writer, mtime time.Time, ents []entry) error {
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	for _, e := range ents {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: e.mode, Size: int64(len(e.data)),
			ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeZip(w io.Writer, mtime time.Time, ents []entry) error {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.BestCompression)
	})
	for _, e := range ents {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: mtime}
		h.SetMode(os.FileMode(e.mode))
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := fw.Write(e.data); err != nil {
			return err
		}
	}
	return zw.Close()
}
