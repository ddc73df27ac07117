package model

import (
	"sort"
	"time"
)

// KindTiming is the time and work of one layer kind over a window.
type KindTiming struct {
	Kind    string
	Seconds float64
	FLOPs   float64
	Count   int
}

// GFLOPS is the achieved rate.
func (k KindTiming) GFLOPS() float64 {
	if k.Seconds <= 0 {
		return 0
	}
	return k.FLOPs / k.Seconds / 1e9
}

// Profile runs the window's dispatches once, one submission per layer (consecutive dispatches
// with the same label), waiting after each, and sums the wall time per layer kind. The waits
// add a little per layer, so the sum is slightly above a normal run's time; it says where the
// time goes, and Run timings say how long a window takes.
func (g *GPUNet) Profile() ([]KindTiming, error) {
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
			return nil, err
		}
		secs := time.Since(start).Seconds()
		k := g.Dispatches[i].Kind
		kt := byKind[k]
		if kt == nil {
			kt = &KindTiming{Kind: k}
			byKind[k] = kt
		}
		kt.Seconds += secs
		kt.Count++
		for _, d := range g.Dispatches[i:j] {
			kt.FLOPs += d.FLOPs
		}
		i = j
	}
	out := make([]KindTiming, 0, len(byKind))
	for _, kt := range byKind {
		out = append(out, *kt)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seconds > out[b].Seconds })
	return out, nil
}

// RunWindow runs the network once on whatever the input buffer holds and waits.
func (g *GPUNet) RunWindow() error {
	return g.ctx.NewRunner().Run(g.Dispatches)
}
