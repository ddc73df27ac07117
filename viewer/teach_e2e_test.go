//go:build !js

package viewer_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// The Teach view's end-to-end test, in headless Chromium with WebGPU (SwiftShader) against
// `ctseg serve`: a lesson link opens the view on the sample CT at a voxel and a block; the
// network diagram lists the blocks; the preprocessing and sliding-window storyboards draw;
// the lesson link the page makes restores the same state in a fresh tab. Screenshots go to the
// artifacts folder.
func TestTeachView(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser end-to-end test takes minutes; run without -short")
	}
	root := repoRoot(t)
	chromium := findChromium(t)
	artifacts := artifactsDir(t)
	bin := buildApp(t, root)
	srv := startServer(t, bin, t.TempDir())
	proxy := startRecordingProxy(t, srv.url)
	ctx, _, logs := startBrowserWith(t, chromium, proxy.addr, true)
	p := newPageDriver(t, ctx, logs)

	lesson := "#teach=network&ct=sample&v=60,40,50&block=down_layers.2&scale=block&mode=margin&thr=0.6&size=24&hu=1000&wl=1500,-600"
	p.do("opening a lesson link", time.Minute, chromedp.Navigate(srv.url+lesson))
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
	require.Contains(t, p.text(".teach-window"), "windows of 96×96×96 voxels")
	p.do("stepping through the windows", time.Minute, chromedp.Click(chromedp.CSS("#windowPlay")))
	time.Sleep(1500 * time.Millisecond)
	p.screenshot(filepath.Join(artifacts, "teach-window.png"))

	// The page's own lesson link, opened afresh (the page left first), restores the tab, voxel, block, scale
	// and thresholds.
	p.do("copying the lesson link", time.Minute, chromedp.Click(chromedp.CSS("#lessonLink")))
	link := p.eval(`location.href`)
	require.Contains(t, link, "teach=window")
	for _, part := range []string{"v=60%2C40%2C50", "block=down_layers.2", "scale=block", "mode=margin", "thr=0.6", "size=24", "hu=1000", "ct=sample", "wl=1500%2C-600"} {
		require.Contains(t, link, part)
	}
	q := p
	q.do("leaving the page", time.Minute, chromedp.Navigate("about:blank"))
	q.do("opening the copied link", time.Minute, chromedp.Navigate(link))
	q.waitTeach("the restored lesson", "window")
	require.Equal(t, "60,40,50", q.eval(`window.ctsegTest.cursor().join(',')`))
	require.Equal(t, `{"tab":"window","block":"down_layers.2","scale":"block","mode":"margin","thr":0.6,"size":24,"hu":1000}`, q.eval(`JSON.stringify(window.ctsegTest.teachState())`))
	require.Equal(t, "1500,-600", q.eval(`[document.getElementById('winW').value, document.getElementById('winL').value].join(',')`))
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
