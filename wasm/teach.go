//go:build js

package main

import (
	"errors"
	"fmt"
	"math"
	"syscall/js"

	"ctseg/model"
	"ctseg/volume"
	"ctseg/weights"
)

// The Teach view's data: the network's blocks, the preprocessing step by step and the sliding
// window's geometry, computed by the same Go code the segmentation runs (model.Blocks,
// volume.Tell, model.PlanWindows).

// netInfo({roi}) describes the loaded network (the bundle's when no weights are loaded) block by
// block for a window of roi³ voxels.
func netInfo(args []js.Value) (any, error) {
	roi := 96
	if len(args) > 0 && args[0].Type() == js.TypeObject {
		if r := args[0].Get("roi"); r.Type() == js.TypeNumber && r.Int() > 0 {
			roi = r.Int()
		}
	}
	state.mu.Lock()
	net := state.net
	state.mu.Unlock()
	cfg := weights.BundleConfig()
	if net != nil {
		cfg = net.Cfg
	}
	bs, err := model.Blocks(cfg, [3]int{roi, roi, roi})
	if err != nil {
		return nil, err
	}
	list := make([]any, len(bs))
	for i, b := range bs {
		list[i] = map[string]any{"name": b.Name, "kind": b.Kind, "channels": b.Channels, "size": []any{b.Size[0], b.Size[1], b.Size[2]},
			"params": b.Params, "flops": b.FLOPs, "rf": b.RF}
	}
	return map[string]any{"blocks": list, "roi": roi, "filters": cfg.InitFilters, "classes": cfg.OutChannels,
		"params": cfg.ParamCount(), "bundle": net == nil}, nil
}

// story is the last preprocessing storyboard, kept for the window storyboard of the same CT.
var story struct {
	ct      *volume.Volume
	spacing float64
	s       *volume.Story
}

func tellFor(spacing float64) (*volume.Story, error) {
	state.mu.Lock()
	ct := state.ct
	state.mu.Unlock()
	if ct == nil {
		return nil, errors.New("load a CT first")
	}
	if story.ct == ct && story.spacing == spacing {
		return story.s, nil
	}
	s, err := volume.Tell(ct, spacing)
	if err != nil {
		return nil, err
	}
	story.ct, story.spacing, story.s = ct, spacing, s
	return s, nil
}

func spacingArg(args []js.Value) (float64, error) {
	sp := 1.5
	if len(args) > 0 && args[0].Type() == js.TypeObject {
		if s := args[0].Get("spacing"); s.Type() == js.TypeNumber {
			sp = s.Float()
		}
	}
	if sp != 1.5 && sp != 3 {
		return 0, fmt.Errorf("spacing %v mm: the bundle's models use 1.5 or 3", sp)
	}
	return sp, nil
}

// preprocessStory({spacing}) is the preprocessing of the loaded CT step by step: each step's
// grid and middle slice, and the histograms before and after normalisation.
func preprocessStory(args []js.Value) (any, error) {
	sp, err := spacingArg(args)
	if err != nil {
		return nil, err
	}
	s, err := tellFor(sp)
	if err != nil {
		return nil, err
	}
	steps := make([]any, len(s.Steps))
	for i, st := range s.Steps {
		steps[i] = map[string]any{"name": st.Name, "dims": []any{st.Dims[0], st.Dims[1], st.Dims[2]},
			"spacing": []any{st.Spacing[0], st.Spacing[1], st.Spacing[2]}, "codes": st.Codes, "slice": float32Array(st.Slice)}
	}
	hist := func(h volume.Histogram) any {
		c := make([]any, len(h.Counts))
		for i, x := range h.Counts {
			c[i] = x
		}
		return map[string]any{"lo": h.Lo, "hi": h.Hi, "counts": c}
	}
	n := s.NormStats
	return map[string]any{"steps": steps, "hu": hist(s.HU), "norm": hist(s.Norm), "zeros": s.Zeros,
		"stats": map[string]any{"nonzero": n.NonZero, "mean": n.Mean, "std": n.Std, "min": n.MinN, "max": n.MaxN}}, nil
}

// windowStory({spacing, roi}) is the sliding window over the preprocessed CT: the windows'
// starts, the importance map's middle plane, and on the middle slice of the preprocessed CT
// the sum of the covering windows' weights with gaussian and with constant blending (where
// the latter jumps, constant blending shows seams).
func windowStory(args []js.Value) (any, error) {
	sp, err := spacingArg(args)
	if err != nil {
		return nil, err
	}
	roi := 96
	if r := args[0].Get("roi"); r.Type() == js.TypeNumber && r.Int() > 0 {
		roi = r.Int()
	}
	s, err := tellFor(sp)
	if err != nil {
		return nil, err
	}
	last := s.Steps[len(s.Steps)-1]
	d := last.Dims
	opt := model.DefaultWindowOptions()
	opt.ROI = [3]int{roi, roi, roi}
	g, err := model.PlanWindows(d[0], d[1], d[2], opt)
	if err != nil {
		return nil, err
	}
	opt.Mode = model.Constant
	c, err := model.PlanWindows(d[0], d[1], d[2], opt)
	if err != nil {
		return nil, err
	}
	w := d[2] / 2
	gs, err := g.WeightSum(w)
	if err != nil {
		return nil, err
	}
	cs, err := c.WeightSum(w)
	if err != nil {
		return nil, err
	}
	imp := g.ImportanceMap()
	r := g.ROI
	mid := make([]float32, r[0]*r[1]) // the importance map's plane through its middle, D x H, D fastest
	for d := 0; d < r[0]; d++ {
		for h := 0; h < r[1]; h++ {
			mid[d+r[0]*h] = imp[(d*r[1]+h)*r[2]+r[2]/2]
		}
	}
	ints := func(v []int) []any {
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = x
		}
		return out
	}
	three := func(v [3]int) []any { return []any{v[0], v[1], v[2]} }
	return map[string]any{"size": three(d), "roi": three(r), "padBefore": three(g.PadBefore), "step": three(g.Step),
		"starts": []any{ints(g.Starts[0]), ints(g.Starts[1]), ints(g.Starts[2])}, "windows": g.NumWindows(), "slice": w,
		"importance": float32Array(mid), "gaussian": float32Array(gs), "constant": float32Array(cs),
		"pre": float32Array(last.Slice)}, nil
}

// float32Array copies v into a new JS Float32Array.
func float32Array(v []float32) js.Value {
	out := js.Global().Get("Float32Array").New(len(v))
	b := make([]byte, 4*len(v))
	for i, x := range v {
		u := math.Float32bits(x)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	js.CopyBytesToJS(js.Global().Get("Uint8Array").New(out.Get("buffer")), b)
	return out
}
