package model

import (
	"math/rand/v2"
	"sort"
	"time"
)

// cpuProfile books the CPU path's time and work by layer kind, with the GPU profile's kind
// names (conv3x3, conv3x3s2, conv1x1, groupnorm, upsample, head). A nil profile books
// nothing, so the forward passes call it unconditionally.
type cpuProfile struct {
	kinds map[string]*KindTiming
}

func (p *cpuProfile) entry(kind string) *KindTiming {
	if p.kinds == nil {
		p.kinds = map[string]*KindTiming{}
	}
	k := p.kinds[kind]
	if k == nil {
		k = &KindTiming{Kind: kind}
		p.kinds[kind] = k
	}
	return k
}

// time runs f and books its wall time under kind.
func (p *cpuProfile) time(kind string, f func()) {
	if p == nil {
		f()
		return
	}
	start := time.Now()
	f()
	k := p.entry(kind)
	k.Seconds += time.Since(start).Seconds()
	k.Count++
}

// add books work under kind.
func (p *cpuProfile) add(kind string, flops float64) {
	if p != nil {
		p.entry(kind).FLOPs += flops
	}
}

func (p *cpuProfile) list() []KindTiming {
	out := make([]KindTiming, 0, len(p.kinds))
	for _, k := range p.kinds {
		out = append(out, *k)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seconds > out[b].Seconds })
	return out
}

func convKind(c *Conv) string {
	switch {
	case c.K == 1:
		return "conv1x1"
	case c.Stride == 2:
		return "conv3x3s2"
	}
	return "conv3x3"
}

// convFLOPs counts a multiply-add as two operations, as the GPU specs do.
func convFLOPs(c *Conv, outVoxels int) float64 {
	return 2 * float64(c.In*c.Out*c.K*c.K*c.K) * float64(outVoxels)
}

// The element-wise kinds are counted as their GPU specs count them (shaders/groupnorm.go,
// shaders/upsample.go), so the CPU and GPU columns of a benchmark compare.
func groupNormFLOPs(t *Tensor) float64 { return 5 * float64(t.C*t.Voxels()) }
func upsampleFLOPs(t *Tensor) float64  { return 30 * float64(t.C*t.Voxels()) }

// ProfileCPU runs one forward pass (features and head) of an input of the given size on the
// CPU path as the CPU kernels are selected, and returns its time and work by layer kind. The
// input is random; timing does not depend on the values.
func (n *Net) ProfileCPU(d, h, w int) ([]KindTiming, error) {
	rng := rand.New(rand.NewPCG(3, 96))
	x := NewTensor(n.Init.In, d, h, w)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	prof := &cpuProfile{}
	feat, err := n.trace(x, nil, prof)
	if err != nil {
		return nil, err
	}
	prof.time("head", func() { _, err = n.head(feat) })
	if err != nil {
		return nil, err
	}
	prof.add("head", convFLOPs(&n.Final, feat.Voxels()))
	return prof.list(), nil
}
