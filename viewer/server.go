package viewer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// PageCSP keeps the page to its own origin: scripts, workers (the service worker too),
// fetches and styles from 'self' only; 'wasm-unsafe-eval' is what WebAssembly compilation
// needs; data: images only for the empty favicon, blob: for downloads. index.html carries it in
// a <meta http-equiv> for static hosts, which send no headers (TestPageCSP).
const PageCSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; " +
	"img-src 'self' data: blob:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"

// CSP is the header ctseg's servers send: PageCSP and, because frame-ancestors works only as
// a header, nothing may frame the page.
const CSP = PageCSP + "; frame-ancestors 'none'"

// WeightExts are the files a weights directory offers: MONAI checkpoints and ctseg weight
// files (safetensors layout).
var WeightExts = []string{".pt", ".pth", ".safetensors"}

// Options configure the handler.
type Options struct {
	// WeightsDir, when set, is offered to the page: GET api/weights lists its weight files
	// (top level only) and GET weights/NAME sends one.
	WeightsDir string
	// Cached offers individual files under fixed names (name -> path), e.g. the weight cache's
	// "3mm-f16.safetensors" when no WeightsDir is given. Only these names are served.
	Cached map[string]string
	// LoopbackOnly refuses requests whose Host is not a loopback name, so a web page on
	// another site cannot reach this server through DNS rebinding.
	LoopbackOnly bool
	// Log, when set, receives one line per request.
	Log io.Writer
}

type server struct {
	opt    Options
	assets map[string]*asset
	root   *os.Root // the weights directory; nil without one
}

// NewHandler returns the app's handler: GET and HEAD of the embedded files and of the weights
// directory, nothing else (no upload endpoint exists; other methods get 405).
func NewHandler(opt Options) (http.Handler, error) {
	a, err := loadAssets()
	if err != nil {
		return nil, err
	}
	s := &server{opt: opt, assets: a}
	if opt.WeightsDir != "" {
		fi, err := os.Stat(opt.WeightsDir)
		if err != nil {
			return nil, fmt.Errorf("weights directory: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("weights directory %s is not a directory", opt.WeightsDir)
		}
		// os.Root confines every open to the directory, symlinks and ".." included.
		if s.root, err = os.OpenRoot(opt.WeightsDir); err != nil {
			return nil, fmt.Errorf("weights directory: %w", err)
		}
	}
	return s, nil
}

// SetSecurityHeaders sets the headers every response of the app carries: the CSP, no sniffing,
// no referrer, no framing, no cross-origin reads.
func SetSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// ServeHTTP sets the security headers on every response, then dispatches.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	SetSecurityHeaders(w.Header())
	s.serve(rec, r)
	if s.opt.Log != nil {
		fmt.Fprintf(s.opt.Log, "%s %s %d %dB %s\n", r.Method, r.URL.RequestURI(), rec.status, rec.n, time.Since(start).Round(time.Millisecond))
	}
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	if s.opt.LoopbackOnly && !loopbackHost(r.Host) {
		http.Error(w, "this server answers only to localhost", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: this server only sends files; images never leave the browser", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case p == "/api/weights":
		s.listWeights(w, r)
	case strings.HasPrefix(p, "/weights/"):
		s.sendWeights(w, r, strings.TrimPrefix(p, "/weights/"))
	default:
		s.sendAsset(w, r, p)
	}
}

func (s *server) sendAsset(w http.ResponseWriter, r *http.Request, p string) {
	name := strings.TrimPrefix(p, "/")
	if name == "" {
		name = "index.html"
	}
	if name == buildScript {
		_, js, err := Build()
		if err != nil {
			http.Error(w, "the app's files cannot be read", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentType(name))
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(js))
		return
	}
	a, ok := s.assets[name]
	if !ok || name != path.Clean(name) {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.data))
}

// WeightFile is one entry of GET api/weights.
type WeightFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// weightFiles lists the regular weight files at the top of the weights directory, and the
// cached files.
func (s *server) weightFiles() ([]WeightFile, error) {
	out := []WeightFile{}
	for name, p := range s.opt.Cached {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			out = append(out, WeightFile{Name: name, Size: fi.Size()})
		}
	}
	if s.root == nil {
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, nil
	}
	entries, err := fs.ReadDir(s.root.FS(), ".")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !validWeightName(e.Name()) {
			continue
		}
		fi, err := s.root.Stat(e.Name()) // follows a symlink only if it stays inside
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, WeightFile{Name: e.Name(), Size: fi.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func validWeightName(n string) bool {
	if n == "" || strings.HasPrefix(n, ".") || strings.ContainsAny(n, "/\\\x00") {
		return false
	}
	for _, e := range WeightExts {
		if strings.HasSuffix(strings.ToLower(n), e) {
			return true
		}
	}
	return false
}

func (s *server) listWeights(w http.ResponseWriter, r *http.Request) {
	list, err := s.weightFiles()
	if err != nil {
		http.Error(w, "cannot list the weights directory", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(list)
}

func (s *server) sendWeights(w http.ResponseWriter, r *http.Request, name string) {
	var f *os.File
	var err error
	if p, ok := s.opt.Cached[name]; ok { // a fixed name: nothing of the request reaches the path
		f, err = os.Open(p)
	} else if s.root != nil && validWeightName(name) {
		f, err = s.root.Open(name)
	} else {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

// loopbackHost reports whether a Host header names this machine's loopback interface.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}
