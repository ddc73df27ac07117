//go:build !js

package viewer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
)

// The static site: the app as plain files that any web server can host (GitHub Pages, nginx,
// S3, python3 -m http.server) without ctseg behind it. It is the embedded app as `ctseg serve`
// sends it, laid out under the same URLs: every URL in the page is relative, so the site also
// works under a sub-path (https://host/ctseg/); static hosts send no headers, so index.html
// carries the CSP itself; build.js (which ctseg serve generates) is written out; weight files,
// where the deployer includes them, go to weights/NAME with the list at api/weights, which is
// where the page asks ctseg serve for them. Large files get precompressed .gz and .br copies
// beside them for hosts that serve those (nginx gzip_static / brotli_static).

// SiteFile is a file the deployer adds to the site: a weight file under weights/.
type SiteFile struct {
	Name  string // the file name (no folders)
	Write func(w io.Writer) error
}

// SiteFileInfo is one written file, for the report.
type SiteFileInfo struct {
	Name             string
	Size, Gzip, Brot int64 // bytes; Gzip and Brot 0 where no precompressed copy was made
}

// precompressMin is the size from which a file gets .gz and .br copies: below a few kB the
// request dominates.
const precompressMin = 1 << 10

// compressible reports whether precompressed copies pay: text and wasm do; an already gzipped
// file does not; weight files (f16 numbers) shrink by a few per cent at a high cost.
func compressible(name string) bool {
	switch path.Ext(name) {
	case ".html", ".js", ".css", ".wasm", ".json", ".txt":
		return true
	}
	return false
}

// SiteOptions control WriteSite.
type SiteOptions struct {
	// Weights are added under weights/, listed in api/weights.
	Weights []SiteFile
	// Replace allows replacing an existing site folder.
	Replace bool
	// BrotliQuality of the .br copies, 0 to 11 (11 when 0): 11 makes the wasm's copy 11 %
	// smaller than 9 but takes minutes instead of seconds (BENCHMARKS.md).
	BrotliQuality int
}

// WriteSite writes the app into dir as a static site. It writes into a new folder beside dir
// and moves it into place at the end, so dir is either the complete old site or the complete
// new one; an existing dir is replaced only with opt.Replace.
func WriteSite(dir string, opt SiteOptions) ([]SiteFileInfo, error) {
	quality := opt.BrotliQuality
	if quality == 0 {
		quality = brotli.BestCompression
	}
	if quality < 0 || quality > brotli.BestCompression {
		return nil, fmt.Errorf("brotli quality %d: want 1 to 11", quality)
	}
	if err := CheckWasm(); err != nil {
		return nil, err
	}
	_, js, err := Build()
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s exists and is not a folder", dir)
		}
		if !opt.Replace {
			return nil, fmt.Errorf("%s exists: give --force to replace it", dir)
		}
		if li, err := os.Lstat(dir); err == nil && li.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s is a symbolic link: give the folder it points to", dir)
		}
		if err := checkOldSite(dir); err != nil {
			return nil, err
		}
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, ".ctseg-site-*")
	if err != nil {
		return nil, err
	}
	// MkdirTemp makes it private; a site is for a web server that may run as another user.
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	var out []SiteFileInfo
	put := func(name string, fill func(w io.Writer) error) error {
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := writeFile(p, fill); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		f := SiteFileInfo{Name: name, Size: fi.Size()}
		if f.Size >= precompressMin && compressible(name) {
			if f.Gzip, f.Brot, err = precompress(p, quality); err != nil {
				return fmt.Errorf("compressing %s: %w", name, err)
			}
		}
		out = append(out, f)
		return nil
	}
	err = fs.WalkDir(Assets(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".md") {
			return err
		}
		return put(p, func(w io.Writer) error {
			f, err := Assets().Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	if err := put(buildScript, func(w io.Writer) error { _, err := w.Write(js); return err }); err != nil {
		return nil, err
	}
	if len(opt.Weights) > 0 {
		var list []WeightFile
		for _, wf := range opt.Weights {
			if !validWeightName(wf.Name) {
				return nil, fmt.Errorf("weight file name %q: want a plain name ending in %s", wf.Name, strings.Join(WeightExts, ", "))
			}
			if err := put("weights/"+wf.Name, wf.Write); err != nil {
				return nil, err
			}
			list = append(list, WeightFile{Name: wf.Name, Size: out[len(out)-1].Size})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		if err := put("api/weights", func(w io.Writer) error { return json.NewEncoder(w).Encode(list) }); err != nil {
			return nil, err
		}
	}
	if err := swap(tmp, dir); err != nil {
		return nil, err
	}
	done = true
	return out, nil
}

// checkOldSite refuses to replace a folder unless it is empty or a site ctseg wrote (a mistyped
// --out must not delete a user's files): its build.js is a ctseg build's, and every file in it,
// at any depth, is one a site holds: the app's files, build.js, api/weights, the weight files
// that api/weights lists, and .gz/.br copies of those.
func checkOldSite(dir string) error {
	es, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(es) == 0 {
		return nil
	}
	notOurs := func(name string) error {
		return fmt.Errorf("%s holds %s, which ctseg site did not write: it replaces only a site it made (remove the folder or choose another)", dir, name)
	}
	b, err := readSmallFile(filepath.Join(dir, buildScript))
	if err != nil || !bytes.Contains(b, []byte("\nself.CTSEG_BUILD = ")) {
		return fmt.Errorf("%s is not a site ctseg made (no ctseg build.js): it replaces only a site it made (remove the folder or choose another)", dir)
	}
	// the weight files ctseg site wrote: listed in api/weights under a name it gives them
	listed := map[string]bool{}
	if b, err := readSmallFile(filepath.Join(dir, "api", "weights")); err == nil {
		var list []WeightFile
		if json.Unmarshal(b, &list) != nil {
			return notOurs("api/weights")
		}
		for _, w := range list {
			if siteWeightName.MatchString(w.Name) {
				listed["weights/"+w.Name] = true
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return notOurs("api/weights")
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return notOurs(rel)
		}
		// the file itself, or the .gz/.br copy of one
		for _, name := range []string{rel, strings.TrimSuffix(rel, ".gz"), strings.TrimSuffix(rel, ".br")} {
			switch {
			case name == buildScript, name == "api/weights", listed[name]:
				return nil
			case !strings.HasSuffix(name, ".md"):
				if fi, err := fs.Stat(Assets(), name); err == nil && !fi.IsDir() {
					return nil
				}
			}
		}
		return notOurs(rel)
	})
}

// SiteWeightName is the name ctseg site gives a variant's weights ("1.5mm", "3mm").
func SiteWeightName(variant string) string { return variant + "-f16.safetensors" }

var siteWeightName = regexp.MustCompile(`^[0-9.]+mm-f16\.safetensors$`)

// readSmallFile reads a regular file (not a link, a FIFO or a device) of at most 1 MiB: what an
// old site's build.js and api/weights are.
func readSmallFile(p string) ([]byte, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > 1<<20 {
		return nil, fmt.Errorf("%s: not a small regular file", p)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// swap moves the new site into place: the old one (if any) aside first, then the new one in,
// then the old one away; a failure between the two renames puts the old one back.
func swap(tmp, dir string) error {
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return err
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

func writeFile(p string, fill func(w io.Writer) error) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// precompress writes p.gz (gzip, best compression) and p.br (brotli at quality) and returns
// their sizes.
func precompress(p string, quality int) (gz, br int64, err error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, 0, err
	}
	err = writeFile(p+".gz", func(w io.Writer) error {
		zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
		if err != nil {
			return err
		}
		if _, err := zw.Write(data); err != nil {
			return err
		}
		return zw.Close()
	})
	if err != nil {
		return 0, 0, err
	}
	err = writeFile(p+".br", func(w io.Writer) error {
		bw := brotli.NewWriterLevel(w, quality)
		if _, err := bw.Write(data); err != nil {
			return err
		}
		return bw.Close()
	})
	if err != nil {
		return 0, 0, err
	}
	size := func(q string) int64 {
		if fi, err := os.Stat(q); err == nil {
			return fi.Size()
		}
		return 0
	}
	if gz, br = size(p+".gz"), size(p+".br"); gz == 0 || br == 0 {
		return 0, 0, errors.New("a compressed copy is empty")
	}
	return gz, br, nil
}
