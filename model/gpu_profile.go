package model

import (
	"fmt"
	"sort"
	"time"

	"ctseg/gpu"
)

// KindTiming is the time and work of one layer kind over a window.
type KindTiming struct {
	Kind    string
	Seconds float64
	FLOPs   float64
	Count   int // dispatches
}

// GFLOPS is the achieved rate.
func (k KindTiming) GFLOPS() float64 {
	if k.Seconds <= 0 {
		return 0
	}
	return k.FLOPs / k.Seconds / 1e9
}

// Profile says where a window's time goes, per layer kind, and how it was measured: "gpu
// timestamps" where the device has them (one normal batched run, every dispatch timed on the
// GPU), else "wall clock": one submission per layer with a wait after each, which adds a
// little per layer, so small layers look slower than they are in a batched run.
func (g *GPUNet) Profile() ([]KindTiming, string, error) {
	method := "wall clock"
	if g.ctx.Timestamps {
		ks, err := g.profileTimestamps()
		if err == nil {
			return ks, "gpu timestamps", nil
		}
		// a driver whose timestamps misbehave still gets a profile
		method = fmt.Sprintf("wall clock (timestamps failed: %v)", err)
	}
	r := g.ctx.NewRunner()
	r.BatchSeconds = 1e9 // never split a layer on time; the grouping below decides
	byKind := map[string]*KindTiming{}
	for i := 0; i < len(g.Dispatches); {
		j := i + 1
		for j < len(g.Dispatches) && g.Dispatches[j].Label == g.Dispatches[i].Label && g.Dispatches[j].Kind == g.Dispatches[i].Kind {
			j++
		}
		start := time.Now()
		if err := r.Run(g.Dispatches[i:j]); err != nil {
			return nil, "", err
		}
		secs := time.Since(start).Seconds()
		k := g.Dispatches[i].Kind
		kt := byKind[k]
		if kt == nil {
			kt = &KindTiming{Kind: k}
			byKind[k] = kt
		}
		kt.Seconds += secs
		for _, d := range g.Dispatches[i:j] {
			kt.FLOPs += d.FLOPs
			kt.Count++
		}
		i = j
	}
	out := make([]KindTiming, 0, len(byKind))
	for _, kt := range byKind {
		out = append(out, *kt)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seconds > out[b].Seconds })
	return out, method, nil
}

func (g *GPUNet) profileTimestamps() ([]KindTiming, error) {
	t, err := g.ctx.NewTiming()
	if err != nil {
		return nil, err
	}
	defer t.Release()
	r := g.ctx.NewRunner()
	r.Timing = t
	if err := r.Run(g.Dispatches); err != nil {
		return nil, err
	}
	return KindTimings(t), nil
}

// ProfileLayers times one window on the GPU and returns the time of every layer of the given
// kind (by dispatch label: "down_layers.1.0.conv1.conv", ...) in network order, for choosing
// kernels per layer. It needs timestamp queries.
func (g *GPUNet) ProfileLayers(kind string) ([]KindTiming, error) {
	t, err := g.ctx.NewTiming()
	if err != nil {
		return nil, err
	}
	defer t.Release()
	t.Key = func(d gpu.Dispatch) string {
		if d.Kind == kind {
			return d.Label
		}
		return ""
	}
	r := g.ctx.NewRunner()
	r.Timing = t
	if err := r.Run(g.Dispatches); err != nil {
		return nil, err
	}
	byLabel := map[string]KindTiming{}
	for _, k := range KindTimings(t) {
		byLabel[k.Kind] = k
	}
	var out []KindTiming
	for _, d := range g.Dispatches {
		if k, ok := byLabel[d.Label]; ok && d.Kind == kind {
			out = append(out, k)
			delete(byLabel, d.Label)
		}
	}
	return out, nil
}

// KindTimings converts what a gpu.Timing collected, longest first.
func KindTimings(t *gpu.Timing) []KindTiming {
	var out []KindTiming
	for _, k := range t.Kinds() {
		out = append(out, KindTiming{Kind: k.Kind, Seconds: k.Seconds, FLOPs: k.FLOPs, Count: k.Dispatches})
	}
	return out
}

// RunWindow runs the network once on whatever the input buffer holds and waits.
func (g *GPUNet) RunWindow() error {
	return g.ctx.NewRunner().Run(g.Dispatches)
}

// TimeWindows runs the network n times, waiting after each, and returns each run's wall time
// (warm the pipelines up with a RunWindow first).
func (g *GPUNet) TimeWindows(n int) ([]float64, error) {
	var secs []float64
	for range n {
		start := time.Now()
		if err := g.RunWindow(); err != nil {
			return nil, err
		}
		secs = append(secs, time.Since(start).Seconds())
	}
	return secs, nil
}
