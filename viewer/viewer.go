// Package viewer is the browser app of ctseg and the HTTP handler that serves it. The app
// (static/: page, scripts, styles, a sample CT, and in static/gen/ the wasm build of ctseg
// with Go's wasm_exec.js, written by `make build`) is embedded in the binary, so `ctseg serve`
// works offline. The page reads images and weights locally and runs the network on the
// user's GPU through WebGPU; the handler therefore serves only files and never accepts data.
package viewer

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"io/fs"
	"path"
	"strings"
)

// The sample CT static/sample/example_ct.nii.gz is a test file of the TotalSegmentator
// project (github.com/wasserth/TotalSegmentator, tests/reference_files), Apache-2.0.
//
//go:embed static
var static embed.FS

// Generated files the app cannot run without (see the Makefile's wasm target).
const (
	wasmPath     = "gen/ctseg.wasm"
	wasmExecPath = "gen/wasm_exec.js"
)

// ErrNoWasm is returned when the binary was built before the wasm.
var ErrNoWasm = errors.New("the app was built without its wasm; run make build")

// Assets is the app's file tree (index.html at its root).
func Assets() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // "static" is a valid constant path
	}
	return sub
}

// CheckWasm reports ErrNoWasm when the wasm build or its loader is missing.
func CheckWasm() error {
	for _, p := range []string{wasmPath, wasmExecPath} {
		if fi, err := fs.Stat(Assets(), p); err != nil || fi.Size() == 0 {
			return ErrNoWasm
		}
	}
	return nil
}

// asset is one embedded file ready to serve.
type asset struct {
	data  []byte
	etag  string
	ctype string
}

// loadAssets reads every embedded file once; ETags let a browser revalidate cheaply after
// the binary was rebuilt with a new app.
func loadAssets() (map[string]*asset, error) {
	out := map[string]*asset{}
	err := fs.WalkDir(Assets(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Assets(), p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[p] = &asset{data: b, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, ctype: contentType(p)}
		return nil
	})
	return out, err
}

// contentType is fixed per extension, not taken from the system's MIME tables: the wasm must
// be application/wasm for streaming compilation, and nosniff makes a wrong type fatal.
func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".wasm":
		return "application/wasm"
	case ".json":
		return "application/json"
	case ".md", ".txt":
		return "text/plain; charset=utf-8"
	case ".gz":
		if strings.HasSuffix(p, ".nii.gz") {
			return "application/gzip"
		}
	}
	return "application/octet-stream"
}
