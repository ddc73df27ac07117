package model

import (
	"fmt"
	"io"
	"maps"
	"math/rand"
	"slices"
	"sort"
	"strings"

	"ctseg/gpu"
	"ctseg/shaders"
)

// TuneCandidates are the tiles Tune tries by default: the GPU and CPU defaults, contiguous
// rows, smaller workgroups for the small deep layers, and register prefetching.
const TuneCandidates = "2x8x4,4x8x4c,8x8x4c,4x16x4c,8x8x2c,4x8x8c,8x4x4c,2x8x4/tn16,4x8x4c/tn16,2x8x4/ty2,8x8x4c/ty4,2x8x4p,4x8x4cp,8x8x4cp"

// TuneCandidatesQuick is a shorter list for the browser, where every candidate is timed by
// whole windows and compiling its pipelines takes longer.
const TuneCandidatesQuick = "2x8x4,4x8x4c,8x8x4c,8x8x2c,4x8x4c/tn16,2x8x4p"

// TuneMargin: a tuned choice is kept only when a whole window with it takes less than this
// fraction of the defaults' time; smaller gains are within a shared machine's noise.
const TuneMargin = 0.97

// WidthChoice is the tile Tune chose for the layers of one width.
type WidthChoice struct {
	Width          int
	Tile           string
	Seconds        float64 // the width's tiled layers, one window, with Tile
	DefaultSeconds float64 // the same with the default tile
	Default        string  // the default tile
}

// TuneResult is what Tune found.
type TuneResult struct {
	// Tiles is the text form for ParseConvTiles ("96=8x8x4c+12=2x8x4/tn16"); empty when the
	// defaults were as fast.
	Tiles          string
	Widths         []WidthChoice
	DefaultSeconds float64 // one window with the defaults, median
	TunedSeconds   float64 // one window with Tiles, median (= DefaultSeconds when Tiles is empty)
	Method         string  // "gpu timestamps per layer" or "whole window"
}

// Tune measures the tiled 3x3x3 convolutions of a window with each candidate tile and picks
// the fastest tile for each layer width (with timestamps; without them, the fastest tile for
// the whole window). The choice is kept only if a whole window with it beats the defaults by
// more than the noise (TuneMargin).
// Tiles only change speed: every tile sums in the same order (TestTilesAgree: bit-identical on
// lavapipe; a driver may at most contract a multiply-add differently per shader).
func Tune(ctx *gpu.Context, net *Net, roi [3]int, f16 bool, candidates []shaders.ConvTile, repeat int, log io.Writer) (*TuneResult, error) {
	if repeat < 1 {
		return nil, fmt.Errorf("tune: repeat must be at least 1")
	}
	rng := rand.New(rand.NewSource(4))
	in := make([]float32, roi[0]*roi[1]*roi[2])
	for i := range in {
		in[i] = float32(rng.NormFloat64())
	}
	res := &TuneResult{Method: "whole window"}
	useTS := ctx.Timestamps
	if useTS {
		res.Method = "gpu timestamps per layer"
	}
	build := func(tiles map[int]shaders.ConvTile) (*GPUNet, error) {
		g, err := NewGPUNet(ctx, net, roi[0], roi[1], roi[2], GPUOptions{F16: f16, ConvTiles: tiles})
		if err == nil {
			if err = ctx.Write(g.Input, 0, gpu.Float32Bytes(in)); err == nil {
				err = g.RunWindow() // compiles, warms up
			}
			if err != nil {
				g.Release()
			}
		}
		return g, err
	}
	window := func(g *GPUNet) (float64, error) {
		secs, err := g.TimeWindows(repeat)
		return Median(secs), err
	}
	// perWidth is a tiling's time per layer width (timestamps) or its window time under 0.
	perWidth := func(g *GPUNet) (map[int]float64, error) {
		if !useTS {
			s, err := window(g)
			return map[int]float64{0: s}, err
		}
		byLayer := map[string][]float64{}
		for range repeat {
			ls, err := g.ProfileLayers("conv3x3")
			if err != nil {
				return nil, err
			}
			for _, l := range ls {
				byLayer[l.Kind] = append(byLayer[l.Kind], l.Seconds)
			}
		}
		out := map[int]float64{}
		for label, secs := range byLayer {
			if w, ok := g.convWidth[label]; ok {
				out[w] += Median(secs)
			}
		}
		return out, nil
	}

	def, err := build(nil)
	if err != nil {
		return nil, err
	}
	defWidths, err := perWidth(def)
	if err != nil && useTS {
		// a driver whose timestamps misbehave is tuned by whole windows
		useTS, res.Method = false, fmt.Sprintf("whole window (timestamps failed: %v)", err)
		defWidths, err = perWidth(def)
	}
	if err != nil {
		def.Release()
		return nil, err
	}
	def.Release()
	best := map[int]WidthChoice{}
	bestTile := map[int]shaders.ConvTile{}
	for w, s := range defWidths {
		best[w] = WidthChoice{Width: w, Tile: "default", Seconds: s, DefaultSeconds: s, Default: DefaultConvTile(ctx.Limits, w).String()}
	}
	for _, c := range candidates {
		g, err := build(map[int]shaders.ConvTile{0: c})
		if err != nil {
			// a tile this device cannot run (workgroup memory, invocations) is no candidate
			if log != nil {
				fmt.Fprintf(log, "tile %-14s skipped: %v\n", c, err)
			}
			continue
		}
		ws, err := perWidth(g)
		g.Release()
		if err != nil {
			return nil, fmt.Errorf("tile %s: %w", c, err)
		}
		if log != nil {
			fmt.Fprintf(log, "tile %-14s", c)
		}
		for w, s := range ws {
			if b := best[w]; s < b.Seconds {
				b.Tile, b.Seconds = c.String(), s
				best[w], bestTile[w] = b, c
			}
		}
		if log != nil {
			fmt.Fprintf(log, " %s\n", describeWidths(ws))
		}
	}
	tiles := map[int]shaders.ConvTile{}
	for _, w := range slices.Sorted(maps.Keys(best)) {
		b := best[w]
		res.Widths = append(res.Widths, b)
		if b.Tile != "default" {
			tiles[w] = bestTile[w]
		}
	}
	sort.Slice(res.Widths, func(i, j int) bool { return res.Widths[i].Width > res.Widths[j].Width })
	plan := FormatConvTiles(tiles)

	// the whole choice against the defaults, alternating to share the machine's noise
	def, err = build(nil)
	if err != nil {
		return nil, err
	}
	defer def.Release()
	if plan == "" {
		res.DefaultSeconds, err = window(def)
		res.TunedSeconds = res.DefaultSeconds
		return res, err
	}
	tuned, err := build(tiles)
	if err != nil {
		return nil, err
	}
	defer tuned.Release()
	var ds, ts []float64
	for range 3 {
		d, err := window(def)
		if err != nil {
			return nil, err
		}
		t, err := window(tuned)
		if err != nil {
			return nil, err
		}
		ds, ts = append(ds, d), append(ts, t)
	}
	res.DefaultSeconds, res.TunedSeconds = Median(ds), Median(ts)
	if res.TunedSeconds < TuneMargin*res.DefaultSeconds {
		res.Tiles = plan
	} else {
		res.TunedSeconds = res.DefaultSeconds
	}
	return res, nil
}

func describeWidths(ws map[int]float64) string {
	var b strings.Builder
	for _, w := range slices.Sorted(maps.Keys(ws)) {
		if w == 0 {
			fmt.Fprintf(&b, " window %.4f s", ws[w])
		} else {
			fmt.Fprintf(&b, " w%d %.4f s", w, ws[w])
		}
	}
	return b.String()
}

// Median of v (the mean of the middle two for an even count), for timings on noisy machines.
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
