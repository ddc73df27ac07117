package cache

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"ctseg/internal/shared"
	"ctseg/weights"
)

// Every test here talks only to httptest servers on 127.0.0.1; nothing uses Official()'s URLs.

const downloadName = "model_test.pt"

// small is the golden small SegResNet checkpoint (torch.save zip, F=8 K=9) and its md5.
type small struct {
	data []byte
	md5  string
	path string
}

func loadSmall(t *testing.T) small {
	t.Helper()
	p := shared.Path(t, "golden", "segresnet_small", "model.pt")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	s := md5.Sum(b)
	return small{data: b, md5: hex.EncodeToString(s[:]), path: p}
}

// manifestFor is a test manifest whose 3mm variant is the small model at url.
func manifestFor(url, sum string) Manifest {
	return Manifest{Variants: []Variant{
		{Name: "1.5mm", Spacing: 1.5, URL: url + "/hi", MD5: strings.Repeat("0", 32), DownloadName: "hi.pt"},
		{Name: "3mm", Spacing: 3.0, URL: url, MD5: sum, DownloadName: downloadName},
	}}
}

// server counts requests and remembers their Range headers; handle decides each answer
// (i is the 0-based request number).
type server struct {
	*httptest.Server
	mu     sync.Mutex
	n      int
	ranges []string
}

func newServer(t *testing.T, handle func(i int, w http.ResponseWriter, r *http.Request)) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		i := s.n
		s.n++
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.mu.Unlock()
		handle(i, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

var modTime = time.Date(2023, 5, 1, 12, 0, 0, 0, time.UTC)

// serveFile answers like a CDN: Content-Length, Last-Modified, ETag, Range support.
func serveFile(w http.ResponseWriter, r *http.Request, data []byte) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"small-v1"`)
	http.ServeContent(w, r, downloadName, modTime, bytes.NewReader(data))
}

// serveTruncated announces the whole file but sends only its first n bytes, then drops the
// connection.
func serveTruncated(w http.ResponseWriter, data []byte, n int) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"small-v1"`)
	w.Header().Set("Last-Modified", modTime.Format(http.TimeFormat))
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:n])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler) // closes the connection without logging
}

// dirContents lists every path under dir, relative, sorted.
func dirContents(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && p == dir {
				return filepath.SkipDir
			}
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

// requireNothingCached checks a failed fetch left no entry and nothing Find could take.
func requireNothingCached(t *testing.T, dir string) {
	t.Helper()
	_, err := Find(dir, "3mm")
	require.Error(t, err)
	entries, err := List(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
	for _, p := range dirContents(t, dir) {
		require.False(t, strings.HasSuffix(p, ".safetensors"), "converted file left behind: %s", p)
		require.False(t, strings.HasSuffix(p, RecordName), "record left behind: %s", p)
	}
}

func fetch(t *testing.T, dir string, m Manifest, opts Options) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return Fetch(ctx, dir, m, "3mm", opts)
}

func TestFetchStoresBothPrecisionsAndSecondRunDoesNothing(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, sm.data) })
	dir := t.TempDir()
	m := manifestFor(srv.URL+"/"+downloadName, sm.md5)
	var log bytes.Buffer

	res, err := fetch(t, dir, m, Options{Progress: &log})
	require.NoError(t, err)
	require.False(t, res.AlreadyCached)
	require.Equal(t, 1, srv.requests())
	require.Equal(t, filepath.Join(dir, "3mm", F32Name), res.F32)
	require.Equal(t, filepath.Join(dir, "3mm", F16Name), res.F16)
	require.Equal(t, 3.0, res.Spacing)
	for _, want := range []string{"downloading", "md5 " + sm.md5 + " matches", "F=8 K=9", "cached in"} {
		require.Contains(t, log.String(), want)
	}
	// Off a terminal: phase lines only, no bar redraws.
	require.NotContains(t, log.String(), "\r")

	// The record says what the entry is; the files are what it says.
	r := res.Record
	require.Equal(t, "3mm", r.Variant)
	require.Equal(t, "download", r.Source)
	require.True(t, r.Official)
	require.Equal(t, sm.md5, r.SourceMD5)
	require.Equal(t, int64(len(sm.data)), r.SourceBytes)
	require.Equal(t, m.Variants[1].URL, r.SourceURL)
	require.Equal(t, "SegResNet F=8 K=9 blocks_down=[1 2 2 4] blocks_up=[1 1 1]", r.Config)
	require.Equal(t, 1176249, r.ParamCount)
	require.NoError(t, Verify(res.Entry))

	want, err := weights.Parse(sm.data)
	require.NoError(t, err)
	for _, p := range []string{res.F32, res.F16} {
		sd, err := weights.Load(p)
		require.NoError(t, err)
		require.Equal(t, "3mm", sd.Meta["variant"])
		require.Equal(t, "3", sd.Meta["spacing_mm"])
		require.Equal(t, sm.md5, sd.Meta["source_md5"])
		require.Len(t, sd.Tensors, len(want.Tensors))
	}
	f32, err := weights.Load(res.F32)
	require.NoError(t, err)
	require.Equal(t, want.Tensors[0].Data, f32.Tensors[0].Data, "f32 is exact")

	// The download is gone once converted; only the entry remains.
	require.Equal(t, []string{"3mm", "3mm/" + F16Name, "3mm/" + F32Name, "3mm/" + RecordName}, dirContents(t, dir))

	e, err := Find(dir, "3mm")
	require.NoError(t, err)
	require.Equal(t, res.Entry, e)
	e, err = Find(dir, "3.0") // the spacing written another way
	require.NoError(t, err)
	require.Equal(t, res.F32, e.F32)

	log.Reset()
	again, err := fetch(t, dir, m, Options{Progress: &log})
	require.NoError(t, err)
	require.True(t, again.AlreadyCached)
	require.Equal(t, 1, srv.requests(), "a cached variant must not reach the server")
	require.Contains(t, log.String(), "already cached")

	// Force downloads again and replaces the entry.
	forced, err := fetch(t, dir, m, Options{Force: true})
	require.NoError(t, err)
	require.False(t, forced.AlreadyCached)
	require.Equal(t, 2, srv.requests())
	require.NoError(t, Verify(forced.Entry))
}

func TestFetchMD5MismatchLeavesNothing(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, sm.data) })
	dir := t.TempDir()
	m := manifestFor(srv.URL+"/"+downloadName, strings.Repeat("ab", 16))

	_, err := fetch(t, dir, m, Options{Retries: 2})
	require.ErrorContains(t, err, "md5 "+sm.md5+" does not match the published abab")
	require.ErrorContains(t, err, "deleted it")
	require.Equal(t, 1, srv.requests(), "a bad checksum is not retried")
	require.Empty(t, dirContents(t, dir), "not even .partial may remain")
}

func TestFetchTruncatedKeepsPartialAndResumes(t *testing.T) {
	sm := loadSmall(t)
	half := len(sm.data) / 2
	srv := newServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			serveTruncated(w, sm.data, half)
			return
		}
		serveFile(w, r, sm.data)
	})
	dir := t.TempDir()
	m := manifestFor(srv.URL+"/"+downloadName, sm.md5)

	_, err := fetch(t, dir, m, Options{})
	require.ErrorContains(t, err, "run the same command again to resume")
	requireNothingCached(t, dir)
	part := filepath.Join(dir, partialDir, downloadName+".part")
	fi, err := os.Stat(part)
	require.NoError(t, err, "the partial download stays for the next run")
	require.Positive(t, fi.Size())
	require.Less(t, fi.Size(), int64(len(sm.data)))

	res, err := fetch(t, dir, m, Options{})
	require.NoError(t, err)
	require.True(t, res.Resumed)
	require.Equal(t, fmt.Sprintf("bytes=%d-", fi.Size()), srv.ranges[1])
	require.NoError(t, Verify(res.Entry))
	require.NoFileExists(t, part)
	require.NoDirExists(t, filepath.Join(dir, partialDir))
}

func TestFetchRetriesWithinOneRun(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		switch i {
		case 0:
			serveTruncated(w, sm.data, 1000)
		case 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			serveFile(w, r, sm.data)
		}
	})
	dir := t.TempDir()
	var log bytes.Buffer
	res, err := fetch(t, dir, manifestFor(srv.URL, sm.md5), Options{Retries: 2, Progress: &log})
	require.NoError(t, err)
	require.True(t, res.Resumed)
	require.Equal(t, 3, srv.requests())
	require.Equal(t, "bytes=1000-", srv.ranges[2])
	require.Contains(t, log.String(), "retrying (2 of 2)")
}

func TestFetchRestartsWhenServerIgnoresRange(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		if i == 0 {
			serveTruncated(w, sm.data, 4096)
			return
		}
		// No Range support: always the whole file with 200.
		w.Header().Set("Content-Length", strconv.Itoa(len(sm.data)))
		w.Write(sm.data)
	})
	dir := t.TempDir()
	m := manifestFor(srv.URL, sm.md5)
	_, err := fetch(t, dir, m, Options{})
	require.Error(t, err)
	res, err := fetch(t, dir, m, Options{})
	require.NoError(t, err)
	require.False(t, res.Resumed)
	require.Equal(t, "bytes=4096-", srv.ranges[1], "it asked to resume")
	require.NoError(t, Verify(res.Entry))
}

func TestFetchRestartsOnRangeNotSatisfiable(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(i int, w http.ResponseWriter, r *http.Request) {
		switch i {
		case 0:
			serveTruncated(w, sm.data, 4096)
		case 1:
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		default:
			serveFile(w, r, sm.data)
		}
	})
	dir := t.TempDir()
	m := manifestFor(srv.URL, sm.md5)
	_, err := fetch(t, dir, m, Options{})
	require.Error(t, err)
	_, err = fetch(t, dir, m, Options{})
	require.NoError(t, err)
	require.Equal(t, []string{"", "bytes=4096-", ""}, srv.ranges)
}

func TestFetchRefusesWebPage(t *testing.T) {
	page := "<!DOCTYPE html>\n<html><body>Access denied</body></html>\n"
	for name, contentType := range map[string]string{
		"labelled html":          "text/html; charset=utf-8",
		"html labelled as octet": "application/octet-stream",
	} {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", contentType)
				io.WriteString(w, page)
			})
			dir := t.TempDir()
			_, err := fetch(t, dir, manifestFor(srv.URL, strings.Repeat("0", 32)), Options{Retries: 2})
			require.ErrorContains(t, err, "the server returned a web page")
			require.Equal(t, 1, srv.requests())
			require.Empty(t, dirContents(t, dir))
		})
	}
}

func TestFetchRefusesErrorStatus(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	dir := t.TempDir()
	_, err := fetch(t, dir, manifestFor(srv.URL+"/gone.pt", strings.Repeat("0", 32)), Options{Retries: 2})
	require.ErrorContains(t, err, "the server answered 404 Not Found")
	require.ErrorContains(t, err, srv.URL+"/gone.pt")
	require.Equal(t, 1, srv.requests(), "a 404 is not retried")
	require.Empty(t, dirContents(t, dir))
}

func TestFetchFollowsRedirects(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/a":
			http.Redirect(w, r, "/b", http.StatusMovedPermanently)
		case "/b":
			http.Redirect(w, r, "/c", http.StatusFound)
		case "/c":
			http.Redirect(w, r, "/files/"+downloadName, http.StatusTemporaryRedirect)
		case "/files/" + downloadName:
			serveFile(w, r, sm.data)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	})
	dir := t.TempDir()
	res, err := fetch(t, dir, manifestFor(srv.URL+"/a", sm.md5), Options{})
	require.NoError(t, err)
	require.Equal(t, 4, srv.requests())
	require.Equal(t, srv.URL+"/a", res.Record.SourceURL)

	dir = t.TempDir()
	_, err = fetch(t, dir, manifestFor(srv.URL+"/loop", sm.md5), Options{Retries: 2})
	require.ErrorContains(t, err, "stopped after 10 redirects")
	requireNothingCached(t, dir)
}

func TestFetchStalledConnection(t *testing.T) {
	sm := loadSmall(t)
	release := make(chan struct{})
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(sm.data)))
		w.Write(sm.data[:5000])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	dir := t.TempDir()
	_, err := fetch(t, dir, manifestFor(srv.URL, sm.md5), Options{StallTimeout: 200 * time.Millisecond})
	require.ErrorContains(t, err, "no data for 200ms")
	require.ErrorContains(t, err, "resume")
	requireNothingCached(t, dir)
}

func TestFetchRefusesOtherNetworkForOfficialVariant(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, sm.data) })
	dir := t.TempDir()
	m := manifestFor(srv.URL, sm.md5)
	bundle := weights.BundleConfig()
	m.Variants[1].Config = &bundle
	_, err := fetch(t, dir, m, Options{})
	require.ErrorContains(t, err, "F=8 K=9")
	require.ErrorContains(t, err, "not the bundle's SegResNet F=32 K=105")
	require.Empty(t, dirContents(t, dir))
}

// enospcFile fails every write after budget bytes, as a full disk does.
type enospcFile struct {
	*os.File
	budget int
}

func (f *enospcFile) Write(p []byte) (int, error) {
	if len(p) > f.budget {
		n, _ := f.File.Write(p[:f.budget])
		f.budget = 0
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.budget -= len(p)
	return f.File.Write(p)
}

func TestFetchDiskFullWhileDownloading(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, sm.data) })
	orig := openPartial
	t.Cleanup(func() { openPartial = orig })
	openPartial = func(path string, flags int) (partialFile, error) {
		f, err := os.OpenFile(path, flags, 0o644)
		return &enospcFile{File: f, budget: 1 << 20}, err
	}
	dir := t.TempDir()
	_, err := fetch(t, dir, manifestFor(srv.URL, sm.md5), Options{Retries: 2})
	require.ErrorContains(t, err, "is full")
	require.ErrorContains(t, err, "--dir")
	require.Equal(t, 1, srv.requests(), "a full disk is not retried")
	require.Empty(t, dirContents(t, dir), "the partial download is freed")
}

func TestFetchDiskFullWhileConverting(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, sm.data) })
	orig := saveWeights
	t.Cleanup(func() { saveWeights = orig })
	saveWeights = func(path string, sd *weights.StateDict, opt weights.WriteOptions) error {
		if opt.F16 { // the f32 file is written, then the disk fills
			return fmt.Errorf("saving weights %s: %w", path, &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC})
		}
		return orig(path, sd, opt)
	}
	dir := t.TempDir()
	_, err := fetch(t, dir, manifestFor(srv.URL, sm.md5), Options{})
	require.ErrorContains(t, err, "is full")
	require.Empty(t, dirContents(t, dir), "neither the f32 file nor the download may remain")
}

func TestFetchClearsIncompleteEntry(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, sm.data) })
	dir := t.TempDir()
	// What a crash between the file moves and the record leaves.
	vdir := filepath.Join(dir, "3mm")
	require.NoError(t, os.MkdirAll(vdir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(vdir, F32Name), []byte("half a file"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(vdir, "notes.txt"), []byte("the user's"), 0o644))

	_, err := Find(dir, "3mm")
	require.ErrorContains(t, err, "incomplete")
	list, err := List(dir)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Contains(t, list[0].Problem, "incomplete")

	res, err := fetch(t, dir, manifestFor(srv.URL, sm.md5), Options{})
	require.NoError(t, err)
	require.False(t, res.AlreadyCached)
	require.NoError(t, Verify(res.Entry))
	require.FileExists(t, filepath.Join(vdir, "notes.txt"), "only the cache's own files are cleared")
}

func TestFindSaysHowToGetWeights(t *testing.T) {
	_, err := Find(t.TempDir(), "3mm")
	require.ErrorContains(t, err, "no 3mm weights cached")
	require.ErrorContains(t, err, "ctseg weights fetch --variant 3mm")
	require.ErrorContains(t, err, "ctseg weights import FILE")
	_, err = Find(t.TempDir(), "2mm")
	require.ErrorContains(t, err, `unknown weights variant "2mm" (want 1.5mm or 3mm)`)
}

func TestFindNoticesChangedFiles(t *testing.T) {
	sm := loadSmall(t)
	dir := t.TempDir()
	e, err := Import(dir, manifestFor("http://127.0.0.1:1", sm.md5), sm.path, "", Options{})
	require.NoError(t, err)

	// A file rewritten with another size: Find refuses it.
	require.NoError(t, os.WriteFile(e.F16, []byte("x"), 0o644))
	_, err = Find(dir, "3mm")
	require.ErrorContains(t, err, "model-f16.safetensors holds 1 bytes")

	// Same size, other bytes: only Verify can tell.
	e, err = Import(dir, manifestFor("http://127.0.0.1:1", sm.md5), sm.path, "", Options{})
	require.NoError(t, err)
	f, err := os.OpenFile(e.F32, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{1, 2, 3}, 1000)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = Find(dir, "3mm")
	require.NoError(t, err)
	require.ErrorContains(t, Verify(e), "does not match the record")
}

func TestImport(t *testing.T) {
	sm := loadSmall(t)
	unknown := shared.Path(t, "golden", "segresnet_small", "model.safetensors") // valid, not in the manifest
	m := manifestFor("http://127.0.0.1:1", sm.md5)                              // never contacted

	t.Run("official file is recognised by md5", func(t *testing.T) {
		dir := t.TempDir()
		var log bytes.Buffer
		e, err := Import(dir, m, sm.path, "", Options{Progress: &log})
		require.NoError(t, err)
		require.Equal(t, "3mm", e.Variant)
		require.True(t, e.Record.Official)
		require.Equal(t, "import", e.Record.Source)
		require.Equal(t, sm.md5, e.Record.SourceMD5)
		require.Equal(t, "model.pt", e.Record.SourceName)
		require.Contains(t, log.String(), "the official 3mm checkpoint")
		require.NoError(t, Verify(e))
		found, err := Find(dir, "3mm")
		require.NoError(t, err)
		require.Equal(t, e, found)

		// The same file again: nothing to do.
		again, err := Import(dir, m, sm.path, "3mm", Options{})
		require.NoError(t, err)
		require.Equal(t, e.Record.Created, again.Record.Created)

		// Claiming the wrong variant for an official file is refused.
		_, err = Import(dir, m, sm.path, "1.5mm", Options{})
		require.ErrorContains(t, err, "is the official 3mm checkpoint")

		// Another file over it needs Force.
		_, err = Import(dir, m, unknown, "3mm", Options{})
		require.ErrorContains(t, err, "pass --force")
		e2, err := Import(dir, m, unknown, "3mm", Options{Force: true})
		require.NoError(t, err)
		require.False(t, e2.Record.Official)
	})

	t.Run("unknown file needs a variant", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Import(dir, m, unknown, "", Options{})
		require.ErrorContains(t, err, "not an official checkpoint")
		require.ErrorContains(t, err, "--variant 1.5mm|3mm")
		require.Empty(t, dirContents(t, dir))

		e, err := Import(dir, m, unknown, "1.5mm", Options{})
		require.NoError(t, err)
		require.Equal(t, "1.5mm", e.Variant)
		require.Equal(t, 1.5, e.Spacing)
		require.Equal(t, "import", e.Record.Source)
		require.False(t, e.Record.Official)
		require.Equal(t, "user-provided, imported", e.Record.SourceSummary())
		require.Empty(t, e.Record.SourceURL)

		// Fetch leaves a user's own weights alone, without a request.
		srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, sm.data) })
		mm := manifestFor(srv.URL, sm.md5)
		var log bytes.Buffer
		res, err := Fetch(context.Background(), dir, mm, "1.5mm", Options{Progress: &log})
		require.NoError(t, err)
		require.True(t, res.AlreadyCached)
		require.Zero(t, srv.requests())
		require.Contains(t, log.String(), "pass --force to replace it")
	})

	t.Run("refusals", func(t *testing.T) {
		dir := t.TempDir()
		page := filepath.Join(t.TempDir(), "model.pt")
		require.NoError(t, os.WriteFile(page, []byte("\n<html><title>404</title></html>"), 0o644))
		_, err := Import(dir, m, page, "3mm", Options{})
		require.ErrorContains(t, err, "is a web page, not a checkpoint")

		junk := filepath.Join(t.TempDir(), "junk.pt")
		require.NoError(t, os.WriteFile(junk, []byte("PK\x03\x04 not really a zip"), 0o644))
		_, err = Import(dir, m, junk, "3mm", Options{})
		require.ErrorContains(t, err, junk)

		_, err = Import(dir, m, filepath.Join(dir, "missing.pt"), "3mm", Options{})
		require.ErrorContains(t, err, "missing.pt")
		_, err = Import(dir, m, t.TempDir(), "3mm", Options{})
		require.ErrorContains(t, err, "not a regular file")
		_, err = Import(dir, m, unknown, "7mm", Options{})
		require.ErrorContains(t, err, "unknown weights variant")
		requireNothingCached(t, dir)
	})
}

func TestList(t *testing.T) {
	sm := loadSmall(t)
	dir := t.TempDir()
	list, err := List(filepath.Join(dir, "does-not-exist"))
	require.NoError(t, err)
	require.Empty(t, list)

	m := manifestFor("http://127.0.0.1:1", sm.md5)
	_, err = Import(dir, m, sm.path, "", Options{})
	require.NoError(t, err)
	unknown := shared.Path(t, "golden", "segresnet_small", "model.safetensors")
	_, err = Import(dir, m, unknown, "1.5mm", Options{})
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, partialDir), 0o755)) // not an entry

	list, err = List(dir)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "1.5mm", list[0].Variant)
	require.Equal(t, "3mm", list[1].Variant)
	for _, e := range list {
		require.Empty(t, e.Problem)
		f32, _ := os.Stat(e.F32)
		f16, _ := os.Stat(e.F16)
		require.Equal(t, f32.Size()+f16.Size(), e.Size())
		require.Less(t, f16.Size(), f32.Size())
	}
	require.Equal(t, sm.md5, list[1].Record.SourceMD5)
}

func TestDefaultDir(t *testing.T) {
	d := t.TempDir()
	t.Setenv(EnvDir, d)
	got, err := DefaultDir()
	require.NoError(t, err)
	require.Equal(t, d, got)

	t.Setenv(EnvDir, "")
	t.Setenv("XDG_CACHE_HOME", filepath.Join(d, "xdg"))
	got, err = DefaultDir()
	require.NoError(t, err)
	base, err := os.UserCacheDir()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(base, "ctseg", "weights"), got)
}

func TestManifest(t *testing.T) {
	off := Official()
	require.NoError(t, off.Validate())
	require.Equal(t, []string{"1.5mm", "3mm"}, off.Names())
	for in, want := range map[string]string{"1.5mm": "1.5mm", "1.5": "1.5mm", "1.5 MM": "1.5mm", "3mm": "3mm", "3": "3mm", "3.0mm": "3mm"} {
		v, err := off.Lookup(in)
		require.NoError(t, err, in)
		require.Equal(t, want, v.Name, in)
	}
	v, ok := off.ByMD5("DBDEBEAE650F4FB5EA7F4AD01E0D2431")
	require.True(t, ok)
	require.Equal(t, "3mm", v.Name)
	require.Equal(t, "https://developer.download.nvidia.com/assets/Clara/monai/tutorials/model_zoo/model_lowres_wholebody_ct_segmentation.pt", v.URL)
	require.Equal(t, weights.BundleConfig().String(), v.Config.String())

	bad := []func(*Variant){
		func(v *Variant) { v.Name = "../x" },
		func(v *Variant) { v.DownloadName = ".hidden" },
		func(v *Variant) { v.MD5 = "xyz" },
		func(v *Variant) { v.URL = "file:///etc/passwd" },
		func(v *Variant) { v.Spacing = 0 },
	}
	for i, mutate := range bad {
		m := Official()
		mutate(&m.Variants[0])
		require.Error(t, m.Validate(), i)
	}
}

func TestLooksLikeWebPage(t *testing.T) {
	for in, want := range map[string]bool{
		"<!DOCTYPE html>":           true,
		"\xef\xbb\xbf  \n<html>":    true,
		"<?xml version=\"1.0\"?>":   true,
		"PK\x03\x04":                false,
		"<\x00\x00\x00\x00\x00\x00": false, // a safetensors header length of 60
		"":                          false,
	} {
		require.Equal(t, want, looksLikeWebPage([]byte(in)), "%q", in)
	}
}

func TestParseContentRange(t *testing.T) {
	s, e, n, ok := parseContentRange("bytes 100-199/200")
	require.True(t, ok)
	require.Equal(t, []int64{100, 199, 200}, []int64{s, e, n})
	_, _, n, ok = parseContentRange("bytes 5-9/*")
	require.True(t, ok)
	require.Equal(t, int64(-1), n)
	for _, bad := range []string{"", "bytes */200", "bytes 9-5/200", "bytes 0-200/200", "items 0-1/2"} {
		_, _, _, ok := parseContentRange(bad)
		require.False(t, ok, bad)
	}
}

func TestFetchNoConnectionFailsFast(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	dir := t.TempDir()
	var log bytes.Buffer
	start := time.Now()
	_, err := fetch(t, dir, manifestFor(url, strings.Repeat("0", 32)), Options{Retries: 3, RetryDelay: time.Second, Progress: &log})
	require.ErrorContains(t, err, "no network?")
	require.ErrorIs(t, err, ErrNoConnection)
	require.ErrorContains(t, err, "ctseg weights import FILE")
	require.NotContains(t, log.String(), "retrying", "a refused connection is not retried")
	require.Less(t, time.Since(start), time.Second)
	require.Empty(t, dirContents(t, dir))
}

func TestFetchWaitsForAnotherProcess(t *testing.T) {
	sm := loadSmall(t)
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) { serveFile(w, r, sm.data) })
	dir := t.TempDir()
	unlock, err := lockCache(context.Background(), dir, newReporter(nil))
	require.NoError(t, err)
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = Fetch(ctx, dir, manifestFor(srv.URL, sm.md5), "3mm", Options{Progress: &log})
	require.ErrorContains(t, err, "waiting for the lock")
	require.Contains(t, log.String(), "waiting for another ctseg")
	require.Zero(t, srv.requests())
	unlock()

	_, err = fetch(t, dir, manifestFor(srv.URL, sm.md5), Options{})
	require.NoError(t, err)
}

func TestImportKeepsF32WhenValuesExceedF16(t *testing.T) {
	sm := loadSmall(t)
	sd, err := weights.Parse(sm.data)
	require.NoError(t, err)
	sd.Tensors[0].Data[0] = 1e6 // beyond float16's 65504
	p := filepath.Join(t.TempDir(), "big.safetensors")
	require.NoError(t, weights.Save(p, sd, weights.WriteOptions{}))

	dir := t.TempDir()
	var log bytes.Buffer
	e, err := Import(dir, manifestFor("http://127.0.0.1:1", sm.md5), p, "3mm", Options{Progress: &log})
	require.NoError(t, err)
	require.Contains(t, log.String(), "caching f32 only")
	require.Empty(t, e.F16)
	require.NotContains(t, e.Record.Files, "f16")
	_, err = e.Path("f16")
	require.ErrorContains(t, err, "outside the float16 range")
	got, err := e.Path("f32")
	require.NoError(t, err)
	require.Equal(t, e.F32, got)
	require.NoError(t, Verify(e))
}
