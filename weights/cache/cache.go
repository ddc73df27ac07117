// Package cache downloads, verifies, converts and stores the published weights of the MONAI
// wholeBody_ct_segmentation bundle, so that the app finds them by variant ("1.5mm", "3mm")
// without being told a path.
//
// Layout of a cache folder (see DefaultDir):
//
//	<dir>/<variant>/model-f32.safetensors   project weight file, float32
//	<dir>/<variant>/model-f16.safetensors   the same weights stored as float16
//	<dir>/<variant>/record.json             what the entry is (written last)
//	<dir>/.partial/<download name>.part     an interrupted download, resumed next time
//	<dir>/.partial/<download name>.part.json  its URL, md5 and HTTP validators
//
// The record is what makes an entry good: it is written only after both files are complete,
// and it holds their sizes and sha256 sums. A variant folder without a record is an
// interrupted conversion; Find and List ignore it and the next Fetch or Import clears it.
// A downloaded file is accepted only when its md5 matches the manifest, checked over the
// whole file before anything parses it. Fetch and Import hold an flock on <dir> itself while
// they write, so two processes never interleave.
package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// File names inside a variant folder.
const (
	F32Name    = "model-f32.safetensors"
	F16Name    = "model-f16.safetensors"
	RecordName = "record.json"
	partialDir = ".partial"
)

// recordVersion is bumped when Record changes incompatibly; a newer record is not trusted.
const recordVersion = 1

// EnvDir names the environment variable that moves the default cache folder.
const EnvDir = "CTSEG_CACHE_DIR"

// DefaultDir is the cache folder used when none is given: $CTSEG_CACHE_DIR when set, else
// os.UserCacheDir()/ctseg/weights (~/.cache/ctseg/weights on Linux, honouring
// $XDG_CACHE_HOME; ~/Library/Caches/ctseg/weights on macOS; %LocalAppData%\ctseg\weights on
// Windows).
func DefaultDir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return filepath.Abs(d)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache folder (%v): set %s or pass --dir", err, EnvDir)
	}
	return filepath.Join(base, "ctseg", "weights"), nil
}

// resolveDir turns "" into DefaultDir, so every entry point accepts "" for the default.
func resolveDir(dir string) (string, error) {
	if dir == "" {
		return DefaultDir()
	}
	return filepath.Abs(dir)
}

// FileRecord describes one converted file.
type FileRecord struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Record is record.json: what a cache entry holds and where it came from.
type Record struct {
	FormatVersion int     `json:"format_version"`
	Variant       string  `json:"variant"`
	SpacingMM     float64 `json:"spacing_mm"`
	// Source is "download" (Fetch) or "import" (Import).
	Source string `json:"source"`
	// Official is true when SourceMD5 is the manifest's md5 for this variant, i.e. the
	// published file; false for a user's own checkpoint imported under this variant.
	Official    bool   `json:"official"`
	SourceURL   string `json:"source_url,omitempty"`
	SourceName  string `json:"source_name"`
	SourceMD5   string `json:"source_md5"`
	SourceBytes int64  `json:"source_bytes"`
	Config      string `json:"config"`
	ParamCount  int    `json:"param_count"`
	// Files maps "f32" and (unless the values do not fit) "f16" to the converted files.
	Files   map[string]FileRecord `json:"files"`
	Created time.Time             `json:"created"`
}

// Entry is a cache entry as found on disk.
type Entry struct {
	Variant string
	Spacing float64
	Dir     string // the variant folder
	F32     string // path of the float32 file
	F16     string // path of the float16 file; "" when the weights do not fit float16
	Record  Record
	// Problem is why the entry is not usable ("" when it is). Only List returns entries with
	// a problem; Find turns it into an error.
	Problem string
}

// Path returns the file for a precision ("f32" or "f16").
func (e Entry) Path(precision string) (string, error) {
	switch precision {
	case "f32":
		return e.F32, nil
	case "f16":
		if e.F16 == "" {
			return "", fmt.Errorf("the %s weights have values outside the float16 range, so only f32 is cached", e.Variant)
		}
		return e.F16, nil
	}
	return "", fmt.Errorf("precision %q: want f32 or f16", precision)
}

// Size is the bytes of the entry's files.
func (e Entry) Size() int64 {
	var n int64
	for _, f := range e.Record.Files {
		n += f.Bytes
	}
	return n
}

// howToGet is the advice every "not cached" message ends with.
func howToGet(variant string) string {
	return fmt.Sprintf("run `ctseg weights fetch --variant %s`, or on an offline machine `ctseg weights import FILE --variant %s` with the bundle's checkpoint", variant, variant)
}

// Find returns the cached entry of a variant of the official manifest ("1.5mm", "3mm"; "" dir
// means DefaultDir). It checks the record and that the files it names exist with the recorded
// sizes; it does not re-hash them (see Verify), so it is cheap enough to call on every start.
func Find(dir, variant string) (Entry, error) {
	return find(dir, Official(), variant)
}

func find(dir string, m Manifest, variant string) (Entry, error) {
	v, err := m.Lookup(variant)
	if err != nil {
		return Entry{}, err
	}
	if dir, err = resolveDir(dir); err != nil {
		return Entry{}, err
	}
	e, err := readEntry(dir, v.Name)
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, fmt.Errorf("no %s weights cached in %s: %s", v.Name, dir, howToGet(v.Name))
	}
	if err != nil {
		return Entry{}, err
	}
	if e.Problem != "" {
		return Entry{}, fmt.Errorf("cached %s weights in %s are unusable (%s): %s", v.Name, e.Dir, e.Problem, howToGet(v.Name))
	}
	return e, nil
}

// readEntry reads <dir>/<name>. fs.ErrNotExist means there is no such folder; a folder that
// exists but is incomplete or damaged comes back with Problem set.
func readEntry(dir, name string) (Entry, error) {
	vdir := filepath.Join(dir, name)
	if _, err := os.Stat(vdir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Entry{}, fs.ErrNotExist
		}
		return Entry{}, fmt.Errorf("reading weights cache: %w", err)
	}
	e := Entry{Variant: name, Dir: vdir}
	data, err := os.ReadFile(filepath.Join(vdir, RecordName))
	if errors.Is(err, fs.ErrNotExist) {
		e.Problem = "incomplete: no " + RecordName + " (an interrupted fetch or import)"
		return e, nil
	}
	if err != nil {
		return Entry{}, fmt.Errorf("reading weights cache: %w", err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		e.Problem = RecordName + " is damaged: " + err.Error()
		return e, nil
	}
	e.Record, e.Spacing = r, r.SpacingMM
	switch {
	case r.FormatVersion > recordVersion:
		e.Problem = fmt.Sprintf("written by a newer ctseg (record format %d)", r.FormatVersion)
		return e, nil
	case r.Variant != name:
		e.Problem = fmt.Sprintf("%s names variant %q", RecordName, r.Variant)
		return e, nil
	case r.Files["f32"].Name == "":
		e.Problem = RecordName + " lists no f32 file"
		return e, nil
	}
	for _, prec := range []string{"f32", "f16"} {
		f, ok := r.Files[prec]
		if !ok {
			continue
		}
		if !safeName(f.Name) {
			e.Problem = fmt.Sprintf("%s names a bad file %q", RecordName, f.Name)
			return e, nil
		}
		p := filepath.Join(vdir, f.Name)
		fi, err := os.Stat(p)
		if err != nil {
			e.Problem = fmt.Sprintf("%s is missing", f.Name)
			return e, nil
		}
		if fi.Size() != f.Bytes {
			e.Problem = fmt.Sprintf("%s holds %d bytes, the record says %d", f.Name, fi.Size(), f.Bytes)
			return e, nil
		}
		if prec == "f32" {
			e.F32 = p
		} else {
			e.F16 = p
		}
	}
	return e, nil
}

// List returns every variant folder in dir ("" means DefaultDir), good or not, sorted by
// name; entries with Problem set are unusable. A missing cache folder is an empty list.
func List(dir string) ([]Entry, error) {
	dir, err := resolveDir(dir)
	if err != nil {
		return nil, err
	}
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading weights cache: %w", err)
	}
	var out []Entry
	for _, de := range des {
		// Dot folders are the cache's own workspace (.partial, .staging-*).
		if !de.IsDir() || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		e, err := readEntry(dir, de.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Variant < out[j].Variant })
	return out, nil
}

// Verify re-hashes the entry's files against the sha256 sums in its record (slower than
// Find: it reads every byte).
func Verify(e Entry) error {
	for _, prec := range []string{"f32", "f16"} {
		f, ok := e.Record.Files[prec]
		if !ok {
			continue
		}
		p := filepath.Join(e.Dir, f.Name)
		sum, _, err := sha256File(p)
		if err != nil {
			return fmt.Errorf("verifying %s: %w", p, err)
		}
		if sum != f.SHA256 {
			return fmt.Errorf("%s: sha256 %s does not match the record's %s (the file changed after it was cached): %s", p, sum, f.SHA256, howToGet(e.Variant))
		}
	}
	return nil
}
