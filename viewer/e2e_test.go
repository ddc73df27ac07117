//go:build !js

package viewer_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"ctseg/internal/dicomtest"
	"ctseg/internal/shared"
	"ctseg/labels"
	"ctseg/pipeline"
	"ctseg/volume"
	"ctseg/volume/dicom"
)

// The browser end-to-end test drives the real app (`ctseg serve`, built from this tree with
// its wasm) in Debian's Chromium, headless, with WebGPU on its software adapter (SwiftShader).
// Through the UI it: gives wrong files as CT and weights (and a label map as a CT) and reads
// the messages; loads the sample CT shipped with the app; loads the small golden weights from
// disk and reloads to check they were kept in browser storage; loads the 30-slice sample CT;
// runs on an adapter made to look too small (the page suggests the 3 mm model), then with a
// GPU device lost mid-run (the page offers a retry, which keeps the CT and the weights), then
// cancels a run, then runs to the end; downloads the labels and the statistics; jumps to a
// structure, reads the value under the pointer and saves a screenshot. The labels must equal
// `ctseg segment`'s for the same input, weights and settings. The test's proxy, the tab's
// DevTools log and the server's request log hold the page to "nothing leaves the machine".
//
// SwiftShader runs the small model at about 1 GFLOP/s at best, so the run uses the 30-slice
// sample and a test-only window of 32^3 (?roi=32: 20 windows, about 23 GFLOP; `ctseg
// segment --roi 32` for the reference), and f32 storage on both sides (f16 rounding is the
// implementation's choice, and SwiftShader and lavapipe choose differently).
//
// Chromium: CTSEG_CHROMIUM, else chromium or chromium-browser on PATH. The screenshot goes to
// CTSEG_ARTIFACTS, else to ctseg-e2e under the system's temp dir; the test prints its path.
// A missing browser or WebGPU adapter fails the test: it never passes by skipping.

const e2eROI = 32

func TestBrowserEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser end-to-end test takes minutes; run without -short")
	}
	start := time.Now()
	root := repoRoot(t)
	chromium := findChromium(t)
	smallCT := shared.Path(t, "data", "ct", "example_ct_sm.nii.gz")
	weightsDir := shared.Path(t, "golden", "segresnet_small")
	weightsFile := filepath.Join(weightsDir, "model.pt")
	artifacts := artifactsDir(t)
	downloads := t.TempDir()

	bin := buildApp(t, root)
	t.Logf("built the app in %s", time.Since(start).Round(time.Second))
	// The reference first: the same segmentation by `ctseg segment`.
	want, wh := referenceLabels(t, bin, smallCT, weightsFile)
	t.Logf("reference segmentation by ctseg segment: done at %s", time.Since(start).Round(time.Second))
	srv := startServer(t, bin, weightsDir)
	proxy := startRecordingProxy(t, srv.url)

	ctx, requests, logs := startBrowser(t, chromium, proxy.addr)
	defer func() {
		if t.Failed() {
			for _, l := range logs.lines() {
				t.Log("browser: " + l)
			}
		}
	}()

	page := srv.url + fmt.Sprintf("?roi=%d&fault=small-adapter,lose-device&tunetiles=2x8x4,8x8x4c", e2eROI)
	// Every step that waits for a page state first clears it, so a wait cannot be satisfied
	// by the state of the step before.
	clear := chromedp.Evaluate[chromedp.Void](`document.body.dataset.state = 'test-step'`)
	run := func(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := chromedp.Do(c, steps...); err != nil {
			state, msg := pageState(ctx)
			t.Fatalf("%s: %v (page state %q, message %q)", what, err, state, msg)
		}
	}
	do := func(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		run(what, timeout, append([]chromedp.Action[chromedp.Void]{clear}, steps...)...)
	}
	waitState := func(what string, timeout time.Duration, states ...string) {
		t.Helper()
		cond := fmt.Sprintf("%q.split(',').includes(document.body.dataset.state)", strings.Join(states, ","))
		run(what, timeout, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
		if state, msg := pageState(ctx); !contains(states, state) {
			t.Fatalf("%s: page state %q, message %q", what, state, msg)
		}
	}
	textOf := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf("document.querySelector(%q).textContent", sel)))
		require.NoError(t, err)
		return s
	}

	do("opening the app", time.Minute,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
			return err
		}),
		chromedp.Navigate(page))
	waitState("starting the app", time.Minute, "idle")
	gpuClass, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('gpuStatus').className`))
	require.NoError(t, err)
	if !strings.Contains(gpuClass, "ok") {
		t.Fatalf("no WebGPU adapter in %s (run with --enable-unsafe-webgpu): the page says %q", chromium, textOf("#gpuStatus"))
	}
	t.Logf("page: %s", textOf("#gpuStatus"))
	require.Contains(t, textOf("#serverWeights"), "model.pt", "the server's --weights-dir should be offered")

	// Wrong files get a message that says what is wrong.
	do("choosing weights as the CT", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#ctFile"), []string{weightsFile}))
	waitState("reading a file that is not a CT", time.Minute, "error")
	require.Contains(t, textOf("#message"), "model.pt is not a NIfTI image")
	do("choosing a CT as weights", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#weightsFile"), []string{smallCT}))
	waitState("reading a file that is not weights", time.Minute, "error")
	require.Contains(t, textOf("#message"), "example_ct_sm.nii.gz is not a MONAI checkpoint")
	do("choosing a label map as the CT", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#ctFile"), []string{shared.Path(t, "data", "ct", "example_seg.nii.gz")}))
	waitState("reading a label map", time.Minute, "ready")
	require.Contains(t, textOf("#message"), "does not look like a CT")
	offered, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.getElementById('anywayBtn').hidden`))
	require.NoError(t, err)
	require.True(t, offered, "a file that does not look like a CT can still be used on purpose")

	// A single DICOM image is not a CT; the folder of its series is, through the folder picker.
	dicomDir := shared.Path(t, "data", "ct", "example_ct_dicom")
	slices, err := filepath.Glob(filepath.Join(dicomDir, "*"))
	require.NoError(t, err)
	require.Len(t, slices, 20)
	do("choosing one DICOM image as the CT", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#ctFile"), slices[:1]))
	waitState("reading one DICOM image", time.Minute, "error")
	require.Contains(t, textOf("#message"), "is a single DICOM image: choose the folder")
	do("choosing a DICOM folder", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#ctFolder"), []string{dicomDir}))
	waitState("reading a DICOM series", 2*time.Minute, "ready")
	require.Contains(t, textOf("#ctInfo"), "example_ct_dicom: 512 × 512 × 20 voxels, 0.98 × 0.98 × 2 mm, -1024 to 1839 HU")
	time.Sleep(300 * time.Millisecond)
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		require.NoError(t, os.WriteFile(filepath.Join(artifacts, "dicom.png"), png, 0o644))
	}

	// A folder holding two CT series (volume/dicom's test series): the page offers both.
	twoSeries := filepath.Join(t.TempDir(), "two_series")
	require.NoError(t, os.MkdirAll(twoSeries, 0o755))
	for _, s := range []string{"s16", "u12"} {
		files, err := filepath.Glob(filepath.Join(root, "volume", "dicom", "testdata", s, "native", "*.dcm"))
		require.NoError(t, err)
		require.Len(t, files, 3)
		for _, f := range files {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(twoSeries, s+"_"+filepath.Base(f)), b, 0o644))
		}
	}
	do("choosing a folder of two series", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#ctFolder"), []string{twoSeries}))
	waitState("reading a folder of two series", time.Minute, "pick-series")
	require.Contains(t, textOf("#message"), "two_series holds 2 CT series: choose one.")
	require.Contains(t, textOf("#seriesPick"), "3 images")
	do("choosing the second series", time.Minute, chromedp.Click(chromedp.CSS(`#seriesPick button[data-uid="1.2.826.0.1.3680043.2.1125.2"]`)))
	waitState("reading the chosen series", time.Minute, "ready")
	require.Contains(t, textOf("#ctInfo"), "two_series: 40 × 32 × 3 voxels")

	// The sample CT shipped with the app.
	do("loading the sample CT", time.Minute, chromedp.Click(chromedp.CSS("#sampleBtn")))
	waitState("reading the sample CT", time.Minute, "ready")
	require.Contains(t, textOf("#ctInfo"), "122 × 101 × 112")

	// Weights from disk through the file picker; kept in browser storage across a reload.
	do("choosing the weights", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#weightsFile"), []string{weightsFile}))
	do("reading the weights", time.Minute, chromedp.Poll[chromedp.Void](`/model\.pt: SegResNet/.test(document.getElementById('weightsInfo').textContent)`, chromedp.WithPollingTimeout(time.Minute)))
	do("reloading", time.Minute, chromedp.Reload())
	waitState("restarting the app", time.Minute, "idle", "ready")
	require.Regexp(t, `model\.pt: .*kept in this browser`, textOf("#weightsInfo"), "the weights should come back from browser storage")

	// The CT to segment, through the file picker; the 3 mm model.
	do("choosing the CT", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#ctFile"), []string{smallCT}))
	waitState("reading the CT", time.Minute, "ready")
	require.Contains(t, textOf("#ctInfo"), "122 × 101 × 30")
	// First run, at 1.5 mm, on an adapter made to look tiny (test fault): the page says so and
	// suggests the 3 mm model.
	do("segmenting on a small adapter", time.Minute, chromedp.Click(chromedp.CSS("#runBtn")))
	waitState("segmenting on a small adapter", 5*time.Minute, "error", "done")
	require.Regexp(t, `adapter is too small .*3 mm model`, textOf("#message"))
	visible, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.getElementById('retry').hidden && !document.getElementById('lowresBtn').hidden`))
	require.NoError(t, err)
	require.True(t, visible, "the page should offer the 3 mm model")

	// 3 mm, and f32 storage: f16 rounding is left to the implementation (SwiftShader and
	// lavapipe differ), which moves a few hundred near-tie voxels of the random-weight model.
	do("choosing 3 mm and f32", time.Minute, chromedp.Evaluate[chromedp.Void](`(() => {
		for (const [id, v] of [['spacing', '3'], ['precision', 'f32']]) {
			const s = document.getElementById(id);
			s.value = v;
			s.dispatchEvent(new Event('change'));
		}
	})()`))

	// Second run: the GPU device is lost after a window (test fault); the error must reach
	// the page, which offers a retry that keeps the CT and the weights.
	runStart := time.Now()
	do("starting the segmentation", time.Minute, chromedp.Click(chromedp.CSS("#runBtn")))
	waitState("segmenting with a lost device", 10*time.Minute, "error", "done")
	require.Contains(t, textOf("#message"), "device was lost: test fault")
	visible, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.getElementById('retry').hidden && !document.getElementById('retryBtn').hidden`))
	require.NoError(t, err)
	require.True(t, visible, "the page should offer to retry after a GPU fault")

	// Third run: retried, then cancelled after a window.
	do("retrying", time.Minute, chromedp.Click(chromedp.CSS("#retryBtn")),
		chromedp.Poll[chromedp.Void](`+(document.getElementById('progressText').dataset.done || 0) >= 1`, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(5*time.Minute)),
		chromedp.Click(chromedp.CSS("#cancelBtn")))
	waitState("cancelling", 10*time.Minute, "cancelled")

	// Tuning the kernels for this adapter (two candidate tiles, test window): the worker keeps
	// the choice and the next run uses it; its labels must still equal `ctseg segment`'s.
	do("tuning", time.Minute, chromedp.Click(chromedp.CSS("#tuneBtn")))
	waitState("tuning", 10*time.Minute, "tuned", "error")
	if state, msg := pageState(ctx); state != "tuned" {
		t.Fatalf("tuning: page state %q, message %q", state, msg)
	}
	tuneInfo := textOf("#tuneInfo")
	t.Logf("tuning: %s", tuneInfo)
	require.Regexp(t, `^(Tuned for .* \(tiles [0-9x=+c/a-z]+\)\.|The default kernels are the fastest on .*)$`, tuneInfo)
	tunedTiles := ""
	if m := regexp.MustCompile(`\(tiles ([^)]+)\)`).FindStringSubmatch(tuneInfo); m != nil {
		tunedTiles = m[1]
	}

	// Fourth run, to the end.
	runStart = time.Now()
	do("segmenting", time.Minute, chromedp.Click(chromedp.CSS("#runBtn")))
	waitState("segmenting", 15*time.Minute, "done", "error")
	if state, msg := pageState(ctx); state != "done" {
		t.Fatalf("segmenting: page state %q, message %q", state, msg)
	}
	runTime := time.Since(runStart)
	t.Logf("segmentation in the browser: %s (%s)", runTime.Round(time.Second), textOf("#progressText"))
	require.Regexp(t, `Done: 20 windows`, textOf("#progressText"))
	if tunedTiles != "" {
		require.Contains(t, textOf("#progressText"), "tuned tiles "+tunedTiles, "the run uses the tuned tiles")
	}

	// Downloads.
	do("downloading the labels", time.Minute, chromedp.Click(chromedp.CSS("#dlLabels")))
	labelsPath := waitFile(t, filepath.Join(downloads, "example_ct_sm_labels.nii.gz"))
	do("downloading the statistics", time.Minute, chromedp.Click(chromedp.CSS("#dlStats")))
	statsPath := waitFile(t, filepath.Join(downloads, "example_ct_sm_statistics.csv"))
	csv, err := os.ReadFile(statsPath)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(csv), "label,name,voxels,volume_ml,mean_hu,std_hu,mean_confidence\n"), "statistics CSV header (the page computes the confidence): %q", firstLine(csv))

	// The viewer: jump to the largest structure, then the screenshot.
	do("jumping to a structure", time.Minute, chromedp.Evaluate[chromedp.Void](`(() => {
		const items = [...document.querySelectorAll('#legendList li[data-label]')];
		const ml = (li) => parseFloat(li.querySelector('.ml').textContent);
		items.sort((a, b) => ml(b) - ml(a));
		items[0].querySelector('.name').click();
	})()`))
	do("pointing at the axial view", time.Minute, chromedp.Evaluate[chromedp.Void](`(() => {
		const c = document.getElementById('axial'), r = c.getBoundingClientRect();
		c.dispatchEvent(new PointerEvent('pointermove', {clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, bubbles: true}));
	})()`))
	require.Regexp(t, `voxel \d+, \d+, \d+HU -?\d+structure \S`, textOf("#hover"), "the value and structure under the pointer")

	// The 3-D view: coloured structures on black, a drag turns them, and the pointer over one
	// names it. (lit3d counts the pixels that are not background and hashes them.)
	lit3d := func() (n int, hash int) {
		r, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`(() => {
			const c = document.getElementById('view3d'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
			let n = 0, h = 0;
			for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 30) { n++; h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2] + i) | 0; }
			return [n, h];
		})()`))
		require.NoError(t, err)
		return r[0], r[1]
	}
	time.Sleep(500 * time.Millisecond) // the 3-D view draws on the next animation frame
	front, frontHash := lit3d()
	require.Greater(t, front, 500, "the 3-D view shows no structure")
	do("turning the 3-D view", time.Minute, chromedp.Evaluate[chromedp.Void](`(() => {
		const c = document.getElementById('view3d'), r = c.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
		const ev = (type, dx) => c.dispatchEvent(new PointerEvent(type, {clientX: x + dx, clientY: y, pointerId: 1, bubbles: true}));
		ev('pointerdown', 0); ev('pointermove', 60); ev('pointermove', 120); ev('pointerup', 120);
	})()`))
	time.Sleep(500 * time.Millisecond)
	side, sideHash := lit3d()
	require.Greater(t, side, 500, "the turned 3-D view shows no structure")
	require.NotEqual(t, frontHash, sideHash, "the drag did not turn the 3-D view")
	do("pointing at a structure in the 3-D view", time.Minute, chromedp.Evaluate[chromedp.Void](`(() => {
		const c = document.getElementById('view3d'), r = c.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
		c.dispatchEvent(new PointerEvent('pointerleave', {bubbles: true})); // clears what the slice views left in #hover
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		for (let i = 0; i < d.length; i += 4) {
			if (d[i] + d[i + 1] + d[i + 2] <= 30) continue;
			const p = i / 4, x = (p % c.width) / dpr + r.left + 0.5, y = Math.floor(p / c.width) / dpr + r.top + 0.5;
			c.dispatchEvent(new PointerEvent('pointermove', {clientX: x, clientY: y, bubbles: true}));
			return;
		}
	})()`))
	hover3d := textOf("#hover")
	t.Logf("3-D view: %d lit pixels from the front, %d turned; pointer: %s", front, side, hover3d)
	time.Sleep(300 * time.Millisecond) // one animation frame is enough; leave a few
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#legendList li[data-label]').length`))
	require.NoError(t, err)
	require.Greater(t, n, 1, "the legend should list the structures found")
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	shot := filepath.Join(artifacts, "viewer.png")
	require.NoError(t, os.WriteFile(shot, png, 0o644))
	t.Logf("screenshot: %s", shot)

	got, gh, err := volume.ReadLabels(labelsPath)
	require.NoError(t, err)
	// the 3-D view named the structure of the voxel it reported
	m := regexp.MustCompile(`^voxel (\d+), (\d+), (\d+)HU -?\d+structure (.+)$`).FindStringSubmatch(hover3d)
	require.NotNil(t, m, "the 3-D view's pointer readout %q", hover3d)
	var p [3]int
	for a := range p {
		p[a], err = strconv.Atoi(m[a+1])
		require.NoError(t, err)
	}
	l := got[p[0]+gh.Dims[0]*(p[1]+gh.Dims[1]*p[2])]
	require.NotZero(t, l, "the 3-D view reported a background voxel")
	require.Equal(t, strings.ReplaceAll(labels.Names[l], "_", " "), m[4], "the 3-D view named another structure than its voxel's")
	require.Equal(t, wh.Dims, gh.Dims, "grid of the downloaded labels")
	for i := range 3 {
		for j := range 4 {
			require.InDelta(t, wh.Affine[i][j], gh.Affine[i][j], 1e-4, "affine of the downloaded labels")
		}
	}
	same := 0
	for i := range want {
		if got[i] == want[i] {
			same++
		}
	}
	frac := float64(same) / float64(len(want))
	t.Logf("labels equal to ctseg segment's on %d of %d voxels (%.4f %%)", same, len(want), 100*frac)
	require.GreaterOrEqual(t, frac, 0.9999, "browser labels must match ctseg segment's")
	visible, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.getElementById('dlSeg').hidden`))
	require.NoError(t, err)
	require.False(t, visible, "a NIfTI CT has no DICOM SEG download")

	// A label map made earlier, opened instead of a run: the one just downloaded shows the same
	// structures; a map of other classes (TotalSegmentator v2's, on this very grid) is refused.
	found := regexp.MustCompile(`^(\d+) structures`).FindStringSubmatch(textOf("#summary"))
	require.NotNil(t, found, "run summary %q", textOf("#summary"))
	do("opening the downloaded labels", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#labelsFile"), []string{labelsPath}))
	waitState("opening the labels", time.Minute, "done", "error")
	require.Equal(t, found[1]+" structures in example_ct_sm_labels.nii.gz", textOf("#summary"))
	do("opening a map of other classes", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#labelsFile"), []string{shared.Path(t, "data", "ct", "example_seg.nii.gz")}))
	waitState("opening a map of other classes", time.Minute, "error")
	require.Contains(t, textOf("#message"), "it is a map of other classes")

	// A DICOM series (the small u12 one of the two-series folder; 3 slices, so "use it
	// anyway"): the page's DICOM Segmentation holds the same frames as the native writer's
	// for the labels the page gives, and dicom3tools' dciodvfy finds no error in it.
	const u12 = "1.2.826.0.1.3680043.2.1125.2"
	do("choosing the folder of two series again", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#ctFolder"), []string{twoSeries}))
	waitState("reading the folder again", time.Minute, "pick-series")
	do("choosing the u12 series", time.Minute, chromedp.Click(chromedp.CSS(`#seriesPick button[data-uid="`+u12+`"]`)))
	waitState("reading the u12 series", time.Minute, "ready")
	do("using it anyway", time.Minute, chromedp.Click(chromedp.CSS("#anywayBtn")))
	do("segmenting the series", time.Minute, chromedp.Click(chromedp.CSS("#runBtn")))
	waitState("segmenting the series", 5*time.Minute, "done", "error")
	if state, msg := pageState(ctx); state != "done" {
		t.Fatalf("segmenting the series: page state %q, message %q", state, msg)
	}
	do("downloading the series' labels", time.Minute, chromedp.Click(chromedp.CSS("#dlLabels")))
	seriesLabels := waitFile(t, filepath.Join(downloads, "two_series_labels.nii.gz"))
	do("downloading the DICOM SEG", time.Minute, chromedp.Click(chromedp.CSS("#dlSeg")))
	segPath := waitFile(t, filepath.Join(downloads, "two_series_seg.dcm"))
	pageSeg, err := os.ReadFile(segPath)
	require.NoError(t, err)
	lab, _, err := volume.ReadLabels(seriesLabels)
	require.NoError(t, err)
	srcs, err := dicom.Dir(twoSeries)
	require.NoError(t, err)
	series, err := dicom.Open(srcs, dicom.Options{Series: u12})
	require.NoError(t, err)
	var native bytes.Buffer
	sum, err := series.WriteSegmentation(&native, lab, pipeline.SegmentationOptions(labels.Count, 3))
	require.NoError(t, err)
	require.Greater(t, sum.Frames, 0, "the series' labels hold no structure")
	nativeFrames, pageFrames := dicomtest.PixelData(native.Bytes()), dicomtest.PixelData(pageSeg)
	require.NotNil(t, pageFrames, "the page's DICOM SEG has no pixel data")
	require.True(t, bytes.Equal(nativeFrames, pageFrames), "the page's DICOM SEG frames differ from the native writer's")
	dciodvfy, err := exec.LookPath("dciodvfy")
	require.NoError(t, err, "dciodvfy (dicom3tools) is needed: scripts/install-deps.sh installs it")
	out, _ := exec.Command(dciodvfy, segPath).CombinedOutput()
	require.Contains(t, string(out), "Segmentation")
	require.NotContains(t, string(out), "Error", "dciodvfy on the page's DICOM SEG")
	t.Logf("DICOM SEG from the page: %d structures, %d frames, %d bytes", sum.Segments, sum.Frames, len(pageSeg))

	// Offline use under ctseg serve too: the page's service worker holds this build whole.
	keys, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`caches.keys()`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	build, err := chromedp.Run(ctx, chromedp.Evaluate[string](`self.CTSEG_BUILD`))
	require.NoError(t, err)
	require.Equal(t, []string{"ctseg / " + build}, keys, "the service worker's cache under ctseg serve")

	t.Run("nothing leaves the machine", func(t *testing.T) {
		// Every request of the browser went through the test's proxy. Those for the app's
		// server were downloads (GET), the worker's included; nothing else went anywhere but
		// to Chromium's own services.
		app, other := proxy.seen()
		require.Contains(t, app, "GET /gen/ctseg.wasm", "the proxy did not see the worker's requests")
		for _, r := range app {
			require.Regexp(t, `^(GET|HEAD) /`, r, "the page sent data to the server")
		}
		for _, r := range other {
			require.True(t, browserService(r), "a request left the machine: %s", r)
		}
		// The page's own requests (DevTools log of the tab), whatever the host, were GETs of
		// the app's server (or local blob: and data: URLs).
		reqs := requests.all()
		require.NotEmpty(t, reqs)
		for _, r := range reqs {
			u, err := url.Parse(r.url)
			require.NoError(t, err)
			if u.Scheme == "blob" || u.Scheme == "data" {
				continue
			}
			require.True(t, isLoopback(u.Hostname()), "the page requested another host: %s %s", r.method, r.url)
			require.Equal(t, "GET", r.method, "the page sent data to the server: %s %s", r.method, r.url)
		}
		// And the server received nothing but downloads.
		for _, l := range srv.log() {
			require.Regexp(t, `^(GET|HEAD) `, l, "the server received a request that is not a download")
		}
	})
	t.Logf("browser end-to-end: %s in all, of which the segmentation %s", time.Since(start).Round(time.Second), runTime.Round(time.Second))
}

// ---- helpers -----------------------------------------------------------------------------

func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatal("no go.mod above the test's directory")
		}
		d = filepath.Dir(d)
	}
}

func findChromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CTSEG_CHROMIUM"); p != "" {
		return p
	}
	for _, n := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatal("the browser end-to-end test needs Chromium: install Debian's chromium (scripts/install-deps.sh does) or set CTSEG_CHROMIUM")
	return ""
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("CTSEG_ARTIFACTS")
	if d == "" {
		d = filepath.Join(os.TempDir(), "ctseg-e2e")
	}
	require.NoError(t, os.MkdirAll(d, 0o755))
	abs, err := filepath.Abs(d)
	require.NoError(t, err)
	return abs
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// buildApp builds the wasm into viewer/static/gen (as make build does; replaced only when it
// changed, so a fresh clone's go test works and a built tree is left alone) and then the ctseg
// binary that embeds it.
func buildApp(t *testing.T, root string) string {
	t.Helper()
	tmp := t.TempDir()
	gen := filepath.Join(root, "viewer", "static", "gen")
	wasm := filepath.Join(tmp, "ctseg.wasm")
	run(t, root, []string{"GOOS=js", "GOARCH=wasm"}, goTool(), "build", "-trimpath", "-ldflags=-s -w", "-o", wasm, "./wasm") // as make build
	goroot := strings.TrimSpace(string(output(t, root, goTool(), "env", "GOROOT")))
	replaceIfChanged(t, filepath.Join(gen, "ctseg.wasm"), wasm)
	replaceIfChanged(t, filepath.Join(gen, "wasm_exec.js"), filepath.Join(goroot, "lib", "wasm", "wasm_exec.js"))
	bin := filepath.Join(tmp, "ctseg")
	run(t, root, nil, goTool(), "build", "-o", bin, "./native/cmd/ctseg")
	return bin
}

func replaceIfChanged(t *testing.T, dst, src string) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, b) {
		return
	}
	tmp := dst + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o644))
	require.NoError(t, os.Rename(tmp, dst))
}

func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func output(t *testing.T, dir, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err, "%s %s", name, strings.Join(args, " "))
	return out
}

// appServer is `ctseg serve --verbose` in a subprocess, with its request log.
type appServer struct {
	url   string
	mu    sync.Mutex
	lines []string
}

func (s *appServer) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

func (s *appServer) saw(prefix string) bool {
	for _, l := range s.log() {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func startServer(t *testing.T, bin, weightsDir string) *appServer {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--weights-dir", weightsDir, "--verbose")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &appServer{}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
		}
	}()
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`http://127\.0\.0\.1:\d+/`)
		for sc.Scan() {
			if u := re.FindString(sc.Text()); u != "" {
				urls <- u
			}
		}
		close(urls)
	}()
	select {
	case u, ok := <-urls:
		if !ok {
			t.Fatalf("ctseg serve exited: %s", strings.Join(s.log(), "\n"))
		}
		s.url = u
	case <-time.After(30 * time.Second):
		t.Fatal("ctseg serve did not print its URL")
	}
	return s
}

// recordingProxy is the browser's proxy for every request, loopback included
// (--proxy-bypass-list=<-loopback>), so it sees the worker's traffic too. It forwards what is
// addressed to the app's server and refuses everything else; it records both.
type recordingProxy struct {
	addr  string
	mu    sync.Mutex
	app   []string // "METHOD /path" forwarded to the app's server
	other []string // "METHOD host/path" refused: it was leaving the machine
}

func (p *recordingProxy) seen() (app, other []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.app...), append([]string(nil), p.other...)
}

func startRecordingProxy(t *testing.T, appURL string) *recordingProxy {
	t.Helper()
	target, err := url.Parse(appURL)
	require.NoError(t, err)
	forward := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &recordingProxy{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect && r.URL.Host == target.Host {
			p.mu.Lock()
			p.app = append(p.app, r.Method+" "+r.URL.RequestURI())
			p.mu.Unlock()
			forward.ServeHTTP(w, r)
			return
		}
		p.mu.Lock()
		p.other = append(p.other, r.Method+" "+r.Host+r.URL.RequestURI())
		p.mu.Unlock()
		http.Error(w, "blocked by the ctseg test: nothing may leave the machine", http.StatusForbidden)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

type request struct{ method, url string }

type requestLog struct {
	mu   sync.Mutex
	reqs []request
}

func (l *requestLog) all() []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]request(nil), l.reqs...)
}

type consoleLog struct {
	mu sync.Mutex
	l  []string
}

func (c *consoleLog) add(s string) {
	c.mu.Lock()
	c.l = append(c.l, s)
	c.mu.Unlock()
}

func (c *consoleLog) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.l...)
}

func startBrowser(t *testing.T, chromium, proxy string) (context.Context, *requestLog, *consoleLog) {
	return startBrowserWith(t, chromium, proxy, true)
}

// startBrowserWith starts Chromium with WebGPU on its software adapter, or as it comes on
// Linux (webgpu false): navigator.gpu exists but gives no adapter, as for most Linux users.
func startBrowserWith(t *testing.T, chromium, proxy string, webgpu bool) (context.Context, *requestLog, *consoleLog) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1600, 1000),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("enable-unsafe-webgpu", webgpu),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("proxy-server", "http://"+proxy),
		chromedp.Flag("proxy-bypass-list", "<-loopback>"),
		// Chromium's own services (updates, network time, autofill and optimisation hints,
		// sign-in) would otherwise reach the proxy and hide what the page does.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,AutofillServerCommunication,"+
			"OptimizationHints,OptimizationHintsFetching,OptimizationGuideModelDownloading,NetworkTimeServiceQuerying,"+
			"MediaRouter,DialMediaRouteProvider,CertificateTransparencyComponentUpdater"),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	reqs := &requestLog{}
	logs := &consoleLog{}
	require.NoError(t, chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			reqs.mu.Lock()
			reqs.reqs = append(reqs.reqs, request{e.Request.Method, e.Request.URL})
			reqs.mu.Unlock()
		case *runtime.EventConsoleAPICalled:
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, strings.Trim(string(a.Value), `"`))
			}
			logs.add(string(e.Type) + ": " + strings.Join(parts, " "))
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			desc := d.Text
			if d.Exception != nil {
				desc += " " + d.Exception.Description
			}
			logs.add(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, desc))
		}
	}), "starting %s", chromium)
	_, err := chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err, "starting %s", chromium)
	_, err = chromedp.Call(ctx, runtime.Enable, cdp.Empty{})
	require.NoError(t, err)
	return ctx, reqs, logs
}

func pageState(ctx context.Context) (state, msg string) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	state, _ = chromedp.Run(c, chromedp.Evaluate[string](`document.body.dataset.state`))
	msg, _ = chromedp.Run(c, chromedp.Evaluate[string](`document.getElementById('message').textContent`))
	return
}

func waitFile(t *testing.T, p string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
			if _, err := os.Stat(p + ".crdownload"); os.IsNotExist(err) {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("download %s did not arrive", p)
	return ""
}

// referenceLabels runs `ctseg segment` with the browser run's settings.
func referenceLabels(t *testing.T, bin, ct, weightsFile string) ([]uint8, *volume.Header) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ref.nii.gz")
	cmd := exec.Command(bin, "segment", "--input", ct, "--weights", weightsFile, "--output", out,
		"--spacing", "3", "--device", "gpu", "--precision", "f32", "--roi", fmt.Sprint(e2eROI))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ctseg segment: %v\n%s", err, b)
	}
	l, h, err := volume.ReadLabels(out)
	require.NoError(t, err)
	return l, h
}

// browserServiceHosts are the hosts Chromium's own background services contact from a fresh
// profile even on about:blank (component updates, Google sign-in, network time, autofill and
// optimisation hints; the flags in startBrowser silence most of them). A page's request to
// one of them would still show in the DevTools log, which must hold loopback URLs only.
var browserServiceHosts = []string{"update.googleapis.com", "accounts.google.com", "clients2.google.com",
	"content-autofill.googleapis.com", "optimizationguide-pa.googleapis.com", "redirector.gvt1.com"}

// browserService reports whether a proxy log line ("METHOD host[:port]/path") names one of
// browserServiceHosts.
func browserService(line string) bool {
	_, rest, _ := strings.Cut(line, " ")
	host := rest
	if i := strings.IndexAny(host, ":/"); i >= 0 {
		host = host[:i]
	}
	return contains(browserServiceHosts, host)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}
