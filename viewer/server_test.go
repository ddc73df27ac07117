package viewer_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"ctseg/viewer"
)

func get(t *testing.T, h http.Handler, method, target, host string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(""))
	if host != "" {
		r.Host = host
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestServerHeaders(t *testing.T) {
	h, err := viewer.NewHandler(viewer.Options{LoopbackOnly: true})
	require.NoError(t, err)
	for _, c := range []struct{ path, ctype string }{
		{"/", "text/html; charset=utf-8"},
		{"/app.js", "text/javascript; charset=utf-8"},
		{"/worker.js", "text/javascript; charset=utf-8"},
		{"/style.css", "text/css; charset=utf-8"},
		{"/sample/example_ct.nii.gz", "application/gzip"},
	} {
		w := get(t, h, "GET", c.path, "127.0.0.1:8080")
		require.Equal(t, http.StatusOK, w.Code, c.path)
		assert.Equal(t, c.ctype, w.Header().Get("Content-Type"), c.path)
		assert.Equal(t, viewer.CSP, w.Header().Get("Content-Security-Policy"), c.path)
		assert.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"), c.path)
		assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"), "no CORS: %s", c.path)
		assert.Empty(t, w.Header().Get("Content-Encoding"), "a .nii.gz is sent as a file, not decoded by the browser: %s", c.path)
	}
	// Errors carry the headers too.
	w := get(t, h, "GET", "/nope", "localhost")
	assert.Equal(t, http.StatusNotFound, w.Code)
	assert.Equal(t, viewer.CSP, w.Header().Get("Content-Security-Policy"))
	// Revalidation by ETag.
	w = get(t, h, "GET", "/app.js", "localhost")
	r := httptest.NewRequest("GET", "/app.js", nil)
	r.Host = "localhost"
	r.Header.Set("If-None-Match", w.Header().Get("ETag"))
	w2 := httptest.NewRecorder()
	h.ServeHTTP(w2, r)
	assert.Equal(t, http.StatusNotModified, w2.Code)
}

func TestServerRefusesData(t *testing.T) {
	h, err := viewer.NewHandler(viewer.Options{WeightsDir: t.TempDir()})
	require.NoError(t, err)
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		for _, p := range []string{"/", "/api/weights", "/weights/model.pt", "/upload"} {
			w := get(t, h, m, p, "")
			assert.Equal(t, http.StatusMethodNotAllowed, w.Code, "%s %s", m, p)
			assert.Equal(t, "GET, HEAD", w.Header().Get("Allow"))
			assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))
		}
	}
	assert.Equal(t, http.StatusOK, get(t, h, "HEAD", "/", "").Code)
}

func TestServerLoopbackHosts(t *testing.T) {
	h, err := viewer.NewHandler(viewer.Options{LoopbackOnly: true})
	require.NoError(t, err)
	for host, want := range map[string]int{
		"127.0.0.1:8080": 200, "localhost:8080": 200, "LOCALHOST": 200, "[::1]:8080": 200, "127.0.0.2": 200,
		"evil.example:8080": 403, "192.168.1.10:8080": 403, "localhost.evil.example": 403,
	} {
		assert.Equal(t, want, get(t, h, "GET", "/", host).Code, host)
	}
	// Bound to another interface on purpose: any host.
	h, err = viewer.NewHandler(viewer.Options{})
	require.NoError(t, err)
	assert.Equal(t, 200, get(t, h, "GET", "/", "ct.lan:8080").Code)
}

func TestServerWeightsDir(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "weights")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	write := func(p, s string) { require.NoError(t, os.WriteFile(p, []byte(s), 0o644)) }
	write(filepath.Join(dir, "model.pt"), "model")
	write(filepath.Join(dir, "model_lowres.pt"), "lowres")
	write(filepath.Join(dir, "notes.txt"), "notes")
	write(filepath.Join(dir, ".hidden.pt"), "hidden")
	write(filepath.Join(dir, "sub", "inner.pt"), "inner")
	write(filepath.Join(base, "secret.pt"), "SECRET")
	require.NoError(t, os.Symlink(filepath.Join(base, "secret.pt"), filepath.Join(dir, "escape.pt")))
	require.NoError(t, os.Symlink("model.pt", filepath.Join(dir, "alias.pt")))

	h, err := viewer.NewHandler(viewer.Options{WeightsDir: dir})
	require.NoError(t, err)
	w := get(t, h, "GET", "/api/weights", "")
	require.Equal(t, 200, w.Code)
	assert.JSONEq(t, `[{"name":"alias.pt","size":5},{"name":"model.pt","size":5},{"name":"model_lowres.pt","size":6}]`, w.Body.String())

	w = get(t, h, "GET", "/weights/model_lowres.pt", "")
	require.Equal(t, 200, w.Code)
	assert.Equal(t, "lowres", w.Body.String())
	assert.Equal(t, "application/octet-stream", w.Header().Get("Content-Type"))
	assert.Equal(t, "model", get(t, h, "GET", "/weights/alias.pt", "").Body.String(), "a symlink inside the directory is fine")

	for _, p := range []string{
		"/weights/escape.pt", "/weights/../secret.pt", "/weights/%2e%2e/secret.pt", "/weights/..%2fsecret.pt",
		"/weights/%2e%2e%2fsecret.pt", "/weights/sub/inner.pt", "/weights/sub%2finner.pt", "/weights/.hidden.pt",
		"/weights/notes.txt", "/weights/", "/weights/..", "/weights/%00model.pt", "/../secret.pt", "/%2e%2e/secret.pt",
		"/weights/..\\secret.pt", "/weights/" + filepath.Join(base, "secret.pt"),
	} {
		w := get(t, h, "GET", p, "")
		assert.Equal(t, http.StatusNotFound, w.Code, p)
		assert.NotContains(t, w.Body.String(), "SECRET", p)
	}

	// Without --weights-dir: an empty list.
	h, err = viewer.NewHandler(viewer.Options{})
	require.NoError(t, err)
	assert.JSONEq(t, `[]`, get(t, h, "GET", "/api/weights", "").Body.String())
	assert.Equal(t, http.StatusNotFound, get(t, h, "GET", "/weights/model.pt", "").Code)

	_, err = viewer.NewHandler(viewer.Options{WeightsDir: filepath.Join(base, "missing")})
	assert.ErrorContains(t, err, "weights directory")
	_, err = viewer.NewHandler(viewer.Options{WeightsDir: filepath.Join(base, "secret.pt")})
	assert.ErrorContains(t, err, "not a directory")
}

// TestAssetsStayOnOrigin holds the app's own files to "nothing leaves the machine": the only
// other-host URLs in them are the links to the official weights, which the user follows.
func TestAssetsStayOnOrigin(t *testing.T) {
	allowed := regexp.MustCompile(`^https://developer\.download\.nvidia\.com/assets/Clara/monai/tutorials/model_zoo/model(_lowres)?_wholebody_ct_segmentation\.pt$`)
	url := regexp.MustCompile(`(?i)\b(?:https?|wss?|ftp):\/\/[^\s"'<>)\x60]+|(?:src|href|action)\s*=\s*["']?\/\/[^\s"'<>]+`)
	checked := 0
	err := fs.WalkDir(viewer.Assets(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(p, "gen/") || !regexp.MustCompile(`\.(html|js|css)$`).MatchString(p) {
			return err
		}
		b, err := fs.ReadFile(viewer.Assets(), p)
		if err != nil {
			return err
		}
		checked++
		for _, m := range url.FindAllString(string(b), -1) {
			assert.Regexp(t, allowed, m, "%s refers to another host", p)
			if p == "index.html" {
				assert.Regexp(t, `<a href="`+regexp.QuoteMeta(m)+`"`, string(b), "%s: %s must only be a link", p, m)
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.GreaterOrEqual(t, checked, 5)
}

func TestSampleCT(t *testing.T) {
	f, err := viewer.Assets().Open("sample/example_ct.nii.gz")
	require.NoError(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	require.True(t, len(b) > 1<<20 && b[0] == 0x1f && b[1] == 0x8b, "the sample CT is a gzip file of about 2 MB")
}

// Cached weights (the weight cache's files, offered when no --weights-dir is given) are served
// under their fixed names only; no other name reaches the file system.
func TestServerCachedWeights(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model-f16.safetensors")
	require.NoError(t, os.WriteFile(p, []byte("weights"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret.safetensors"), []byte("secret"), 0o644))
	h, err := viewer.NewHandler(viewer.Options{LoopbackOnly: true, Cached: map[string]string{"3mm-f16.safetensors": p}})
	require.NoError(t, err)
	w := get(t, h, "GET", "/api/weights", "localhost")
	require.Equal(t, http.StatusOK, w.Code)
	assert.JSONEq(t, `[{"name":"3mm-f16.safetensors","size":7}]`, w.Body.String())
	w = get(t, h, "GET", "/weights/3mm-f16.safetensors", "localhost")
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "weights", w.Body.String())
	for _, bad := range []string{"/weights/secret.safetensors", "/weights/model-f16.safetensors", "/weights/..%2Fsecret.safetensors", "/weights/" + escapedPath(p)} {
		assert.Equal(t, http.StatusNotFound, get(t, h, "GET", bad, "localhost").Code, bad)
	}
}

func escapedPath(p string) string { return strings.ReplaceAll(p, "/", "%2F") }
