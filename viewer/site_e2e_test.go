//go:build !js

package viewer_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"ctseg/internal/shared"
)

// The static site's end-to-end test: `ctseg site` writes the page as plain files, which
// Python's http.server (a static server that knows nothing of ctseg) serves under a sub-path
// (/ctseg/). In headless Chromium with WebGPU (SwiftShader) the page loads the sample, loads the
// small golden weights and the 30-slice CT from disk, and segments (labels equal to `ctseg
// segment`'s). Then the network goes away (DevTools offline emulation, and the server is
// stopped): a reload comes from the service worker, the sample loads from its cache, the
// weights from the browser's storage, and the CT segments again. Then a second build (the
// binary of another version) is deployed in place: the page switches to it and only its cache
// remains. No request leaves the machine.
func TestStaticSiteOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser end-to-end test takes minutes; run without -short")
	}
	start := time.Now()
	root := repoRoot(t)
	chromium := findChromium(t)
	python := lookPython(t)
	smallCT := shared.Path(t, "data", "ct", "example_ct_sm.nii.gz")
	weightsFile := shared.Path(t, "golden", "segresnet_small", "model.pt")
	bin1 := buildApp(t, root)
	bin2 := buildVersion(t, root, "e2e-second-build")
	want, _ := referenceLabels(t, bin1, smallCT, weightsFile)

	hostRoot := t.TempDir()
	site := filepath.Join(hostRoot, "ctseg")
	build1 := writeSite(t, bin1, site)
	port := freePort(t)
	stopServer := startStaticServer(t, python, hostRoot, port)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	proxy := startRecordingProxy(t, base+"/")
	ctx, _, logs := startBrowserWith(t, chromium, proxy.addr, true)
	p := newPageDriver(t, ctx, logs)
	downloads := t.TempDir()
	page := fmt.Sprintf("%s/ctseg/?roi=%d", base, e2eROI)

	p.do("opening the site", time.Minute, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
		return err
	}), chromedp.Navigate(page))
	p.waitState("starting the app", time.Minute, "idle")
	require.Contains(t, p.text("#gpuStatus"), "GPU:", "WebGPU in this browser")
	p.waitCache("the service worker caching the build", build1)

	p.do("loading the sample", time.Minute, chromedp.Click(chromedp.CSS("#sampleBtn")))
	p.waitState("reading the sample", time.Minute, "ready")
	p.do("choosing the weights", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#weightsFile"), []string{weightsFile}))
	p.waitState("reading the weights", time.Minute, "ready")
	segment := func(what string) {
		t.Helper()
		p.do("choosing the CT", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#ctFile"), []string{smallCT}))
		p.waitState("reading the CT", time.Minute, "ready")
		p.settings("3", "f32")
		p.do("segmenting "+what, time.Minute, chromedp.Click(chromedp.CSS("#runBtn")))
		p.waitState("segmenting "+what, 10*time.Minute, "done")
		p.do("downloading the labels", time.Minute, chromedp.Click(chromedp.CSS("#dlLabels")))
		f := filepath.Join(downloads, "example_ct_sm_labels.nii.gz")
		requireSameLabels(t, "labels "+what+" vs ctseg segment", want, readLabels(t, waitFile(t, f)))
		require.NoError(t, os.Remove(f))
	}
	segment("online")
	t.Logf("online run: %s (%s)", p.text("#progressText"), time.Since(start).Round(time.Second))

	// Offline: no network for the page, and no server either.
	stopServer()
	setOffline(t, ctx, true)
	p.do("reloading offline", time.Minute, chromedp.Navigate(page))
	p.waitState("starting the app offline", time.Minute, "ready") // ready: the stored weights are loaded
	require.Contains(t, p.text("#buildInfo"), build1, "the cached build")
	require.Contains(t, p.text("#weightsInfo"), "kept in this browser", "the weights from the browser's storage")
	p.do("loading the sample offline", time.Minute, chromedp.Click(chromedp.CSS("#sampleBtn")))
	p.waitState("reading the sample offline", time.Minute, "ready")
	segment("offline")

	// Another deployment's cache on the same origin (another sub-path): the switch below
	// must leave it alone.
	const foreign = "ctseg /ctseg-dev/ another-build"
	_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`caches.open(%q).then(() => true)`, foreign), chromedp.EvalAwaitPromise))
	require.NoError(t, err)

	// A second build deployed in place, the network back, but one of its files not yet (a
	// deployment half landed): the new worker's install fails on the file's SHA-256 and the
	// old build stays, whole.
	build2 := writeSite(t, bin2, site)
	require.NotEqual(t, build1, build2)
	css := filepath.Join(site, "style.css")
	cssBytes, err := os.ReadFile(css)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(css, append(append([]byte(nil), cssBytes...), "/* another build's */\n"...), 0o644))
	startStaticServer(t, python, hostRoot, port)
	setOffline(t, ctx, false)
	state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.serviceWorker.getRegistration().then((r) => r.update().then(() => new Promise((res) => {
		const w = r.installing;
		if (!w) return res('no new worker');
		const seen = () => { if (['redundant', 'installed', 'activated'].includes(w.state)) res(w.state); };
		w.addEventListener('statechange', seen);
		seen();
	})))`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	require.Equal(t, "redundant", state, "the new build's worker with a file not of its build")
	keys, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`caches.keys()`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"ctseg /ctseg/ " + build1, foreign}, keys, "caches after the failed install")

	// The deployment complete: the page switches to the new build whole.
	require.NoError(t, os.WriteFile(css, cssBytes, 0o644))
	p.do("reloading after the new deployment", time.Minute, chromedp.Navigate(page))
	p.waitCache("the page switching to the new build, whose cache replaces the old", build2)
	require.Contains(t, p.text("#buildInfo"), "e2e-second-build")
	keys, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](`caches.keys()`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	require.Contains(t, keys, foreign, "another deployment's cache on the same origin")

	_, other := proxy.seen()
	var left []string
	for _, o := range other {
		if !browserService(o) {
			left = append(left, o)
		}
	}
	require.Empty(t, left, "requests that left the machine")
	t.Logf("done in %s: build %s online and offline, then build %s", time.Since(start).Round(time.Second), build1, build2)
}

// setOffline turns DevTools' offline emulation on or off, for the page, its workers and the
// service worker, and navigator.onLine with it.
func setOffline(t *testing.T, ctx context.Context, offline bool) {
	t.Helper()
	_, err := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
		EmulateOfflineServiceWorker: &offline,
		MatchedNetworkConditions:    []*network.Conditions{{Offline: offline, DownloadThroughput: -1, UploadThroughput: -1}},
	})
	require.NoError(t, err)
	_, err = chromedp.Call(ctx, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: offline, DownloadThroughput: -1, UploadThroughput: -1})
	require.NoError(t, err)
}

// waitCache waits until the page's origin holds exactly one ctseg cache of the site's scope
// (/ctseg/), the build's, and the page shows that build. It asks again and again from Go, as the page may reload itself
// (switching to a new build) between two questions.
func (p *pageDriver) waitCache(what, build string) {
	p.t.Helper()
	check := fmt.Sprintf(`caches.keys().then((k) => {
		const c = k.filter((n) => n.startsWith('ctseg /ctseg/ '));
		return c.length === 1 && c[0] === 'ctseg /ctseg/ ' + %q && document.getElementById('buildInfo').textContent.includes(%q) && ['idle', 'ready'].includes(document.body.dataset.state);
	})`, build, build)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		c, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		ok, err := chromedp.Run(c, chromedp.Evaluate[bool](check, chromedp.EvalAwaitPromise))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			keys, _ := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](`caches.keys()`, chromedp.EvalAwaitPromise))
			state, msg := pageState(p.ctx)
			p.t.Fatalf("%s: caches %v, build shown %q, page state %q, message %q (last error %v)", what, keys, p.text("#buildInfo"), state, msg, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// writeSite runs `ctseg site` (quick brotli: the test does not measure sizes) and returns the
// build id.
func writeSite(t *testing.T, bin, dir string) string {
	t.Helper()
	out, err := exec.Command(bin, "site", "--out", dir, "--force", "--brotli-quality", "1").CombinedOutput()
	require.NoError(t, err, "ctseg site: %s", out)
	i := strings.LastIndex(string(out), "build ")
	require.True(t, i >= 0, "ctseg site printed %s", out)
	return strings.TrimSpace(string(out[i+len("build "):]))
}

// buildVersion builds the binary (with the wasm buildApp made) as a release of another version.
func buildVersion(t *testing.T, root, version string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ctseg")
	run(t, root, nil, goTool(), "build", "-ldflags", "-X ctseg/internal/version.Version="+version, "-o", bin, "./native/cmd/ctseg")
	return bin
}

func lookPython(t *testing.T) string {
	t.Helper()
	for _, n := range []string{"python3", "python"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatal("the static site test serves the site with python3 -m http.server: install python3 (scripts/install-deps.sh does)")
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startStaticServer serves dir with `python3 -m http.server` on the port and returns a
// function that stops it (also called at the end of the test).
func startStaticServer(t *testing.T, python, dir string, port int) func() {
	t.Helper()
	cmd := exec.Command(python, "-m", "http.server", fmt.Sprint(port), "--bind", "127.0.0.1", "--directory", dir)
	require.NoError(t, cmd.Start())
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("python3 -m http.server did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
