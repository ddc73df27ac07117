package cache

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Options control Fetch and Import.
type Options struct {
	// Progress receives progress: a live bar when it is a terminal, one line per phase
	// otherwise. Nil is silent.
	Progress io.Writer
	// Force replaces an entry that is already cached (Fetch downloads again; Import stores the
	// new file over a different one).
	Force bool
	// Client makes the requests; nil uses one built on http.DefaultTransport (so proxies from
	// $HTTPS_PROXY work) with header timeouts and at most 10 redirects.
	Client *http.Client
	// Retries is how many more times Fetch tries after a transient failure (a dropped
	// connection, a 5xx), resuming the partial file each time; RetryDelay is the wait between.
	Retries    int
	RetryDelay time.Duration
	// StallTimeout aborts a download when no byte arrives for this long (0: one minute), so a
	// dead connection does not hang `make run` forever.
	StallTimeout time.Duration
}

// Result is what Fetch did.
type Result struct {
	Entry
	// AlreadyCached is true when the variant was found in the cache and nothing was requested.
	AlreadyCached bool
	// Resumed is true when the download continued a partial file from an earlier run.
	Resumed bool
}

const maxRedirects = 10

// partialState is <name>.part.json: what the partial file is a prefix of, so a resume never
// appends to a different file.
type partialState struct {
	URL          string `json:"url"`
	MD5          string `json:"md5"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Total        int64  `json:"total"` // -1 when the server did not say
}

// transient marks a failure worth retrying: the partial file (if any) is kept and the next
// attempt resumes it.
type transient struct{ err error }

func (t transient) Error() string { return t.err.Error() }
func (t transient) Unwrap() error { return t.err }

// ErrNoConnection is wrapped by Fetch errors where no connection to the server could be made
// (no DNS, refused, unreachable): a caller fetching several variants can stop trying.
var ErrNoConnection = errors.New("no network")

// errRestart asks the download loop to discard the partial file and start from byte 0.
var errRestart = errors.New("restart")

// Fetch downloads variant of m into dir ("" means DefaultDir) unless it is already cached:
// the file goes to <dir>/.partial, its md5 is checked over the whole file, and only then is it
// parsed, converted to f32 and f16 and committed (see the package comment). A cached variant
// returns at once without touching the network. On failure nothing usable-looking is left in
// the cache; an interrupted transfer stays in .partial and the next Fetch resumes it.
func Fetch(ctx context.Context, dir string, m Manifest, variant string, opts Options) (Result, error) {
	if err := m.Validate(); err != nil {
		return Result{}, err
	}
	v, err := m.Lookup(variant)
	if err != nil {
		return Result{}, err
	}
	if dir, err = resolveDir(dir); err != nil {
		return Result{}, err
	}
	rep := newReporter(opts.Progress)
	cached := func() (Result, bool) {
		e, err := find(dir, m, v.Name)
		if err != nil {
			return Result{}, false
		}
		if strings.EqualFold(e.Record.SourceMD5, v.MD5) {
			rep.line("%s: already cached in %s", v.Name, e.Dir)
		} else {
			rep.line("%s: already cached in %s (%s, md5 %s); pass --force to replace it with the official download", v.Name, e.Dir, e.Record.SourceSummary(), e.Record.SourceMD5)
		}
		return Result{Entry: e, AlreadyCached: true}, true
	}
	if !opts.Force {
		if r, ok := cached(); ok {
			return r, nil
		}
	}
	unlock, err := lockCache(ctx, dir, rep)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	if !opts.Force {
		// Another process may have fetched it while this one waited for the lock.
		if r, ok := cached(); ok {
			return r, nil
		}
	}
	tidy(dir, v.Name)

	d := downloader{dir: dir, v: v, opts: opts, rep: rep}
	d.part = filepath.Join(dir, partialDir, v.DownloadName+".part")
	d.state = d.part + ".json"
	if d.client = opts.Client; d.client == nil {
		d.client = defaultClient()
	}
	if err := d.run(ctx); err != nil {
		return Result{}, err
	}

	// The transfer is complete: from here on any failure discards it, since a retry has to
	// start clean (and a full disk needs the space back).
	defer d.discard()
	data, err := readLimited(d.part)
	if err != nil {
		return Result{}, diskError(dir, fmt.Errorf("reading the download: %w", err), 0)
	}
	if looksLikeWebPage(data) {
		return Result{}, fmt.Errorf("downloading %s weights from %s: the server returned a web page, not a checkpoint (a proxy or login page?); deleted it", v.Name, v.URL)
	}
	if sum := md5Hex(data); !strings.EqualFold(sum, v.MD5) {
		return Result{}, fmt.Errorf("downloading %s weights from %s: md5 %s does not match the published %s (a corrupted transfer or a changed file); deleted it, run again to retry, or download it yourself and use `ctseg weights import FILE`",
			v.Name, v.URL, sum, v.MD5)
	}
	rep.line("%s: md5 %s matches the published sum", v.Name, v.MD5)
	e, err := store(dir, v, source{data: data, md5: strings.ToLower(v.MD5), kind: "download", name: v.DownloadName, url: v.URL, origin: v.URL}, rep)
	if err != nil {
		return Result{}, err
	}
	rep.line("%s: cached in %s", v.Name, e.Dir)
	return Result{Entry: e, Resumed: d.resumed}, nil
}

// downloader fetches one variant into its partial file.
type downloader struct {
	dir, part, state string
	v                Variant
	opts             Options
	rep              *reporter
	client           *http.Client
	resumed          bool
}

// discard removes the partial file, its state, and .partial itself when that leaves it empty.
func (d *downloader) discard() {
	os.Remove(d.part)
	os.Remove(d.state)
	os.Remove(filepath.Dir(d.part))
}

// run leaves the complete file at d.part, retrying transient failures and restarting when the
// server cannot resume.
func (d *downloader) run(ctx context.Context) error {
	restarts, retries := 0, 0
	for {
		err := d.attempt(ctx)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errRestart) && restarts < 2:
			d.discard()
			restarts++
			continue
		case errors.Is(err, errRestart):
			return fmt.Errorf("downloading %s weights from %s: the server keeps refusing the requested range", d.v.Name, d.v.URL)
		}
		var t transient
		if !errors.As(err, &t) || retries >= d.opts.Retries || ctx.Err() != nil {
			return err
		}
		retries++
		d.rep.line("%s: %v; retrying (%d of %d)", d.v.Name, err, retries, d.opts.Retries)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d.opts.RetryDelay):
		}
	}
}

// attempt makes one request, resuming the partial file when there is one that belongs to
// this variant's URL and md5.
func (d *downloader) attempt(ctx context.Context) error {
	var st partialState
	offset := int64(0)
	if fi, err := os.Stat(d.part); err == nil && fi.Mode().IsRegular() {
		if b, err := os.ReadFile(d.state); err == nil && json.Unmarshal(b, &st) == nil &&
			st.URL == d.v.URL && strings.EqualFold(st.MD5, d.v.MD5) && (st.Total < 0 || fi.Size() <= st.Total) {
			offset = fi.Size()
		}
	}
	if offset > 0 && offset == st.Total {
		return nil // complete before an earlier run stopped; the md5 check decides
	}
	if offset == 0 {
		d.discard() // a stray or foreign partial file: start clean
		st = partialState{}
	}

	// A per-attempt context lets the stall watchdog abort just this request.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, d.v.URL, nil)
	if err != nil {
		return fmt.Errorf("downloading %s weights: %w", d.v.Name, err)
	}
	req.Header.Set("User-Agent", "ctseg")
	// Identity encoding keeps byte offsets meaningful for resuming and Content-Length exact.
	req.Header.Set("Accept-Encoding", "identity")
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		// If-Range: should the file have changed on the server, it sends the whole new one
		// (200) instead of a range of it that would not fit our prefix.
		if st.ETag != "" && !strings.HasPrefix(st.ETag, "W/") {
			req.Header.Set("If-Range", st.ETag)
		} else if st.LastModified != "" {
			req.Header.Set("If-Range", st.LastModified)
		}
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return d.netError(ctx, err, 0, -1)
	}
	defer resp.Body.Close()

	total := resp.ContentLength
	switch {
	case resp.StatusCode == http.StatusOK:
		if offset > 0 {
			d.rep.line("%s: the server cannot resume (or the file changed); starting over", d.v.Name)
			offset = 0
		}
		d.resumed = false
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		start, end, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset || (st.Total >= 0 && size >= 0 && size != st.Total) {
			return errRestart
		}
		switch {
		case size >= 0:
			total = size
		case resp.ContentLength >= 0:
			total = offset + resp.ContentLength
		default:
			total = -1
		}
		if total >= 0 && end+1 > total {
			return errRestart
		}
		d.resumed = true
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && offset > 0:
		return errRestart
	default:
		err := fmt.Errorf("downloading %s weights from %s: the server answered %s", d.v.Name, resp.Request.URL, resp.Status)
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return transient{err}
		}
		return err
	}
	if isHTML(resp.Header.Get("Content-Type")) {
		d.discard()
		return fmt.Errorf("downloading %s weights from %s: the server returned a web page (%s), not a checkpoint (a proxy or login page?)",
			d.v.Name, resp.Request.URL, resp.Header.Get("Content-Type"))
	}
	if total > maxSourceBytes {
		return fmt.Errorf("downloading %s weights from %s: the server announces %d bytes, too many for a checkpoint of this network", d.v.Name, resp.Request.URL, total)
	}

	if offset == 0 {
		// .partial is made only now, so a refused request leaves no trace.
		if err := os.MkdirAll(filepath.Dir(d.part), 0o755); err != nil {
			return diskError(d.dir, fmt.Errorf("creating %s: %w", filepath.Dir(d.part), err), 0)
		}
		st = partialState{URL: d.v.URL, MD5: strings.ToLower(d.v.MD5), ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), Total: total}
		b, _ := json.Marshal(st)
		if err := os.WriteFile(d.state, b, 0o644); err != nil {
			d.discard()
			return diskError(d.dir, fmt.Errorf("writing %s: %w", d.state, err), 0)
		}
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if offset == 0 {
		flags |= os.O_TRUNC
	}
	f, err := openPartial(d.part, flags)
	if err != nil {
		d.discard()
		return diskError(d.dir, fmt.Errorf("creating %s: %w", d.part, err), total)
	}

	if offset > 0 {
		d.rep.line("%s: resuming %s at %s of %s", d.v.Name, d.v.URL, humanBytes(offset), sizeOrUnknown(total))
	} else {
		d.rep.line("%s: downloading %s (%s)", d.v.Name, d.v.URL, sizeOrUnknown(total))
	}
	remaining := int64(-1)
	if total >= 0 {
		remaining = total - offset
	}
	bar, done := d.rep.bar(remaining, d.v.Name)

	// The watchdog cancels the request when no byte arrives for StallTimeout.
	stall := d.opts.StallTimeout
	if stall <= 0 {
		stall = time.Minute
	}
	var stalled atomic.Bool
	watchdog := time.AfterFunc(stall, func() { stalled.Store(true); cancel() })
	defer watchdog.Stop()

	began := time.Now()
	n, rerr, werr := copyBody(f, resp.Body, bar, watchdog, stall, offset, total)
	serr := f.Sync()
	cerr := f.Close()
	done(rerr == nil && werr == nil)
	if werr == nil {
		werr = serr
	}
	if werr == nil {
		werr = cerr
	}
	switch {
	case werr != nil:
		// A write failure (a full disk, most likely): the partial file is useless to keep.
		d.discard()
		need := int64(0)
		if total > 0 {
			need = total*5/2 - offset // the download plus the f32 and f16 files
		}
		return diskError(d.dir, fmt.Errorf("saving the download of %s weights: %w", d.v.Name, werr), need)
	case errors.Is(rerr, errWebPage):
		d.discard()
		return fmt.Errorf("downloading %s weights from %s: the server returned a web page, not a checkpoint (a proxy or login page?)", d.v.Name, resp.Request.URL)
	case errors.Is(rerr, errTooLong):
		d.discard()
		return fmt.Errorf("downloading %s weights from %s: the server sent more than %s; not the checkpoint", d.v.Name, resp.Request.URL, sizeOrUnknown(max(total, maxSourceBytes)))
	case rerr != nil:
		if stalled.Load() {
			rerr = fmt.Errorf("no data for %s", stall)
		}
		return d.netError(ctx, rerr, offset+n, total)
	case total >= 0 && offset+n != total:
		return d.netError(ctx, io.ErrUnexpectedEOF, offset+n, total)
	}
	secs := time.Since(began).Seconds()
	whole := ""
	if offset > 0 {
		whole = fmt.Sprintf(", %s in all", humanBytes(offset+n))
	}
	d.rep.line("%s: downloaded %s in %.1fs (%s/s%s)", d.v.Name, humanBytes(n), secs, humanBytes(int64(float64(n)/max(secs, 1e-3))), whole)
	return nil
}

// netError describes a failed transfer; the partial file stays for the next run to resume.
func (d *downloader) netError(ctx context.Context, err error, got, total int64) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message repeats the method and URL, which ours already gives
	}
	if ctx.Err() != nil {
		return fmt.Errorf("downloading %s weights: interrupted after %s; run the same command again to resume", d.v.Name, humanBytes(got))
	}
	var re redirectError
	var ce *tls.CertificateVerificationError
	switch {
	case errors.As(err, &re):
		return fmt.Errorf("downloading %s weights from %s: %v", d.v.Name, d.v.URL, err)
	case errors.As(err, &ce):
		// Not worth retrying; often an HTTPS-inspecting proxy whose CA the system lacks.
		return fmt.Errorf("downloading %s weights from %s: %v (on a network that inspects HTTPS, download the file in a browser and run `ctseg weights import FILE`)", d.v.Name, d.v.URL, err)
	case got > 0:
		return transient{fmt.Errorf("downloading %s weights from %s: transfer broken off after %s of %s (%v); run the same command again to resume",
			d.v.Name, d.v.URL, humanBytes(got), sizeOrUnknown(total), err)}
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) {
		// No connection at all: retrying in seconds rarely helps and would only delay
		// `make run` on an offline machine.
		return fmt.Errorf("downloading %s weights from %s: %v (%w? on an offline machine, copy %s over and run `ctseg weights import FILE`)",
			d.v.Name, d.v.URL, err, ErrNoConnection, d.v.DownloadName)
	}
	return transient{fmt.Errorf("downloading %s weights from %s: %v", d.v.Name, d.v.URL, err)}
}

// redirectError is the default client's refusal of a long redirect chain (likely a loop).
type redirectError struct{ n int }

func (e redirectError) Error() string { return fmt.Sprintf("stopped after %d redirects", e.n) }

var (
	errWebPage = errors.New("web page")
	errTooLong = errors.New("too long")
)

// partialFile is what the download writes to; openPartial is replaced by tests to simulate a
// full disk.
type partialFile interface {
	io.Writer
	Sync() error
	Close() error
}

var openPartial = func(path string, flags int) (partialFile, error) {
	return os.OpenFile(path, flags, 0o644)
}

// copyBody copies the response into the partial file, keeping read and write errors apart
// (a write error means the disk, a read error the network). A fresh download is sniffed
// before its first byte is written: an HTML page never lands on disk.
func copyBody(dst io.Writer, body io.Reader, bar io.Writer, watchdog *time.Timer, stall time.Duration, offset, total int64) (n int64, rerr, werr error) {
	limit := int64(maxSourceBytes) - offset
	if total >= 0 {
		limit = total - offset
	}
	buf := make([]byte, 256<<10)
	first := offset == 0
	for {
		k, err := body.Read(buf)
		if k > 0 {
			watchdog.Reset(stall)
			chunk := buf[:k]
			if first {
				// Enough of the start to recognise a page; a short first read of a real
				// checkpoint ("PK...") is decided by its first bytes anyway.
				if looksLikeWebPage(chunk) {
					return n, errWebPage, nil
				}
				first = false
			}
			if n+int64(k) > limit {
				return n, errTooLong, nil
			}
			if _, err := dst.Write(chunk); err != nil {
				return n, nil, err
			}
			bar.Write(chunk)
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// looksLikeWebPage reports whether data starts like HTML or XML text: "<" after optional
// whitespace or a BOM, with no NUL byte in the first 512 bytes (a safetensors header length
// may begin with 0x3C, but its high bytes are zero).
func looksLikeWebPage(data []byte) bool {
	head := data[:min(len(data), 512)]
	if bytes.IndexByte(head, 0) >= 0 {
		return false
	}
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	head = bytes.TrimLeft(head, " \t\r\n")
	return len(head) > 0 && head[0] == '<'
}

func isHTML(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "text/html" || mt == "application/xhtml+xml")
}

// parseContentRange reads "bytes START-END/SIZE" (SIZE may be "*": returned as -1).
func parseContentRange(s string) (start, end, size int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, sz, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseInt(a, 10, 64)
	end, err2 = strconv.ParseInt(b, 10, 64)
	size = -1
	if sz != "*" {
		size, err3 = strconv.ParseInt(sz, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start || (size >= 0 && end >= size) {
		return 0, 0, 0, false
	}
	return start, end, size, true
}

func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = time.Minute
	// A network that silently drops packets should fail `make run`'s fetch in seconds, not
	// the default transport's 30.
	t.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{
		Transport: t,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return redirectError{len(via)}
			}
			return nil
		},
	}
}

// readLimited reads a downloaded file, refusing one too large to be the checkpoint.
func readLimited(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxSourceBytes {
		return nil, fmt.Errorf("%s holds %d bytes, too many for a checkpoint", path, fi.Size())
	}
	return os.ReadFile(path)
}

func sizeOrUnknown(n int64) string {
	if n < 0 {
		return "size unknown"
	}
	return humanBytes(n)
}
