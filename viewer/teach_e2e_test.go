//go:build !js

package viewer_test

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"ctseg/internal/gputest"
	"ctseg/internal/shared"
	"ctseg/model"
	"ctseg/pipeline"
	"ctseg/volume"
	"ctseg/weights"
)

// The Teach view's end-to-end test, in headless Chromium with WebGPU (SwiftShader) against
// `ctseg serve`: a lesson link opens the view on the sample CT at a voxel and a block; the
// network diagram lists the blocks; the preprocessing and sliding-window storyboards draw; the
// lesson link the page makes restores the same state in a fresh tab. Then, with weights loaded
// and a CT segmented in the page (the small golden model, 3 mm, f32, 32³ test windows), the
// traced voxel's channels, the covering windows' votes and the confidence equal what the
// native engine computes on lavapipe; the occlusion experiment re-runs only the windows the
// cube can reach and changes no label outside them. Screenshots go to the artifacts folder.
func TestTeachView(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser end-to-end test takes minutes; run without -short")
	}
	root := repoRoot(t)
	chromium := findChromium(t)
	artifacts := artifactsDir(t)
	weightsFile := shared.Path(t, "golden", "segresnet_small", "model.pt")
	bin := buildApp(t, root)
	srv := startServer(t, bin, t.TempDir())
	proxy := startRecordingProxy(t, srv.url)
	ctx, _, logs := startBrowserWith(t, chromium, proxy.addr, true)
	p := newPageDriver(t, ctx, logs)

	lesson := "#teach=network&ct=sample&v=60,40,50&block=down_layers.2&scale=block&mode=margin&thr=0.6&size=24&hu=1000&wl=1500,-600"
	p.do("opening a lesson link", time.Minute, chromedp.Navigate(srv.url+fmt.Sprintf("?roi=%d", e2eROI)+lesson))
	p.waitTeach("the network tab", "network")
	require.Equal(t, "teach", p.eval(`document.body.dataset.mode`))
	require.Contains(t, p.text("#ctInfo"), "example_ct.nii.gz", "the lesson loads the sample")
	require.Equal(t, "12", p.eval(`String(document.querySelectorAll('.diagram .block').length)`))
	require.Equal(t, "down_layers.2", p.eval(`document.querySelector('.diagram .block.current').dataset.name`))
	require.Contains(t, p.text(".diagram"), "receptive field 239 voxels")
	require.Equal(t, "60,40,50", p.eval(`window.ctsegTest.cursor().join(',')`), "the lesson's voxel")
	p.screenshot(filepath.Join(artifacts, "teach-network.png"))

	p.do("the preprocessing tab", time.Minute, chromedp.Click(chromedp.CSS(`.tabs [data-tab=prep]`)))
	p.waitTeach("the preprocessing storyboard", "prep")
	require.Equal(t, "4", p.eval(`String(document.querySelectorAll('.teach-prep canvas.story').length)`))
	require.Contains(t, p.text(".teach-prep"), "resampled to 1.5 mm")
	require.Contains(t, p.text(".teach-prep"), "axes RAS")
	p.screenshot(filepath.Join(artifacts, "teach-preprocessing.png"))

	p.do("the sliding-window tab", time.Minute, chromedp.Click(chromedp.CSS(`.tabs [data-tab=window]`)))
	p.waitTeach("the sliding-window storyboard", "window")
	require.Contains(t, p.text(".teach-window"), fmt.Sprintf("windows of %d×%d×%d voxels", e2eROI, e2eROI, e2eROI))
	p.do("stepping through the windows", time.Minute, chromedp.Click(chromedp.CSS("#windowPlay")))
	time.Sleep(1500 * time.Millisecond)
	p.screenshot(filepath.Join(artifacts, "teach-window.png"))

	// The page's own lesson link, opened afresh (the page left first), restores the tab, voxel,
	// block, scale and thresholds.
	p.do("copying the lesson link", time.Minute, chromedp.Click(chromedp.CSS("#lessonLink")))
	link := p.eval(`location.href`)
	require.Contains(t, link, "teach=window")
	for _, part := range []string{"v=60%2C40%2C50", "block=down_layers.2", "scale=block", "mode=margin", "thr=0.6", "size=24", "hu=1000", "ct=sample", "wl=1500%2C-600"} {
		require.Contains(t, link, part)
	}
	p.do("leaving the page", time.Minute, chromedp.Navigate("about:blank"))
	p.do("opening the copied link", time.Minute, chromedp.Navigate(link))
	p.waitTeach("the restored lesson", "window")
	require.Equal(t, "60,40,50", p.eval(`window.ctsegTest.cursor().join(',')`))
	require.Equal(t, `{"tab":"window","block":"down_layers.2","scale":"block","mode":"margin","thr":0.6,"size":24,"hu":1000}`, p.eval(`JSON.stringify(window.ctsegTest.teachState())`))
	require.Equal(t, "1500,-600", p.eval(`[document.getElementById('winW').value, document.getElementById('winL').value].join(',')`))
	// A CT segmented in the page (the small CT, 3 mm, f32 storage: 20 windows of 32³), with the
	// weights from disk.
	smallCT := shared.Path(t, "data", "ct", "example_ct_sm.nii.gz")
	p.do("choosing the CT", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#ctFile"), []string{smallCT}))
	p.waitState("reading the CT", time.Minute, "ready")
	require.Contains(t, p.text("#ctInfo"), "122 × 101 × 30")
	p.do("choosing the weights", time.Minute, chromedp.SetUploadFiles(chromedp.CSS("#weightsFile"), []string{weightsFile}))
	p.run("reading the weights", time.Minute, chromedp.Poll[chromedp.Void](`/model\.pt: SegResNet/.test(document.getElementById('weightsInfo').textContent)`, chromedp.WithPollingTimeout(time.Minute)))
	p.settings("3", "f32")
	p.do("segmenting", time.Minute, chromedp.Click(chromedp.CSS("#runBtn")))
	p.waitState("segmenting", 10*time.Minute, "done", "error")
	if state, msg := pageState(ctx); state != "done" {
		t.Fatalf("segmenting: page state %q, message %q", state, msg)
	}

	// The same on the native engine (lavapipe).
	ct, _, err := volume.ReadNIfTI(smallCT)
	require.NoError(t, err)
	sd, err := weights.Load(weightsFile)
	require.NoError(t, err)
	net, err := model.NewNet(sd)
	require.NoError(t, err)
	win := model.DefaultWindowOptions()
	win.ROI = [3]int{e2eROI, e2eROI, e2eROI}
	opt := pipeline.Options{Spacing: 3, GPU: gputest.Context(t), Window: win, Confidence: true, KeepPreLabels: true}
	prep, err := pipeline.Prepare(ct, opt)
	require.NoError(t, err)
	native, err := prep.Run(net, opt)
	require.NoError(t, err)

	// Where it hesitates: the page's p1 is the native one (within one step of 1/255 where an
	// f32 rounding lands on the other side of a step), the overlay is on, the least certain
	// structures are listed.
	labels := p.bytes(`window.ctsegTest.result().labels`)
	p1 := p.bytes(`window.ctsegTest.result().p1`)
	require.Len(t, p1, len(native.P1))
	sameLabel, p1Off := 0, 0
	for i := range p1 {
		if labels[i] == native.Labels[i] {
			sameLabel++
		}
		if d := int(p1[i]) - int(native.P1[i]); d > 1 || d < -1 {
			p1Off++
		}
	}
	t.Logf("page vs native: %d of %d labels equal, %d p1 values more than 1/255 apart", sameLabel, len(p1), p1Off)
	require.GreaterOrEqual(t, float64(sameLabel), 0.999*float64(len(p1)))
	require.LessOrEqual(t, float64(p1Off), 0.001*float64(len(p1)))
	p.do("the hesitation tab", time.Minute, chromedp.Click(chromedp.CSS(`.tabs [data-tab=doubt]`)))
	p.waitTeach("where it hesitates", "doubt")
	require.Equal(t, "true", p.eval(`String(window.ctsegTest.confidenceShown())`))
	require.NotEqual(t, "0", p.eval(`String(document.querySelectorAll('#doubtList .bar').length)`))
	time.Sleep(300 * time.Millisecond)
	p.screenshot(filepath.Join(artifacts, "teach-hesitation.png"))

	// Trace a voxel: every block's channels equal the native probe's.
	ijk := [3]int{60, 40, 15}
	p.do("clicking a voxel", time.Minute, chromedp.Evaluate[chromedp.Void](`window.ctsegTest.jump([60, 40, 15])`))
	p.do("the trace tab", time.Minute, chromedp.Click(chromedp.CSS(`.tabs [data-tab=trace]`)))
	p.waitTeach("tracing a voxel", "trace")
	var page struct {
		Window struct{ Start, Size, Local [3]int }
		Blocks []struct {
			Name        string
			Channels, D int
			H           int
			Data        string
		}
	}
	require.NoError(t, json.Unmarshal([]byte(p.eval(`(() => {
		const r = window.ctsegTest.teachCache().probe;
		return JSON.stringify({window: r.window, blocks: r.blocks.map((b) => ({name: b.name, channels: b.channels, d: b.d, h: b.h, data: window.ctsegTest.base64(b.data)}))});
	})()`)), &page))
	want, err := prep.Probe(net, opt, ijk)
	require.NoError(t, err)
	require.Equal(t, want.Start, page.Window.Start)
	require.Equal(t, want.Local, page.Window.Local)
	require.Len(t, page.Blocks, len(want.Blocks))
	for i, b := range want.Blocks {
		got := page.Blocks[i]
		require.Equal(t, b.Name, got.Name)
		require.Equal(t, [3]int{b.C, b.D, b.H}, [3]int{got.Channels, got.D, got.H}, b.Name)
		vals := float32s(t, got.Data)
		require.Len(t, vals, len(b.Data))
		scale, worst := 0.0, 0.0
		for c := range b.C {
			for d := range b.D {
				for h := range b.H {
					w := float64(b.Data[(c*b.D+d)*b.H+h])
					scale = max(scale, math.Abs(w))
					worst = max(worst, math.Abs(float64(vals[(c*b.H+h)*b.D+d])-w))
				}
			}
		}
		t.Logf("trace %s: %d channels of %dx%d, largest difference %.2g of a largest value %.3g", b.Name, b.C, b.D, b.H, worst, scale)
		// both f32: only the order of the sums differs between SwiftShader and lavapipe
		require.LessOrEqual(t, worst, 1e-4*max(scale, 1), b.Name)
	}
	p.do("choosing a block", time.Minute, chromedp.SetValue(chromedp.CSS("#traceBlock"), "up_layers.2"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('traceBlock').dispatchEvent(new Event('change'))`))
	p.screenshot(filepath.Join(artifacts, "teach-trace.png"))

	// Why this label: the covering windows' votes and their blend are the native ones; the top
	// bar is the label the segmentation gave the voxel.
	p.do("the why tab", time.Minute, chromedp.Click(chromedp.CSS(`.tabs [data-tab=why]`)))
	p.waitTeach("why this label", "why")
	wantVotes, wantBlend, err := prep.Votes(net, opt, ijk)
	require.NoError(t, err)
	var pv struct {
		Weights []float64
		Blended string
	}
	require.NoError(t, json.Unmarshal([]byte(p.eval(`(() => {
		const r = window.ctsegTest.teachCache().votes;
		return JSON.stringify({weights: r.votes.map((v) => v.weight), blended: window.ctsegTest.base64(r.blended)});
	})()`)), &pv))
	require.Len(t, pv.Weights, len(wantVotes))
	for i, v := range wantVotes {
		require.InDelta(t, v.Weight, pv.Weights[i], 1e-6)
	}
	blended := float32s(t, pv.Blended)
	require.Len(t, blended, len(wantBlend))
	for k := range wantBlend {
		require.InDelta(t, wantBlend[k], blended[k], 1e-4*max(1, math.Abs(wantBlend[k])))
	}
	at := ijk[0] + ct.Dims[0]*(ijk[1]+ct.Dims[1]*ijk[2])
	require.Equal(t, fmt.Sprint(native.Labels[at]), p.eval(`document.querySelector('#whyBars .bar').dataset.label`))
	require.Equal(t, fmt.Sprint(len(wantVotes)+1), p.eval(`String(document.querySelectorAll('#whyVotes tr').length)`))
	p.screenshot(filepath.Join(artifacts, "teach-why.png"))

	// The experiment: a 24 mm cube of bone (the lesson's) at the voxel. Only the windows it
	// can reach run again, as natively; no label changes outside the touched windows' union.
	p.do("the experiment tab", time.Minute, chromedp.Click(chromedp.CSS(`.tabs [data-tab=experiment]`)))
	p.waitTeach("the experiment", "experiment")
	p.do("occluding", time.Minute, chromedp.Evaluate[chromedp.Void](`document.getElementById('teach').dataset.experiment = ''`),
		chromedp.Click(chromedp.CSS("#occludeBtn")))
	p.run("re-running the touched windows", 5*time.Minute, chromedp.Poll[chromedp.Void](`document.getElementById('teach').dataset.experiment === 'done'`, chromedp.WithPollingTimeout(5*time.Minute)))
	require.Empty(t, p.eval(`(document.querySelector('#experimentOut .teach-error') || {}).textContent || ''`))
	wantOcc, err := prep.Occlude(net, opt, native, ijk, 24, 1000)
	require.NoError(t, err)
	var occ struct {
		Windows, Touched, Rerun, Changed int
		Lo, Hi                           [3]int
	}
	require.NoError(t, json.Unmarshal([]byte(p.eval(`JSON.stringify(window.ctsegTest.teachCache().experiment, (k, v) => k === 'labels' ? undefined : v)`)), &occ))
	require.Equal(t, [3]int{wantOcc.Windows, wantOcc.Touched, wantOcc.Rerun}, [3]int{occ.Windows, occ.Touched, occ.Rerun})
	require.Equal(t, [2][3]int{wantOcc.Lo, wantOcc.Hi}, [2][3]int{occ.Lo, occ.Hi})
	require.Less(t, occ.Rerun, occ.Windows)
	after := p.bytes(`window.ctsegTest.teachCache().experiment.labels`)
	changed := 0
	for i := range after {
		if after[i] == labels[i] {
			continue
		}
		changed++
		v, err := prep.Voxel([3]int{i % ct.Dims[0], i / ct.Dims[0] % ct.Dims[1], i / (ct.Dims[0] * ct.Dims[1])})
		require.NoError(t, err)
		for a := range 3 {
			if v[a] < occ.Lo[a] || v[a] >= occ.Hi[a] {
				t.Fatalf("input voxel %d (network voxel %v) changed outside the touched windows %v..%v", i, v, occ.Lo, occ.Hi)
			}
		}
	}
	t.Logf("experiment: %d of %d windows touched, %d re-run; %d voxels changed in the page, %d natively", occ.Touched, occ.Windows, occ.Rerun, changed, wantOcc.Changed)
	require.Equal(t, occ.Changed, changed)
	require.Greater(t, changed, 0, "a cube of bone changes some labels")
	p.do("showing the changed voxels", time.Minute, chromedp.Click(chromedp.CSS("#showChanged")))
	time.Sleep(300 * time.Millisecond)
	p.screenshot(filepath.Join(artifacts, "teach-experiment.png"))

}

// waitTeach waits until the Teach view has drawn the tab.
func (p *pageDriver) waitTeach(what, tab string) {
	p.t.Helper()
	cond := fmt.Sprintf(`document.getElementById('teach').dataset.ready === %q`, tab)
	p.run(what, 3*time.Minute, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(3*time.Minute)))
	if e := p.eval(`(document.querySelector('#teach .teach-error') || {}).textContent || ''`); e != "" {
		p.t.Fatalf("%s: the Teach view says %q", what, e)
	}
}

// bytes reads a typed array of the page (a JS expression) as its bytes.
func (p *pageDriver) bytes(expr string) []byte {
	p.t.Helper()
	b, err := base64.StdEncoding.DecodeString(p.eval(fmt.Sprintf(`window.ctsegTest.base64(%s)`, expr)))
	require.NoError(p.t, err)
	return b
}

// float32s decodes the base64 of a Float32Array.
func float32s(t *testing.T, s string) []float32 {
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}
