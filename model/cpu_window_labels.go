package model

import (
	"fmt"
	"math"
)

// SlidingWindowLabels is the CPU sliding window of the network's features followed by the
// head and argmax, as HeadArgmax(SlidingWindow(x, opt, F, n.Features)) computes it, with the
// same float32 operations in the same order, so the labels are the same bit for bit. It
// blends into a ring Blender of ROI[0] padded D-slices instead of the whole volume (1.4 GB of
// features instead of 4.3 GB for 287x287x397 at 1.5 mm) and applies the head to each slice
// once a window row starts after it. progress, when set, is called after every window; an
// error from it stops the run.
func (n *Net) SlidingWindowLabels(x *Tensor, opt WindowOptions, progress func(done, total int) error) ([]uint8, error) {
	out := WindowOutput{Labels: make([]uint8, x.Voxels())}
	if err := n.SlidingWindowOutput(x, opt, out, progress); err != nil {
		return nil, err
	}
	return out.Labels, nil
}

// SlidingWindowOutput is SlidingWindowLabels into out: Labels, and where Conf and Second are
// set the confidence too, as the GPU head computes it (p1 and p2 of the softmax, packed as
// unorm16, and the runner-up), from the same logits the labels come from. Every slice of out
// must hold x's voxels.
func (n *Net) SlidingWindowOutput(x *Tensor, opt WindowOptions, out WindowOutput, progress func(done, total int) error) error {
	nv := x.Voxels()
	if len(out.Labels) != nv || out.Logits != nil || (out.Conf == nil) != (out.Second == nil) ||
		out.Conf != nil && (len(out.Conf) != nv || len(out.Second) != nv) {
		return fmt.Errorf("internal error: the CPU sliding window's output does not fit %d voxels", nv)
	}
	plan, padded, err := paddedInput(x, opt)
	if err != nil {
		return err
	}
	b, err := newRingBlender(plan, n.Cfg.InitFilters)
	if err != nil {
		return err
	}
	finished := 0
	fn := n.fast()
	finish := func(z1 int) { // the head over padded D-slices [finished, z1), slots cleared
		b.finish(finished, z1, x, out, n, fn)
		finished = z1
	}
	predict := n.Features
	if fn != nil {
		// one features tensor for every window: the blender has added it before the next
		var feat *Tensor
		predict = func(win *Tensor) (*Tensor, error) {
			if err := n.checkInput(win); err != nil {
				return nil, err
			}
			if feat == nil {
				feat = NewTensor(n.FinalNorm.C, win.D, win.H, win.W)
			}
			return fn.features(n, win, nil, feat, nil), nil
		}
	}
	if err := b.slide(padded, predict, finish, progress); err != nil {
		return err
	}
	finish(plan.Padded[0])
	return nil
}

// part is out's voxels [lo, hi).
func (o WindowOutput) part(lo, hi int) WindowOutput {
	p := WindowOutput{Labels: o.Labels[lo:hi]}
	if o.Conf != nil {
		p.Conf, p.Second = o.Conf[lo:hi], o.Second[lo:hi]
	}
	return p
}

// confidence sets out's Conf and Second at voxel i from one voxel's logits.
func (o WindowOutput) confidence(i int, logit func(j int) float32, k int) {
	t := SoftmaxTop(logit, k)
	o.Conf[i], o.Second[i] = PackConf(t.P1, t.P2), uint8(t.Second)
}

// finish divides the ring's padded D-slices [z0, z1) by their weights as Result does, runs
// n's head and argmax on every voxel of x's extent among them (the result lands in out, x's
// voxel order) and clears their slots for the slices that reuse them. With fn the head and
// argmax run on the CPU kernels, else on the reference.
func (b *Blender) finish(z0, z1 int, x *Tensor, out WindowOutput, n *Net, fn *fastNet) {
	pd, pad := b.plan.Padded, b.plan.PadBefore
	plane := pd[1] * pd[2]
	vox := len(b.count)
	parallelFor(z1-z0, func(i int) {
		z := z0 + i
		slot := z % b.depth
		if d := z - pad[0]; d >= 0 && d < x.D && fn != nil {
			b.labelSlice(slot, x, out.part(d*x.H*x.W, (d+1)*x.H*x.W), fn)
		} else if d >= 0 && d < x.D {
			feat := make([]float32, b.out.C)
			var logits []float32
			if out.Conf != nil {
				logits = make([]float32, n.Final.Out)
			}
			for h := 0; h < x.H; h++ {
				for w := 0; w < x.W; w++ {
					p := slot*plane + (h+pad[1])*pd[2] + w + pad[2]
					for c := range feat {
						feat[c] = b.out.Data[c*vox+p] / b.count[p]
					}
					i := (d*x.H+h)*x.W + w
					out.Labels[i] = n.argmax1(feat)
					if logits != nil {
						n.logits1(feat, logits)
						out.confidence(i, func(j int) float32 { return logits[j] }, len(logits))
					}
				}
			}
		}
		clear(b.count[slot*plane : (slot+1)*plane])
		for c := 0; c < b.out.C; c++ {
			clear(b.out.Data[c*vox+slot*plane : c*vox+(slot+1)*plane])
		}
	})
}

// labelSlice is finish's labelling of the x-extent of ring slot slot on the kernels: the
// features (divided by their weights as finish does) gathered into head chunks, row by row.
func (b *Blender) labelSlice(slot int, x *Tensor, out WindowOutput, fn *fastNet) {
	pd, pad := b.plan.Padded, b.plan.PadBefore
	vox := len(b.count)
	hc := fn.headChunk()
	defer fn.chunks.Put(hc)
	n, done := 0, 0 // voxels in the chunk, voxels of the slice labelled
	for h := range x.H {
		p0 := slot*pd[1]*pd[2] + (h+pad[1])*pd[2] + pad[2]
		for w := 0; w < x.W; {
			seg := min(x.W-w, hc.cs-n)
			cnt := b.count[p0+w : p0+w+seg]
			for c := range b.out.C {
				src := b.out.Data[c*vox+p0+w : c*vox+p0+w+seg]
				dst := hc.feat[c*hc.cs+n : c*hc.cs+n+seg]
				for k := range dst {
					dst[k] = src[k] / cnt[k]
				}
			}
			n, w = n+seg, w+seg
			if n == hc.cs {
				fn.logits(hc, n)
				b.labelChunk(hc, n, out, done, fn)
				done, n = done+n, 0
			}
		}
	}
	if n > 0 {
		fn.logits(hc, n)
		b.labelChunk(hc, n, out, done, fn)
	}
}

// labelChunk writes the argmax (and the confidence) of the chunk's n voxels to out from done.
func (b *Blender) labelChunk(hc *headChunk, n int, out WindowOutput, done int, fn *fastNet) {
	fn.argmax(hc, n, out.Labels[done:])
	if out.Conf == nil {
		return
	}
	if hc.sum == nil {
		hc.sum, hc.sec = make([]float32, hc.cs), make([]float32, hc.cs)
	}
	confChunk(hc.logits, hc.cs, fn.final.c.Out, n, hc.best, out.Labels[done:done+n], out.Conf[done:done+n], out.Second[done:done+n], hc.sum, hc.sec)
}

// confChunk sets conf and second of n voxels from their k logits (class-major, stride cs),
// their maximum best and their labels: the softmax's p1 and p2, in float32 as the GPU head
// computes them, and the runner-up (the first maximum among the other classes, as
// SoftmaxTop). sum and sec are scratch of n values. Class by class, so the rows stream.
func confChunk(logits []float32, cs, k, n int, best []float32, labels []uint8, conf []uint32, second []uint8, sum, sec []float32) {
	sum, sec, best = sum[:n], sec[:n], best[:n]
	for v := range n {
		sum[v], sec[v], second[v] = 0, float32(math.Inf(-1)), 0
	}
	labels, second = labels[:n], second[:n]
	for o := range k {
		row := logits[o*cs : o*cs+n]
		for v, l := range row {
			sum[v] += expNeg(max(l-best[v], -86)) // branch-free: e^-86 adds nothing
		}
		for v, l := range row {
			if l > sec[v] && int(labels[v]) != o {
				sec[v], second[v] = l, uint8(o)
			}
		}
	}
	for v := range n {
		p2 := float32(0)
		if k > 1 {
			p2 = expNeg(sec[v]-best[v]) / sum[v]
		}
		conf[v] = PackConf(float64(1/sum[v]), float64(p2))
	}
}
