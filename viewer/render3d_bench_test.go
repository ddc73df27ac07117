//go:build !js

package viewer_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkRender3D times the page's 3-D view (static/render3d.js) in headless Chromium on a
// synthetic 512x512x400 label map of 104 ellipsoids (testdata/render3d_bench.html): reducing
// the map, one full 800x600 frame, one drag frame (a third of the resolution each way). The
// view runs on the CPU, so this is the machine's JavaScript speed, not its GPU's.
//
//	go test -run XXX -bench Render3D -benchtime 1x ./viewer/
func BenchmarkRender3D(b *testing.B) {
	chromium := findChromium(b)
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir("static")))
	mux.HandleFunc("/bench.html", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join("testdata", "render3d_bench.html"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	dir, err := os.MkdirTemp("", "ctseg-bench3d")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.UserDataDir(dir),
		chromedp.WindowSize(800, 600), chromedp.Flag("no-sandbox", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	type result struct{ Reduce, Full, Drag, W, H float64 }
	for b.Loop() {
		c, cancelT := context.WithTimeout(ctx, 5*time.Minute)
		err := chromedp.Do(c, chromedp.Navigate(srv.URL+"/bench.html"),
			chromedp.Poll[chromedp.Void](`window.RESULT !== undefined`, chromedp.WithPollingTimeout(4*time.Minute)))
		if err != nil {
			cancelT()
			b.Fatal(err)
		}
		r, err := chromedp.Run(c, chromedp.Evaluate[result](`window.RESULT`))
		cancelT()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(r.Reduce, "ms/reduce")
		b.ReportMetric(r.Full, "ms/full-frame")
		b.ReportMetric(r.Drag, "ms/drag-frame")
		b.Logf("canvas %.0fx%.0f", r.W, r.H)
	}
}
