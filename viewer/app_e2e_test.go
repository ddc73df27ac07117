//go:build !js

package viewer_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"ctseg/internal/shared"
	"ctseg/native/desktop"
	"ctseg/volume"
)

// The desktop app's end-to-end test drives `ctseg app --no-open` (built from this tree, native
// runs on lavapipe) from headless Chromium as it comes on Linux: navigator.gpu exists but
// gives no adapter, the users the desktop app is for. Through the page it: opens the launch
// link, finds WebGPU missing and "Run on" set to this computer's GPU, loads the sample CT,
// segments it natively (progress seen), downloads the labels, which must equal `ctseg segment`'s
// for the same weights and settings voxel for voxel, and the statistics, whose rows (the mean
// confidence included) must be `ctseg segment --stats`'s, finds the Teach view's p1, p2 and
// runner-up as a browser run leaves them, and cancels a second run. Then a browser
// with WebGPU (SwiftShader), opened through a second `ctseg app` (which hands over the running
// one), segments the 30-slice sample both natively and in the page: the same labels (f32). No
// request may leave the machine (the recording proxy). The small golden model stands in for
// the bundle's weights and a 32^3 window (`ctseg app --roi 32`, the page's ?roi=32) keeps the
// software GPUs' runs short.
func TestDesktopAppEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser end-to-end test takes minutes; run without -short")
	}
	start := time.Now()
	root := repoRoot(t)
	chromium := findChromium(t)
	sample := filepath.Join(root, "viewer", "static", "sample", "example_ct.nii.gz")
	smallCT := shared.Path(t, "data", "ct", "example_ct_sm.nii.gz")
	weightsFile := shared.Path(t, "golden", "segresnet_small", "model.pt")
	wdir := t.TempDir()
	for _, n := range []string{"model.pt", "model_lowres.pt"} { // the bundle's names, small weights
		require.NoError(t, os.Symlink(weightsFile, filepath.Join(wdir, n)))
	}
	runtimeDir := t.TempDir()
	downloads := t.TempDir()
	artifacts := artifactsDir(t)

	bin := buildApp(t, root)
	app := startDesktopApp(t, bin, runtimeDir, wdir)
	t.Logf("ctseg app started at %s (built in %s)", app.port, time.Since(start).Round(time.Second))
	wantSample, wantStats := segmentRefStats(t, bin, sample, weightsFile)

	proxy := startRecordingProxy(t, "http://127.0.0.1:"+app.port+"/")
	ctx, _, logs := startBrowserWith(t, chromium, proxy.addr, false)
	p := newPageDriver(t, ctx, logs)
	p.do("opening the launch link", time.Minute, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
		return err
	}), chromedp.Navigate(app.launch))
	p.waitState("starting the app", time.Minute, "idle")
	require.Contains(t, p.text("#gpuStatus"), "No WebGPU in this browser", "this browser must be without WebGPU")
	require.Equal(t, "false", p.eval(`String(document.getElementById('runOn').hidden)`), "Run on is offered")
	require.Equal(t, "true", p.eval(`String(document.getElementById('runOnNative').checked)`), "native is the default without WebGPU")
	require.Equal(t, "true", p.eval(`String(document.getElementById('runOnWebGPU').disabled)`))
	require.Contains(t, p.text("#runOnNativeText"), "this computer's GPU (native: ")
	require.Empty(t, p.text("#message"), "no error without WebGPU when the app runs natively")

	p.do("loading the sample CT", time.Minute, chromedp.Click(chromedp.CSS("#sampleBtn")))
	p.waitState("reading the sample", time.Minute, "ready")
	p.settings("3", "f32")
	p.do("segmenting natively", time.Minute, chromedp.Click(chromedp.CSS("#runBtn")))
	p.waitProgress("native progress", 2*time.Minute)
	p.waitState("the native run", 5*time.Minute, "done")
	require.Contains(t, p.text("#progressText"), "(native)")
	p.do("downloading the labels", time.Minute, chromedp.Click(chromedp.CSS("#dlLabels")))
	got := readLabels(t, waitFile(t, filepath.Join(downloads, "example_ct_labels.nii.gz")))
	requireSameLabels(t, "native run of the sample vs ctseg segment", wantSample, got)
	p.do("downloading the statistics", time.Minute, chromedp.Click(chromedp.CSS("#dlStats")))
	requireSameStats(t, wantStats, waitFile(t, filepath.Join(downloads, "example_ct_statistics.csv")))
	// the Teach view's confidence, as a browser run leaves it: p1, p2 and the runner-up per voxel
	require.Equal(t, fmt.Sprint(len(got)), p.eval(`(() => { const r = ctsegTest.result();
		return String(r.p1 && r.p2 && r.second && r.p1.length === r.p2.length && r.p2.length === r.second.length ? r.p1.length : -1); })()`),
		"the native run's p1, p2 and runner-up in the page")
	structures := p.eval(`String(document.querySelectorAll('#legendList li[data-label]').length)`)
	require.NotEqual(t, "0", structures, "the legend lists the structures")
	t.Logf("native run of the sample: %s; %s structures; labels equal ctseg segment's", p.text("#progressText"), structures)

	p.do("starting a run to cancel", time.Minute, chromedp.Click(chromedp.CSS("#runBtn")))
	p.waitProgress("progress before the cancel", 2*time.Minute)
	p.do("cancelling", time.Minute, chromedp.Click(chromedp.CSS("#cancelBtn")))
	p.waitState("the cancel", 2*time.Minute, "cancelled")
	require.Contains(t, p.text("#message"), "Cancelled")
	p.screenshot(filepath.Join(artifacts, "app-native.png"))

	// A second `ctseg app` opens the running one: a new launch link for the same port.
	second := exec.Command(bin, "app", "--no-open")
	second.Env = append(os.Environ(), "CTSEG_RUNTIME_DIR="+runtimeDir)
	out, err := second.Output()
	require.NoError(t, err, "second ctseg app")
	launch2 := firstLine(out)
	require.True(t, strings.HasPrefix(launch2, "http://127.0.0.1:"+app.port+"/launch?t="), "second instance printed %q", launch2)

	// With WebGPU: the native run and the page's own run give the same labels.
	ctx2, _, logs2 := startBrowserWith(t, chromium, proxy.addr, true)
	q := newPageDriver(t, ctx2, logs2)
	downloads2 := t.TempDir()
	q.do("opening the second launch link", time.Minute, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads2})
		return err
	}), chromedp.Navigate(launch2))
	q.waitState("starting the app", time.Minute, "idle")
	q.do("opening the page with the test window", time.Minute, chromedp.Navigate(fmt.Sprintf("http://127.0.0.1:%s/?roi=%d", app.port, e2eROI)))
	q.waitState("restarting the app", time.Minute, "idle")
	require.Equal(t, "true", q.eval(`String(document.getElementById('runOnWebGPU').checked)`), "WebGPU is the default where the browser has it")
	q.do("choosing the CT", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#ctFile"), []string{smallCT}))
	q.waitState("reading the CT", time.Minute, "ready")
	q.do("choosing the weights", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#weightsFile"), []string{weightsFile}))
	q.waitState("reading the weights", time.Minute, "ready")
	q.settings("3", "f32")
	q.do("segmenting in the browser", time.Minute, chromedp.Click(chromedp.CSS("#runBtn")))
	q.waitState("the browser run", 10*time.Minute, "done")
	require.NotContains(t, q.text("#progressText"), "(native)")
	q.do("downloading the browser's labels", time.Minute, chromedp.Click(chromedp.CSS("#dlLabels")))
	inBrowser := readLabels(t, waitFile(t, filepath.Join(downloads2, "example_ct_sm_labels.nii.gz")))
	require.NoError(t, os.Rename(filepath.Join(downloads2, "example_ct_sm_labels.nii.gz"), filepath.Join(downloads2, "browser.nii.gz")))
	q.do("choosing native", time.Minute, chromedp.Click(chromedp.CSS("#runOnNative")))
	q.settings("3", "f32")
	q.do("segmenting natively", time.Minute, chromedp.Click(chromedp.CSS("#runBtn")))
	q.waitState("the native run", 5*time.Minute, "done")
	require.Contains(t, q.text("#progressText"), "(native)")
	q.do("downloading the native labels", time.Minute, chromedp.Click(chromedp.CSS("#dlLabels")))
	native := readLabels(t, waitFile(t, filepath.Join(downloads2, "example_ct_sm_labels.nii.gz")))
	requireSameLabels(t, "native vs browser run of the 30-slice sample", inBrowser, native)

	fwd, other := proxy.seen()
	var left []string
	for _, o := range other {
		if !browserService(o) {
			left = append(left, o)
		}
	}
	require.Empty(t, left, "requests that left the machine")
	require.True(t, slices.ContainsFunc(fwd, func(s string) bool { return strings.HasPrefix(s, "POST /api/jobs") }), "the CT went to ctseg app")
	t.Logf("done in %s; %d requests to ctseg app", time.Since(start).Round(time.Second), len(fwd))
}

// desktopApp is `ctseg app --no-open` in a subprocess.
type desktopApp struct {
	launch, port string
	mu           sync.Mutex
	stderr       []string
}

func startDesktopApp(t *testing.T, bin, runtimeDir, wdir string) *desktopApp {
	t.Helper()
	// --device gpu: lavapipe, which auto would pass over for the CPU path
	cmd := exec.Command(bin, "app", "--no-open", "--device", "gpu", "--weights-dir", wdir, "--roi", fmt.Sprint(e2eROI), "--precision", "f32", "--verbose")
	cmd.Env = append(os.Environ(), "CTSEG_RUNTIME_DIR="+runtimeDir)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	a := &desktopApp{}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			a.mu.Lock()
			t.Logf("ctseg app stderr:\n%s", strings.Join(a.stderr, "\n"))
			a.mu.Unlock()
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			a.mu.Lock()
			a.stderr = append(a.stderr, sc.Text())
			a.mu.Unlock()
		}
	}()
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		for sc.Scan() {
		}
	}()
	select {
	case l, ok := <-first:
		require.True(t, ok, "ctseg app printed nothing")
		a.launch = l
	case <-time.After(time.Minute):
		t.Fatal("ctseg app did not print its launch URL")
	}
	a.port = portOf(t, a.launch)
	return a
}

// segmentRefStats is `ctseg segment --output --stats` of ct with the settings of the app's
// runs (referenceLabels'): the labels and the path of the statistics CSV.
func segmentRefStats(t *testing.T, bin, ct, weightsFile string) ([]uint8, string) {
	t.Helper()
	dir := t.TempDir()
	out, stats := filepath.Join(dir, "ref.nii.gz"), filepath.Join(dir, "ref.csv")
	cmd := exec.Command(bin, "segment", "--input", ct, "--weights", weightsFile, "--output", out, "--stats", stats,
		"--spacing", "3", "--device", "gpu", "--precision", "f32", "--roi", fmt.Sprint(e2eROI))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ctseg segment: %v\n%s", err, b)
	}
	return readLabels(t, out), stats
}

// requireSameStats compares the page's statistics CSV with `ctseg segment --stats`'s: the same
// columns (mean_confidence among them) and, row for row, the same values; a row the page has
// beyond them (its table names every class) is an empty structure.
func requireSameStats(t *testing.T, wantPath, gotPath string) {
	t.Helper()
	read := func(p string) [][]string {
		f, err := os.Open(p)
		require.NoError(t, err)
		defer f.Close()
		rows, err := csv.NewReader(f).ReadAll()
		require.NoError(t, err, p)
		require.NotEmpty(t, rows, p)
		return rows
	}
	want, got := read(wantPath), read(gotPath)
	require.Equal(t, want[0], got[0], "the statistics' columns")
	require.Contains(t, got[0], volume.ConfidenceColumn)
	byLabel := map[string][]string{}
	for _, r := range got[1:] {
		byLabel[r[0]] = r
	}
	confident := 0
	for _, r := range want[1:] {
		require.Equal(t, r, byLabel[r[0]], "label %s", r[0])
		delete(byLabel, r[0])
		if r[len(r)-1] != "" {
			confident++
		}
	}
	require.NotZero(t, confident, "no structure with a mean confidence")
	for l, r := range byLabel {
		require.Equal(t, "0", r[2], "label %s: only in the page's statistics", l)
	}
}

func readLabels(t *testing.T, path string) []uint8 {
	t.Helper()
	l, _, err := volume.ReadLabels(path)
	require.NoError(t, err)
	return l
}

func requireSameLabels(t *testing.T, what string, want, got []uint8) {
	t.Helper()
	require.Equal(t, len(want), len(got), "%s: voxel counts", what)
	diff := 0
	for i := range want {
		if want[i] != got[i] {
			diff++
		}
	}
	require.Zero(t, diff, "%s: %d of %d voxels differ", what, diff, len(want))
}

// pageDriver holds the helpers of one browser tab.
type pageDriver struct {
	t    *testing.T
	ctx  context.Context
	logs *consoleLog
}

func newPageDriver(t *testing.T, ctx context.Context, logs *consoleLog) *pageDriver {
	p := &pageDriver{t: t, ctx: ctx, logs: logs}
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range logs.lines() {
				t.Log("browser: " + l)
			}
		}
	})
	return p
}

func (p *pageDriver) run(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	c, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(c, steps...); err != nil {
		state, msg := pageState(p.ctx)
		p.t.Fatalf("%s: %v (page state %q, message %q)", what, err, state, msg)
	}
}

// do clears the page state first, so a following wait cannot be satisfied by an earlier state.
func (p *pageDriver) do(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	clear := chromedp.Evaluate[chromedp.Void](`document.body.dataset.state = 'test-step'`)
	p.run(what, timeout, append([]chromedp.Action[chromedp.Void]{clear}, steps...)...)
}

func (p *pageDriver) waitState(what string, timeout time.Duration, states ...string) {
	p.t.Helper()
	cond := fmt.Sprintf("%q.split(',').includes(document.body.dataset.state)", strings.Join(states, ","))
	p.run(what, timeout, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
}

// waitProgress waits until the page shows at least one window done.
func (p *pageDriver) waitProgress(what string, timeout time.Duration) {
	p.t.Helper()
	cond := `+(document.getElementById('progressText').dataset.done || 0) >= 1`
	p.run(what, timeout, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
}

func (p *pageDriver) eval(js string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](js))
	require.NoError(p.t, err, js)
	return s
}

func (p *pageDriver) text(sel string) string {
	return p.eval(fmt.Sprintf("document.querySelector(%q).textContent", sel))
}

// settings picks the model spacing and the storage precision as a user does.
func (p *pageDriver) settings(spacing, precision string) {
	p.t.Helper()
	p.run("choosing the settings", time.Minute, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
		for (const [id, v] of [['spacing', %q], ['precision', %q]]) {
			const s = document.getElementById(id);
			s.value = v;
			s.dispatchEvent(new Event('change'));
		}
	})()`, spacing, precision)))
}

func (p *pageDriver) screenshot(path string) {
	p.t.Helper()
	if png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot()); err == nil {
		if err := os.WriteFile(path, png, 0o644); err == nil {
			p.t.Logf("screenshot: %s", path)
		}
	}
}

// TestDesktopAppInstances runs the real binary: a second `ctseg app` hands over the running
// one; one killed without a chance to clean up leaves a stale runtime file, which the next app
// ignores; SIGTERM stops an app cleanly (exit 0, runtime file gone); a non-loopback address is
// refused with one line.
func TestDesktopAppInstances(t *testing.T) {
	root := repoRoot(t)
	bin := buildApp(t, root)
	rt := t.TempDir()
	env := append(os.Environ(), "CTSEG_RUNTIME_DIR="+rt)
	runtimeFile := desktop.RuntimeFile(rt)

	start := func() (*exec.Cmd, string) {
		cmd := exec.Command(bin, "app", "--no-open", "--device", "cpu")
		cmd.Env = env
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(out)
		require.True(t, sc.Scan(), "ctseg app printed no launch URL")
		go func() {
			for sc.Scan() {
			}
		}()
		return cmd, sc.Text()
	}
	a, urlA := start()
	t.Cleanup(func() { a.Process.Kill(); a.Wait() })
	portA := portOf(t, urlA)
	fi, err := os.Stat(runtimeFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	second := exec.Command(bin, "app", "--no-open")
	second.Env = env
	out, err := second.Output()
	require.NoError(t, err)
	require.Equal(t, portA, portOf(t, firstLine(out)), "the second app hands over the first")
	require.NotEqual(t, urlA, firstLine(out), "with a new token")

	// Killed: the runtime file stays, naming a dead process (whose lock the system released).
	require.NoError(t, a.Process.Kill())
	a.Wait()
	_, err = os.Stat(runtimeFile)
	require.NoError(t, err, "SIGKILL leaves the file")
	b, urlB := start()
	t.Cleanup(func() { b.Process.Kill(); b.Wait() })
	require.NotEqual(t, portA, portOf(t, urlB), "a new app, not the dead one")

	require.NoError(t, b.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- b.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "exit status after SIGTERM")
	case <-time.After(30 * time.Second):
		t.Fatal("ctseg app did not stop on SIGTERM")
	}
	_, err = os.Stat(runtimeFile)
	require.True(t, os.IsNotExist(err), "the runtime file outlived its app")

	bad := exec.Command(bin, "app", "--no-open", "--addr", "0.0.0.0:0")
	bad.Env = env
	var stderr strings.Builder
	bad.Stderr = &stderr
	err = bad.Run()
	require.Error(t, err)
	require.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one line: %q", stderr.String())
	require.Contains(t, stderr.String(), "listens only on 127.0.0.1")
}

func portOf(t *testing.T, launch string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(launch, "http://127.0.0.1:")
	require.True(t, ok, "launch URL %q", launch)
	port, _, _ := strings.Cut(rest, "/")
	return port
}
