//go:build js

package main

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"syscall/js"

	"ctseg/gpu"
	"ctseg/model"
	"ctseg/pipeline"
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

// The Teach view's runs on the page's device: probe, votes, occlude. Each takes the run's
// options as segment does ({spacing, precision, roi, limits, adapter, software, takeError})
// and the input voxel {voxel: [i, j, k]}.

// teachRun claims the worker, builds the options and the prepared CT, and runs f with panics
// (a lost device) and GPU errors turned into what the page shows.
func teachRun(args []js.Value, f func(p *pipeline.Prepared, net *model.Net, opt pipeline.Options, ijk [3]int) (any, error)) (v any, err error) {
	jsDev, o := args[0], args[1]
	done, ct, net, err := claimLoaded()
	if err != nil {
		return nil, err
	}
	defer done()
	vx := o.Get("voxel")
	if vx.Type() != js.TypeObject || vx.Length() != 3 {
		return nil, errors.New("click a voxel first")
	}
	ijk := [3]int{vx.Index(0).Int(), vx.Index(1).Int(), vx.Index(2).Int()}
	opt, err := parseRunOptions(o)
	if err != nil {
		return nil, err
	}
	takeErr := teachGPU.use(jsDev, o, &opt)
	v, err = func() (v any, err error) {
		defer recovered(&err)
		if err := teachGPU.network(net, o, &opt); err != nil {
			return nil, err
		}
		p, err := prepared(ct, opt)
		if err != nil {
			return nil, err
		}
		return f(p, net, opt, ijk)
	}()
	if err != nil {
		// the worker drops the device after a failed run; so does Go its network on it
		teachGPU.release()
		return nil, gpuError(err, takeErr(), opt.Spacing)
	}
	return v, nil
}

// teachGPU is the device the Teach view's runs share (worker.js keeps it between them, and
// destroys it before a segmentation or a tuning, calling releaseTeach) and the network built on
// it: a probe after the first costs the network's run, not its setup (pipelines compiled,
// weights uploaded).
var teachGPU teachDevice

type teachDevice struct {
	dev     js.Value
	ctx     *gpu.Context
	takeErr func() error
	g       *model.GPUNet
	net     *model.Net
	key     string
}

// use sets opt.GPU to the context of jsDev, kept from the last run on the same device.
func (t *teachDevice) use(jsDev, o js.Value, opt *pipeline.Options) func() error {
	if t.ctx == nil || !t.dev.Equal(jsDev) {
		t.release()
		t.dev = jsDev
		t.ctx, t.takeErr = newContext(jsDev, o)
	}
	opt.GPU = t.ctx
	return t.takeErr
}

// network sets opt.Net to the network for net and opt's settings, kept when they are the last
// run's.
func (t *teachDevice) network(net *model.Net, o js.Value, opt *pipeline.Options) error {
	key := fmt.Sprintf("%p|%v|%v|%s", net, opt.F16, opt.Window, o.Get("tiles").String())
	if t.g == nil || t.key != key {
		if t.g != nil {
			t.g.Release()
			t.g = nil
		}
		g, err := pipeline.NewGPUNet(net, *opt)
		if err != nil {
			return err
		}
		t.g, t.net, t.key = g, net, key
	}
	opt.Net = t.g
	return nil
}

// release forgets the device and frees the network's buffers.
func (t *teachDevice) release() {
	if t.g != nil {
		func() {
			defer func() { _ = recover() }() // a destroyed device's buffers may refuse
			t.g.Release()
		}()
	}
	*t = teachDevice{}
}

// releaseTeach() is what the worker calls when it destroys the Teach view's device.
func releaseTeach(args []js.Value) (any, error) {
	done, err := claim()
	if err != nil {
		return nil, err
	}
	defer done()
	teachGPU.release()
	return nil, nil
}

// probe(device, options) runs the window that weighs most at the voxel and returns every
// block's channels on the axial plane through it: {window: {start, size, local, roi}, plane,
// blocks: [{name, channels, d, h, data: Float32Array [C][H][D], D fastest}]}.
func probe(args []js.Value) (any, error) {
	return teachRun(args, func(p *pipeline.Prepared, net *model.Net, opt pipeline.Options, ijk [3]int) (any, error) {
		r, err := p.Probe(net, opt, ijk)
		if err != nil {
			return nil, err
		}
		blocks := make([]any, len(r.Blocks))
		for i, b := range r.Blocks {
			// the probe's [C][D][H] plane as the page draws planes: first axis fastest
			t := make([]float32, len(b.Data))
			for c := range b.C {
				for d := range b.D {
					for h := range b.H {
						t[(c*b.H+h)*b.D+d] = b.Data[(c*b.D+d)*b.H+h]
					}
				}
			}
			blocks[i] = map[string]any{"name": b.Name, "channels": b.C, "d": b.D, "h": b.H, "plane": b.Plane, "data": float32Array(t)}
		}
		three := func(v [3]int) []any { return []any{v[0], v[1], v[2]} }
		return map[string]any{
			"window": map[string]any{"start": three(r.Start), "size": three(r.Size), "local": three(r.Local), "roi": three(r.ROI)},
			"voxel":  three(r.Voxel), "plane": r.Local[2], "blocks": blocks,
		}, nil
	})
}

// votes(device, options) runs every window covering the voxel: {votes: [{start, weight,
// logits: Float32Array}], blended: Float32Array (the weighted mean of the logits)}.
func votes(args []js.Value) (any, error) {
	return teachRun(args, func(p *pipeline.Prepared, net *model.Net, opt pipeline.Options, ijk [3]int) (any, error) {
		vs, blended, err := p.Votes(net, opt, ijk)
		if err != nil {
			return nil, err
		}
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = map[string]any{"start": []any{v.Start[0], v.Start[1], v.Start[2]}, "weight": v.Weight, "logits": float32Array(v.Logits)}
		}
		b := make([]float32, len(blended))
		for i, x := range blended {
			b[i] = float32(x)
		}
		return map[string]any{"votes": list, "blended": float32Array(b)}, nil
	})
}

// occlude(device, options + {sizeMM, hu}) puts a cube of hu HU, sizeMM wide, around the voxel
// into the network's input, re-runs the windows it can reach and compares with the last
// segmentation: {windows, touched, rerun, changed, lo, hi (the touched windows' union on the
// network's grid: nothing changed outside it), changes: [{label, before, after}] (the
// structures whose voxel count changed, most changed first), labels: Uint8Array (the new label
// map)}. The segmentation itself stays the one shown.
func occlude(args []js.Value) (any, error) {
	o := args[1]
	size, hu := o.Get("sizeMM"), o.Get("hu")
	if size.Type() != js.TypeNumber || hu.Type() != js.TypeNumber {
		return nil, errors.New("occlude: the cube's size and HU are numbers")
	}
	return teachRun(args, func(p *pipeline.Prepared, net *model.Net, opt pipeline.Options, ijk [3]int) (any, error) {
		state.mu.Lock()
		prev := state.result
		state.mu.Unlock()
		e, err := p.Occlude(net, opt, prev, ijk, size.Float(), float32(hu.Float()))
		if err != nil {
			return nil, err
		}
		type change struct{ label, before, after int }
		var cs []change
		for l := range e.Before {
			if e.Before[l] != e.After[l] {
				cs = append(cs, change{l, e.Before[l], e.After[l]})
			}
		}
		slices.SortStableFunc(cs, func(a, b change) int {
			return cmp.Compare(abs(b.after-b.before), abs(a.after-a.before))
		})
		list := make([]any, len(cs))
		for i, c := range cs {
			list[i] = map[string]any{"label": c.label, "before": c.before, "after": c.after}
		}
		three := func(v [3]int) []any { return []any{v[0], v[1], v[2]} }
		return map[string]any{"windows": e.Windows, "touched": e.Touched, "rerun": e.Rerun, "changed": e.Changed,
			"lo": three(e.Lo), "hi": three(e.Hi), "changes": list, "labels": uint8Array(e.Labels)}, nil
	})
}

func abs(x int) int { return max(x, -x) }
