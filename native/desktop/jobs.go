//go:build !js

package desktop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"ctseg/pipeline"
	"ctseg/volume"
)

// Capabilities is GET /api/capabilities: what a native run offers.
type Capabilities struct {
	Device  string  `json:"device"` // "gpu" or "cpu"
	Adapter Adapter `json:"adapter"`
	// Weights lists the model spacings this computer has weights for.
	Weights        []WeightVariant `json:"weights"`
	Precisions     []string        `json:"precisions"`
	MaxUploadBytes int64           `json:"maxUploadBytes"`
}

// Adapter names the native GPU adapter (or the CPU).
type Adapter struct {
	Name     string `json:"name"`
	Backend  string `json:"backend"` // vulkan, metal, dx12, gl, cpu
	Software bool   `json:"software"`
}

// WeightVariant is one model the native side can run.
type WeightVariant struct {
	Spacing float64 `json:"spacing"`
	Name    string  `json:"name"` // the weight file's name
}

// Runner segments a CT as `ctseg segment` does: the same pipeline.Segment, weights and device.
type Runner interface {
	Capabilities() Capabilities
	// Check refuses, before anything is read, a run the runner cannot do (no weights for the
	// spacing, a precision the device lacks). The error is for the user, one line.
	Check(spacing float64, f16 bool) error
	// Segment runs the pipeline on ct; progress reports windows done, cancelled is polled
	// between windows. With the confidence (pipeline.Options Confidence and RunnerUp) the
	// statistics carry each structure's mean p1 and the page gets what a browser run gives it
	// (p1.u8, p2.u8, second.u8).
	Segment(ct *volume.Volume, spacing float64, f16 bool, progress func(done, total int), cancelled func() bool) (*pipeline.Result, error)
}

// Progress is the data of an `event: progress`.
type Progress struct {
	Stage string `json:"stage"` // preprocessing, windows, writing
	Done  int    `json:"done"`  // windows done
	Total int    `json:"total"` // windows in all (0 until known)
}

// job is one segmentation: the CT while it runs, the outputs once done.
type job struct {
	id string

	mu       sync.Mutex
	progress Progress
	state    string // running, done, failed
	errMsg   string // one line, for failed
	summary  map[string]any
	labels   []byte // labels.nii.gz
	stats    []byte // stats.csv
	// p1, p2 and second are pipeline.Result's P1, P2 and Second on the input grid, one byte a
	// voxel in the order of labels.nii.gz's voxels (nil when the runner computed none)
	p1, p2, second []byte
	changed        chan struct{}
	cancel         bool
	stopped        chan struct{} // closed when the run's goroutine has returned
	// started is set (under jobs.mu) when the run begins; until then the job holds the slot
	// while its CT is uploaded, and abort (under jobs.mu, nil once the body is read) ends the
	// upload
	started bool
	abort   func()
}

// update changes the job under its lock and wakes the event streams.
func (j *job) update(f func()) {
	j.mu.Lock()
	f()
	close(j.changed)
	j.changed = make(chan struct{})
	j.mu.Unlock()
}

func (j *job) cancelled() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.cancel
}

// jobs holds the one job the API knows (a finished one stays until the next POST or a DELETE)
// and the one whose CT is being received or whose run may still be stopping, so a new run never
// overlaps it on the GPU and only one CT at a time is held while it arrives.
type jobs struct {
	mu      sync.Mutex
	current *job
	running *job
	closing bool // the app is stopping: a run that stops says so, not "cancelled"
}

func (js *jobs) get(id string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.current != nil && js.current.id == id {
		return js.current
	}
	return nil
}

// cancelAll stops the run (after its current window) and waits for it; a CT still being
// received is not waited for: its upload is ended and it never runs (closing).
func (js *jobs) cancelAll() {
	js.mu.Lock()
	r := js.running
	started := r != nil && r.started
	if r != nil && !started && r.abort != nil {
		r.abort()
	}
	js.current = nil
	js.closing = true
	js.mu.Unlock()
	if started {
		r.update(func() { r.cancel = true })
		<-r.stopped
	}
}

// reserve claims the one slot for j before its CT is read: parallel uploads are refused at
// once instead of each holding a CT's worth of memory.
func (js *jobs) reserve(j *job) error {
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.closing {
		return errClosing
	}
	if js.running != nil {
		return errBusy
	}
	js.running = j
	return nil
}

// received says the job's CT has been read: nothing is left to abort.
func (js *jobs) received(j *job) {
	js.mu.Lock()
	j.abort = nil
	js.mu.Unlock()
}

// unreserve gives back the slot of a job that did not start.
func (js *jobs) unreserve(j *job) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j.abort = nil
	if js.running == j && !j.started {
		js.running = nil
	}
}

// start makes the reserved job the current one and marks it started; false when the app is
// stopping (the slot is given back).
func (js *jobs) start(j *job) bool {
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.closing || js.running != j {
		if js.running == j {
			js.running = nil
		}
		return false
	}
	j.started = true
	js.current = j
	return true
}

var (
	errBusy    = errors.New("a segmentation is already running: wait for it, or cancel it with DELETE /api/jobs/ID")
	errClosing = errors.New("ctseg app is stopping")
)

func (s *Server) jobsAPI(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/api/jobs"), "/")
	if rest == "" {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.postJob(w, r)
		return
	}
	id, what, _ := strings.Cut(rest, "/")
	j := s.jobs.get(id)
	if j == nil {
		http.Error(w, "no such job", http.StatusNotFound)
		return
	}
	allowed, known := map[string][]string{"": {"DELETE"}, "events": {"GET"}, "labels.nii.gz": {"GET", "HEAD"}, "stats.csv": {"GET", "HEAD"},
		"p1.u8": {"GET", "HEAD"}, "p2.u8": {"GET", "HEAD"}, "second.u8": {"GET", "HEAD"}}[what]
	if !known {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if !slices.Contains(allowed, r.Method) {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch {
	case what == "":
		s.deleteJob(w, j)
	case what == "events":
		s.events(w, r, j)
	default:
		j.mu.Lock()
		state := j.state
		b, ctype := j.labels, "application/gzip"
		switch what {
		case "stats.csv":
			b, ctype = j.stats, "text/csv; charset=utf-8"
		case "p1.u8":
			b, ctype = j.p1, "application/octet-stream"
		case "p2.u8":
			b, ctype = j.p2, "application/octet-stream"
		case "second.u8":
			b, ctype = j.second, "application/octet-stream"
		}
		j.mu.Unlock()
		if state != "done" {
			http.Error(w, "the job has not finished", http.StatusConflict)
			return
		}
		if b == nil {
			http.Error(w, "this run computed no "+strings.TrimSuffix(what, ".u8"), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", what))
		http.ServeContent(w, r, what, time.Time{}, bytes.NewReader(b))
	}
}

// postJob reads the CT of the body, checks what `ctseg segment` would check before running, and
// starts the run. The CT is parsed with every length checked against the bytes received before
// anything is allocated for it.
func (s *Server) postJob(w http.ResponseWriter, r *http.Request) {
	if s.opt.Runner == nil {
		http.Error(w, "this server runs no segmentations", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	spacing := 1.5
	if v := q.Get("spacing"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || (f != 1.5 && f != 3) {
			http.Error(w, fmt.Sprintf("spacing %q: the bundle's models use 1.5 or 3", v), http.StatusBadRequest)
			return
		}
		spacing = f
	}
	f16 := true
	switch q.Get("precision") {
	case "", "f16":
	case "f32":
		f16 = false
	default:
		http.Error(w, fmt.Sprintf("precision %q: want f16 or f32", q.Get("precision")), http.StatusBadRequest)
		return
	}
	// The slot is claimed before the body is read (and given back on every way out but a
	// started run): one CT at a time is received and held.
	j := &job{id: randomHex(16), state: "running", progress: Progress{Stage: "preprocessing"}, changed: make(chan struct{}), stopped: make(chan struct{})}
	rc := http.NewResponseController(w)
	j.abort = func() { rc.SetReadDeadline(time.Now()) } // the app stops: the upload ends
	if err := s.jobs.reserve(j); err != nil {
		code := http.StatusConflict
		if errors.Is(err, errClosing) {
			code = http.StatusServiceUnavailable
		}
		http.Error(w, err.Error(), code)
		return
	}
	defer s.jobs.unreserve(j)
	if err := s.opt.Runner.Check(spacing, f16); err != nil {
		http.Error(w, oneLine(err), http.StatusServiceUnavailable)
		return
	}
	tooLarge := fmt.Sprintf("the CT is larger than the %d MiB this app takes (ctseg app --max-upload-mb)", s.opt.MaxUpload>>20)
	if r.ContentLength > s.opt.MaxUpload {
		http.Error(w, tooLarge, http.StatusRequestEntityTooLarge)
		return
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength)) // one allocation where the size is declared
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.opt.MaxUpload))
	s.jobs.received(j)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, tooLarge, http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the request: "+oneLine(err), http.StatusBadRequest)
		return
	}
	body := buf.Bytes()
	ct, hdr, err := volume.ParseNIfTI(body)
	body, buf = nil, bytes.Buffer{}
	if err != nil {
		// the words `ctseg segment` uses for a file, the body in the file's place
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		http.Error(w, oneLine(fmt.Errorf("read NIfTI request body: %w", err)), http.StatusBadRequest)
		return
	}
	// What Preprocess refuses (non-finite values, a singular affine, a grid beyond the limit)
	// is refused here, before the run, with the message ctseg segment gives.
	if err := ct.CheckFinite(); err != nil {
		http.Error(w, oneLine(err), http.StatusBadRequest)
		return
	}
	if _, err := volume.InversionForGrid(ct.Dims, ct.Affine, spacing); err != nil {
		http.Error(w, oneLine(err), http.StatusBadRequest)
		return
	}
	if !s.jobs.start(j) {
		http.Error(w, errClosing.Error(), http.StatusServiceUnavailable)
		return
	}
	go s.run(j, ct, hdr, spacing, f16)
	writeJSON(w, map[string]string{"id": j.id})
}

// run segments ct and keeps the outputs `ctseg segment --output L.nii.gz --stats S.csv` writes:
// the same label file options and statistics.
func (s *Server) run(j *job, ct *volume.Volume, hdr *volume.Header, spacing float64, f16 bool) {
	start := time.Now()
	defer func() {
		s.jobs.mu.Lock()
		s.jobs.running = nil
		s.jobs.mu.Unlock()
		close(j.stopped)
	}()
	fail := func(msg string) { j.update(func() { j.state, j.errMsg = "failed", msg }) }
	stopped := func() bool {
		if !j.cancelled() {
			return false
		}
		s.jobs.mu.Lock()
		closing := s.jobs.closing
		s.jobs.mu.Unlock()
		if closing {
			fail("ctseg app was stopped")
		} else {
			fail("cancelled")
		}
		return true
	}
	defer func() {
		if r := recover(); r != nil { // a bug reaches the page as one line, the app stays up
			fail(oneLine(fmt.Errorf("internal error: %v", r)))
		}
	}()
	res, err := s.opt.Runner.Segment(ct, spacing, f16,
		func(done, total int) {
			j.update(func() { j.progress = Progress{Stage: "windows", Done: done, Total: total} })
		}, j.cancelled)
	if (err == nil || errors.Is(err, pipeline.ErrCancelled)) && stopped() {
		return
	}
	if err != nil {
		fail(oneLine(err))
		return
	}
	j.update(func() { j.progress.Stage = "writing" })
	lopt := pipeline.LabelFileOptions(res.Classes, hdr) // the input's header conventions

	var lb, sb bytes.Buffer
	if err := volume.EncodeLabels(&lb, true, res.Dims, res.Affine, res.Labels, lopt); err != nil {
		fail(oneLine(err))
		return
	}
	st := volume.LabelStats(res.Labels, ct, lopt.Names)
	if res.P1 != nil { // as `ctseg segment --stats` writes them
		if err := volume.AddConfidence(st, res.Labels, res.P1); err != nil {
			fail(oneLine(err))
			return
		}
	}
	if err := volume.WriteStatsCSV(&sb, st); err != nil {
		fail(oneLine(err))
		return
	}
	found := 0
	for _, x := range st {
		if x.Voxels > 0 && x.Label > 0 {
			found++
		}
	}
	if stopped() { // a cancel while the files were written
		return
	}
	j.update(func() {
		j.state, j.labels, j.stats = "done", lb.Bytes(), sb.Bytes()
		if len(res.Labels) <= pipeline.MaxPageConfidenceVoxels { // else the page would drop them
			j.p1, j.p2, j.second = res.P1, res.P2, res.Second
		}
		j.summary = map[string]any{"windows": res.Windows, "seconds": time.Since(start).Seconds(), "structures": found, "spacing": spacing}
	})
}

// deleteJob cancels a running job (it stops after the current window) and forgets the job.
func (s *Server) deleteJob(w http.ResponseWriter, j *job) {
	j.update(func() { j.cancel = true })
	s.jobs.mu.Lock()
	if s.jobs.current == j {
		s.jobs.current = nil
	}
	s.jobs.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// events streams the job's progress as Server-Sent Events, then `done` or `error`, and ends.
// A stream opened late starts with the current state.
func (s *Server) events(w http.ResponseWriter, r *http.Request, j *job) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var last Progress
	sent := false
	for {
		j.mu.Lock()
		p, state, msg, sum, ch := j.progress, j.state, j.errMsg, j.summary, j.changed
		j.mu.Unlock()
		if !sent || p != last {
			b, _ := json.Marshal(p)
			fmt.Fprintf(w, "event: progress\ndata: %s\n\n", b)
			last, sent = p, true
		}
		switch state {
		case "done":
			b, _ := json.Marshal(sum)
			fmt.Fprintf(w, "event: done\ndata: %s\n\n", b)
			fl.Flush()
			return
		case "failed":
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", msg)
			fl.Flush()
			return
		}
		fl.Flush()
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
	}
}

// oneLine is an error as one line of text (SSE data and HTTP bodies hold no line breaks).
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
