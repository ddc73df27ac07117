//go:build !js

package viewer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
)

// TestPageCSP: index.html carries the policy ctseg's servers send (static hosts send no
// headers), less frame-ancestors, which a <meta> cannot set.
func TestPageCSP(t *testing.T) {
	b, err := fs.ReadFile(Assets(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	meta := `<meta http-equiv="Content-Security-Policy" content="` + PageCSP + `">`
	if !bytes.Contains(b, []byte(meta)) {
		t.Errorf("index.html lacks %s", meta)
	}
	if CSP != PageCSP+"; frame-ancestors 'none'" {
		t.Errorf("the header policy %q is not the page's plus frame-ancestors", CSP)
	}
}

// TestRelativeURLs: the page names every file relative to itself, so a site works under a
// sub-path (https://host/ctseg/).
func TestRelativeURLs(t *testing.T) {
	abs := regexp.MustCompile(`(?:src|href)="/|(?:fetch|Worker|importScripts|register|open)\(\s*['"\x60]/|\burl\(\s*['"]?/`)
	err := fs.WalkDir(Assets(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".html") || strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".css")) || strings.HasPrefix(p, "gen/") {
			return err
		}
		b, err := fs.ReadFile(Assets(), p)
		if err != nil {
			return err
		}
		if m := abs.Find(b); m != nil {
			t.Errorf("%s names a file by an absolute URL: %q", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fastBrotli keeps the tests short: the quality changes the .br copies' size, not their content.
const fastBrotli = 1

// TestWriteSite: the site holds every file of the app as embedded, build.js as ctseg serve
// sends it, the weights with their list, and .gz/.br copies that decompress to the files; an
// existing site is replaced only with replace, whole, and a failed write leaves it as it was.
func TestWriteSite(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "site")
	weights := []SiteFile{{Name: "3mm-f16.safetensors", Write: func(w io.Writer) error {
		_, err := w.Write(bytes.Repeat([]byte{1, 2, 3}, 1000))
		return err
	}}}
	infos, err := WriteSite(dir, SiteOptions{Weights: weights, BrotliQuality: fastBrotli})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("site folder: %v %v", fi.Mode(), err)
	}
	// Every embedded file, byte for byte.
	assets, err := loadAssets()
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range assets {
		if strings.HasSuffix(name, ".md") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil || !bytes.Equal(b, a.data) {
			t.Errorf("%s: not the embedded file (%v)", name, err)
		}
	}
	info, js, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "build.js")); err != nil || !bytes.Equal(b, js) {
		t.Errorf("build.js: not the served one (%v)", err)
	}
	// What the service worker caches must exist, with the SHA-256 build.js gives it (the
	// worker refuses a file with another).
	m := regexp.MustCompile(`(?m)^self\.CTSEG_SHA256 = (\{.*\});$`).FindSubmatch(js)
	var sums map[string]string
	if m == nil || json.Unmarshal(m[1], &sums) != nil {
		t.Fatalf("build.js has no CTSEG_SHA256 map:\n%s", js)
	}
	for _, f := range info.Files {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			t.Errorf("the build lists %s, which the site lacks", f)
			continue
		}
		if f == buildScript {
			continue
		}
		if sum := sha256.Sum256(b); sums[f] != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: build.js gives SHA-256 %q, the file has %x", f, sums[f], sum)
		}
	}
	if len(sums) != len(info.Files)-1 {
		t.Errorf("build.js gives %d checksums for %d files besides itself", len(sums), len(info.Files)-1)
	}
	var list []WeightFile
	b, err := os.ReadFile(filepath.Join(dir, "api", "weights"))
	if err != nil || json.Unmarshal(b, &list) != nil || len(list) != 1 || list[0] != (WeightFile{Name: "3mm-f16.safetensors", Size: 3000}) {
		t.Errorf("api/weights: %s (%v)", b, err)
	}
	// Precompressed copies beside every large text and wasm file, none beside the rest.
	compressed := 0
	for _, f := range infos {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		want := f.Size >= precompressMin && compressible(f.Name)
		_, errGz := os.Stat(p + ".gz")
		_, errBr := os.Stat(p + ".br")
		if want != (errGz == nil) || want != (errBr == nil) {
			t.Errorf("%s (%d bytes): .gz %v, .br %v, want copies: %v", f.Name, f.Size, errGz, errBr, want)
		}
		if !want {
			continue
		}
		compressed++
		orig, _ := os.ReadFile(p)
		gz, _ := os.ReadFile(p + ".gz")
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		if d, err := io.ReadAll(zr); err != nil || !bytes.Equal(d, orig) {
			t.Errorf("%s.gz does not decompress to it (%v)", f.Name, err)
		}
		br, _ := os.ReadFile(p + ".br")
		if d, err := io.ReadAll(brotli.NewReader(bytes.NewReader(br))); err != nil || !bytes.Equal(d, orig) {
			t.Errorf("%s.br does not decompress to it (%v)", f.Name, err)
		}
	}
	if compressed < 5 {
		t.Errorf("only %d files got compressed copies", compressed)
	}

	// Replacing: refused without replace; a failed write leaves the old site; with replace the
	// new site, whole (a file only the old site had is gone), and no temporary folder is left.
	if _, err := WriteSite(dir, SiteOptions{BrotliQuality: fastBrotli}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("existing site replaced without replace: %v", err)
	}
	boom := errors.New("boom")
	if _, err := WriteSite(dir, SiteOptions{Weights: []SiteFile{{Name: "model.pt", Write: func(io.Writer) error { return boom }}}, Replace: true, BrotliQuality: fastBrotli}); !errors.Is(err, boom) {
		t.Errorf("failed write: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "weights", "3mm-f16.safetensors")); err != nil {
		t.Errorf("a failed write damaged the old site: %v", err)
	}
	if _, err := WriteSite(dir, SiteOptions{Replace: true, BrotliQuality: fastBrotli}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "weights")); !os.IsNotExist(err) {
		t.Errorf("the old site's weights survived the replacement: %v", err)
	}
	es, _ := os.ReadDir(parent)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if len(names) != 1 || names[0] != "site" {
		t.Errorf("left beside the site: %v", names)
	}

	// A folder with anything a site does not write is never replaced, even with replace
	// (a mistyped --out); an empty one is.
	precious := filepath.Join(parent, "precious")
	if err := os.MkdirAll(precious, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(precious, "thesis.txt"), []byte("years"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"index.html", "style.css"} { // names a site has, but no ctseg build.js
		if err := os.WriteFile(filepath.Join(precious, f), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := WriteSite(precious, SiteOptions{Replace: true, BrotliQuality: fastBrotli}); err == nil || !strings.Contains(err.Error(), "is not a site ctseg made") {
		t.Errorf("a folder of other files replaced: %v", err)
	}
	for _, f := range []string{"index.html", "style.css"} {
		if err := os.Remove(filepath.Join(precious, f)); err != nil {
			t.Fatal(err)
		}
	}
	// A site of ctseg's with a user's file in it, at any depth, is not replaced either.
	for _, extra := range []string{"sample/patient.nii.gz", "weights/my-finetuned.safetensors", "notes.md"} {
		p := filepath.Join(dir, filepath.FromSlash(extra))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := WriteSite(dir, SiteOptions{Replace: true, BrotliQuality: fastBrotli}); err == nil || !strings.Contains(err.Error(), extra+", which ctseg site did not write") {
			t.Errorf("a site holding %s replaced: %v", extra, err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != "mine" {
			t.Errorf("%s was touched: %q %v", extra, b, err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	// a user's weights listed in api/weights (how a static host offers weights) are theirs too
	api := filepath.Join(dir, "api", "weights")
	mine := filepath.Join(dir, "weights", "my-finetuned.safetensors")
	for p, b := range map[string]string{api: `[{"name":"my-finetuned.safetensors","size":4}]`, mine: "mine"} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := WriteSite(dir, SiteOptions{Replace: true, BrotliQuality: fastBrotli}); err == nil || !strings.Contains(err.Error(), "weights/my-finetuned.safetensors, which ctseg site did not write") {
		t.Errorf("a site holding a user's listed weights replaced: %v", err)
	}
	for _, p := range []string{mine, api} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	// --out a link to a site: refused (the link would become a folder)
	link := filepath.Join(parent, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteSite(link, SiteOptions{Replace: true, BrotliQuality: fastBrotli}); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Errorf("a link replaced: %v", err)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteSite(dir, SiteOptions{Replace: true, BrotliQuality: fastBrotli}); err != nil {
		t.Errorf("the site again, once the user's files are gone: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(precious, "thesis.txt")); err != nil || string(b) != "years" {
		t.Errorf("the user's file was touched: %q %v", b, err)
	}
	if err := os.Remove(filepath.Join(precious, "thesis.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteSite(precious, SiteOptions{Replace: true, BrotliQuality: fastBrotli}); err != nil {
		t.Errorf("an empty folder: %v", err)
	}
}
