package cache

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/x448/float16"

	"ctseg/internal/atomicfile"
	"ctseg/weights"
)

// maxSourceBytes bounds what is read into memory as a checkpoint: the bundle's is 75 MB, so a
// file (or download) past this is not the bundle's weights.
const maxSourceBytes = 2 << 30

// staleStaging is how old a .staging-* folder must be before a later run removes it: younger
// ones may belong to another ctseg converting right now.
const staleStaging = time.Hour

// saveWeights is weights.Save; tests replace it to simulate a full disk during conversion.
var saveWeights = weights.Save

// source is a verified checkpoint on its way into the cache.
type source struct {
	data   []byte
	md5    string
	kind   string // "download" or "import"
	name   string // published download name, or the imported file's base name
	url    string
	origin string // the path or URL, for messages
}

// store parses a verified checkpoint, converts it and commits it as the entry of v. Nothing
// becomes visible under <dir>/<variant> until both files are complete and hashed: they are
// written into a private staging folder, moved in, and the record is written last.
func store(dir string, v Variant, src source, rep *reporter) (Entry, error) {
	sd, err := weights.Parse(src.data)
	if err != nil {
		return Entry{}, fmt.Errorf("%s: %w", src.origin, err)
	}
	cfg, err := weights.InferConfig(sd)
	if err != nil {
		return Entry{}, fmt.Errorf("%s: %w", src.origin, err)
	}
	if v.Config != nil && cfg.String() != v.Config.String() {
		return Entry{}, fmt.Errorf("%s is %s, not the bundle's %s network that the %s variant must be", src.origin, cfg, v.Config, v.Name)
	}
	rep.line("%s: %s, %d parameters; converting", v.Name, cfg, cfg.ParamCount())

	official := strings.EqualFold(src.md5, v.MD5)
	meta := map[string]string{
		"variant":    v.Name,
		"spacing_mm": strconv.FormatFloat(v.Spacing, 'g', -1, 64),
		"source_md5": src.md5,
		"official":   strconv.FormatBool(official),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Entry{}, diskError(dir, err, 0)
	}
	stage, err := os.MkdirTemp(dir, ".staging-"+v.Name+"-")
	if err != nil {
		return Entry{}, diskError(dir, err, 0)
	}
	defer os.RemoveAll(stage) // after a commit it is empty; after a failure it holds the debris

	need := int64(len(src.data)) * 3 / 2 // f32 about the checkpoint's size, f16 half of it
	rec := Record{
		FormatVersion: recordVersion, Variant: v.Name, SpacingMM: v.Spacing,
		Source: src.kind, Official: official, SourceURL: src.url, SourceName: src.name,
		SourceMD5: strings.ToLower(src.md5), SourceBytes: int64(len(src.data)),
		Config: cfg.String(), ParamCount: cfg.ParamCount(),
		Files: map[string]FileRecord{}, Created: time.Now().UTC().Truncate(time.Second),
	}
	precisions := []string{"f32", "f16"}
	if !fitsF16(sd) {
		// The app can still run in f32; refusing the whole entry would leave it with nothing.
		rep.line("%s: some values are outside the float16 range; caching f32 only", v.Name)
		precisions = precisions[:1]
	}
	for _, prec := range precisions {
		name := F32Name
		if prec == "f16" {
			name = F16Name
		}
		p := filepath.Join(stage, name)
		if err := saveWeights(p, sd, weights.WriteOptions{F16: prec == "f16", Metadata: meta}); err != nil {
			return Entry{}, diskError(dir, err, need)
		}
		sum, n, err := sha256File(p)
		if err != nil {
			return Entry{}, fmt.Errorf("reading back %s: %w", p, err)
		}
		rec.Files[prec] = FileRecord{Name: name, Bytes: n, SHA256: sum}
	}
	recData, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return Entry{}, err
	}
	recData = append(recData, '\n')

	vdir := filepath.Join(dir, v.Name)
	if err := commit(stage, vdir, rec, recData); err != nil {
		return Entry{}, diskError(dir, err, 0)
	}
	e, err := readEntry(dir, v.Name)
	if err != nil {
		return Entry{}, err
	}
	if e.Problem != "" {
		return Entry{}, fmt.Errorf("cache entry %s is unusable right after writing it: %s", vdir, e.Problem)
	}
	return e, nil
}

// commit moves the staged files into vdir. The old record goes first, so at no moment does a
// record describe files that are not the ones beside it; the new record goes last.
func commit(stage, vdir string, rec Record, recData []byte) (err error) {
	if err := os.Remove(filepath.Join(vdir, RecordName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	clearEntryFiles(vdir)
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			clearEntryFiles(vdir)
		}
	}()
	for _, f := range rec.Files {
		if err := os.Rename(filepath.Join(stage, f.Name), filepath.Join(vdir, f.Name)); err != nil {
			return err
		}
	}
	return atomicfile.Write(filepath.Join(vdir, RecordName), atomicfile.Options{Force: true}, func(w io.Writer) error {
		_, err := w.Write(recData)
		return err
	})
}

// clearEntryFiles removes what the cache itself puts in a variant folder (and only that, in
// case --dir points somewhere a user keeps other files), then the folder if it is empty.
func clearEntryFiles(vdir string) {
	for _, n := range []string{RecordName, F32Name, F16Name} {
		os.Remove(filepath.Join(vdir, n))
		// Temporaries of weights.Save and atomicfile.Write interrupted by a crash.
		if tmps, _ := filepath.Glob(filepath.Join(vdir, "."+n+".tmp-*")); tmps != nil {
			for _, t := range tmps {
				os.Remove(t)
			}
		}
	}
	os.Remove(vdir) // fails, harmlessly, unless empty
}

// tidy clears what an interrupted run left: an incomplete variant folder (no usable record)
// and old staging folders.
func tidy(dir, variant string) {
	if e, err := readEntry(dir, variant); err == nil && e.Problem != "" {
		clearEntryFiles(e.Dir)
	}
	stages, _ := filepath.Glob(filepath.Join(dir, ".staging-*"))
	for _, s := range stages {
		if fi, err := os.Stat(s); err == nil && time.Since(fi.ModTime()) > staleStaging {
			os.RemoveAll(s)
		}
	}
}

// fitsF16 reports whether every value is representable in float16 without overflow.
func fitsF16(sd *weights.StateDict) bool {
	for _, t := range sd.Tensors {
		for _, v := range t.Data {
			if float16.Fromfloat32(v).IsInf(0) {
				return false
			}
		}
	}
	return true
}

// Import stores a checkpoint the user already has (an offline machine, a hospital network).
// An official file is recognised by its md5, and variant may then be "" (if given, it must
// agree). Any other file is stored as the user's own weights for variant, which is then
// required; the record marks it source "import", official false, with its md5. An entry
// already holding the same file is left alone; a different one is replaced only with
// opts.Force.
func Import(dir string, m Manifest, path, variant string, opts Options) (Entry, error) {
	if err := m.Validate(); err != nil {
		return Entry{}, err
	}
	dir, err := resolveDir(dir)
	if err != nil {
		return Entry{}, err
	}
	rep := newReporter(opts.Progress)
	fi, err := os.Stat(path)
	if err != nil {
		return Entry{}, fmt.Errorf("importing weights: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Entry{}, fmt.Errorf("importing weights: %s is not a regular file", path)
	}
	if fi.Size() > maxSourceBytes {
		return Entry{}, fmt.Errorf("importing weights: %s holds %d bytes, too many for a checkpoint of this network", path, fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Entry{}, fmt.Errorf("importing weights: %w", err)
	}
	// Checked first: a saved error page is the likeliest wrong file, and says so plainly.
	if looksLikeWebPage(data) {
		return Entry{}, fmt.Errorf("%s is a web page, not a checkpoint (a failed download saved as a file?)", path)
	}
	sum := md5Hex(data)

	var v Variant
	if off, ok := m.ByMD5(sum); ok {
		if variant != "" {
			want, err := m.Lookup(variant)
			if err != nil {
				return Entry{}, err
			}
			if want.Name != off.Name {
				return Entry{}, fmt.Errorf("%s is the official %s checkpoint (md5 %s), not %s", path, off.Name, sum, want.Name)
			}
		}
		v = off
		rep.line("%s: md5 %s: the official %s checkpoint", path, sum, v.Name)
	} else {
		if variant == "" {
			return Entry{}, fmt.Errorf("%s is not an official checkpoint (md5 %s matches neither %s); if it is your own, say which variant it replaces with --variant %s",
				path, sum, strings.Join(m.Names(), " nor "), strings.Join(m.Names(), "|"))
		}
		if v, err = m.Lookup(variant); err != nil {
			return Entry{}, err
		}
		rep.line("%s: md5 %s: not an official checkpoint; importing it as your own %s weights", path, sum, v.Name)
	}

	unlock, err := lockCache(context.Background(), dir, rep)
	if err != nil {
		return Entry{}, err
	}
	defer unlock()
	if e, err := find(dir, m, v.Name); err == nil {
		if strings.EqualFold(e.Record.SourceMD5, sum) {
			rep.line("%s: already cached in %s", v.Name, e.Dir)
			return e, nil
		}
		if !opts.Force {
			return Entry{}, fmt.Errorf("%s weights are already cached in %s (%s, md5 %s); pass --force to replace them with %s",
				v.Name, e.Dir, e.Record.SourceSummary(), e.Record.SourceMD5, path)
		}
	}
	tidy(dir, v.Name)
	abs, _ := filepath.Abs(path)
	e, err := store(dir, v, source{data: data, md5: sum, kind: "import", name: filepath.Base(path), origin: abs}, rep)
	if err != nil {
		return Entry{}, err
	}
	rep.line("%s: cached in %s", v.Name, e.Dir)
	return e, nil
}

// SourceSummary is a few words on where an entry came from, for list and messages.
func (r Record) SourceSummary() string {
	switch {
	case r.Official && r.Source == "download":
		return "official, downloaded"
	case r.Official:
		return "official, imported"
	default:
		return "user-provided, imported"
	}
}

func md5Hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func sha256File(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// diskError turns "no space left on device" into advice; need is the bytes still to be
// written (0 when unknown). Other errors pass through.
func diskError(dir string, err error, need int64) error {
	if errors.Is(err, syscall.ENOSPC) {
		msg := fmt.Sprintf("the disk holding %s is full", dir)
		if need > 0 {
			msg += fmt.Sprintf(" (about %s more is needed)", humanBytes(need))
		}
		return fmt.Errorf("%s; nothing was cached: free some space or choose another folder with --dir or $%s (%v)", msg, EnvDir, err)
	}
	return err
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
