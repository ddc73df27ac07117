package model

import "math"

// The fast path's memory-bound operations on padded buffers: GroupNorm (+ReLU), trilinear
// upsampling with the skip add, and the head with argmax. They do what cpu_ops.go does, in
// the same float32 (and float64) operations, only over padded rows.

// groupNormStats returns each channel's scale and shift, y = x*scale + shift, as groupNorm
// computes them: two float64 passes (mean, then squared deviations) over the interior.
func groupNormStats(src *pbuf, n *Norm) (scale, shift []float32) {
	cpg := n.C / n.Groups
	count := float64(cpg * src.D * src.H * src.W)
	channelSum := func(c int, f func(row []float32) float64) float64 {
		s := 0.0
		for z := range src.D {
			for y := range src.H {
				s += f(src.row(c, z, y))
			}
		}
		return s
	}
	sums := make([]float64, n.C)
	parallelFor(n.C, func(c int) { sums[c] = channelSum(c, func(r []float32) float64 { return sum64(r, 0) }) })
	mean := make([]float64, n.Groups)
	for c, s := range sums {
		mean[c/cpg] += s
	}
	for g := range mean {
		mean[g] /= count
	}
	parallelFor(n.C, func(c int) {
		m := mean[c/cpg]
		sums[c] = channelSum(c, func(r []float32) float64 { return sumSq64(r, m) })
	})
	variance := make([]float64, n.Groups)
	for c, s := range sums {
		variance[c/cpg] += s
	}
	scale, shift = make([]float32, n.C), make([]float32, n.C)
	for c := range n.C {
		g := c / cpg
		inv := 1 / math.Sqrt(variance[g]/count+GroupNormEps)
		s := float64(n.Gamma[c]) * inv
		scale[c], shift[c] = float32(s), float32(float64(n.Beta[c])-mean[g]*s)
	}
	return scale, shift
}

// normRow writes x*sc+sh (and the ReLU) of src to dst, which may be src.
func normRow(dst, src []float32, sc, sh float32, relu bool) {
	src = src[:len(dst)]
	if relu {
		for i, v := range src {
			dst[i] = max(v*sc+sh, 0)
		}
		return
	}
	for i, v := range src {
		dst[i] = v*sc + sh
	}
}

// groupNormPadded writes GroupNorm (and ReLU) of src into dst's interior; dst may be src.
func groupNormPadded(dst, src *pbuf, n *Norm, relu bool) {
	scale, shift := groupNormStats(src, n)
	parallelFor(n.C*src.D, func(t int) {
		c, z := t/src.D, t%src.D
		for y := range src.H {
			normRow(dst.row(c, z, y), src.row(c, z, y), scale[c], shift[c], relu)
		}
	})
}

// groupNormToTensor writes GroupNorm (and ReLU) of src into dst, an unpadded tensor of its
// shape: the network's features leave the padded layout here.
func groupNormToTensor(dst *Tensor, src *pbuf, n *Norm, relu bool) {
	scale, shift := groupNormStats(src, n)
	parallelFor(n.C*src.D, func(t int) {
		c, z := t/src.D, t%src.D
		for y := range src.H {
			normRow(dst.Data[((c*src.D+z)*src.H+y)*src.W:][:src.W], src.row(c, z, y), scale[c], shift[c], relu)
		}
	})
}

// upsampleAddPadded sets skip's interior to the trilinear x2 upsampling of x
// (align_corners=False) plus skip, with upsampleAdd's operations in its order (W, then H,
// then D with the skip added), one channel per task: each keeps the H-W upsampled planes of
// the input slices k-1, k, k+1 instead of a whole upsampled volume.
func upsampleAddPadded(skip, x *pbuf) {
	d, h, w := x.D, x.H, x.W
	parallelFor(x.C, func(c int) {
		plane := 4 * h * w
		var cache [3][]float32
		cached := [3]int{-1, -1, -1}
		rowW := make([]float32, h*2*w)
		hw := func(k int) []float32 { // input slice k upsampled along W and H
			s := k % 3
			if cached[s] == k {
				return cache[s]
			}
			if cache[s] == nil {
				cache[s] = make([]float32, plane)
			}
			for y := range h {
				up2(rowW[y*2*w:(y+1)*2*w], x.row(c, k, y))
			}
			upsampleLines(cache[s], rowW, h, 2*w, nil)
			cached[s] = k
			return cache[s]
		}
		for k := range d {
			cur, prev, next := hw(k), hw(max(k-1, 0)), hw(min(k+1, d-1))
			for j, nb := range [2][]float32{prev, next} {
				z := 2*k + j
				for y := range 2 * h {
					dst := skip.row(c, z, y)
					lerpAdd(dst, cur[y*2*w:(y+1)*2*w], nb[y*2*w:(y+1)*2*w], dst)
				}
			}
		}
	})
}

// headChunk is the scratch of one worker's head: features [F][cs] in, logits [noc-rounded
// K][cs] out, cs a multiple of the kernels' block.
type headChunk struct {
	cs     int
	feat   []float32
	logits []float32
	best   []float32
}

// headChunkSize is the voxels per head chunk: features and logits of the bundle's head
// (32 and 112 channels) fit in a core's L2 cache.
const headChunkSize = 1024

func (f *fastNet) newHeadChunk() *headChunk {
	cs := ceilDivInt(headChunkSize, f.isa.block()) * f.isa.block()
	c := f.final.c
	kp := ceilDivInt(c.Out, f.isa.noc) * f.isa.noc
	return &headChunk{cs: cs, feat: make([]float32, c.In*cs), logits: make([]float32, kp*cs), best: make([]float32, cs)}
}

// logits applies the head to the first n voxels of hc.feat. Every voxel gets the same
// operations whatever its place in the chunk (whole kernel blocks only), so the labels do
// not depend on how the volume was cut into chunks.
func (f *fastNet) logits(hc *headChunk, n int) {
	c := f.final.c
	n = ceilDivInt(n, f.isa.block()) * f.isa.block()
	for o := range c.Out {
		row := hc.logits[o*hc.cs : o*hc.cs+n]
		for i := range row {
			row[i] = c.B[o]
		}
	}
	j := &convJob{isa: f.isa, pc: f.final, out: hc.logits, outStride: hc.cs, in: hc.feat, inStride: hc.cs,
		taps: []int64{0}, accumulate: true}
	j.blocks(0, n, 0, ceilDivInt(c.Out, f.isa.noc))
}

// argmax writes the class of each of the first n voxels of hc's logits to out (the first
// maximum wins, as torch.argmax and argmax1).
func (f *fastNet) argmax(hc *headChunk, n int, out []uint8) {
	best := hc.best[:n]
	copy(best, hc.logits[:n])
	out = out[:n]
	clear(out)
	for o := 1; o < f.final.c.Out; o++ {
		row := hc.logits[o*hc.cs : o*hc.cs+n]
		for v, s := range row {
			if s > best[v] {
				best[v], out[v] = s, uint8(o)
			}
		}
	}
}

// headTensor applies the head to features [F][D][H][W] and returns the logits.
func (f *fastNet) headTensor(feat *Tensor) *Tensor {
	c := f.final.c
	nv := feat.Voxels()
	out := NewTensor(c.Out, feat.D, feat.H, feat.W)
	parallelFor(ceilDivInt(nv, headChunkSize), func(chunk int) {
		hc := f.newHeadChunk()
		v0 := chunk * headChunkSize
		n := min(headChunkSize, nv-v0)
		for i := range c.In {
			copy(hc.feat[i*hc.cs:][:n], feat.Data[i*nv+v0:][:n])
		}
		f.logits(hc, n)
		for o := range c.Out {
			copy(out.Data[o*nv+v0:][:n], hc.logits[o*hc.cs:][:n])
		}
	})
	return out
}

// headArgmax is HeadArgmax on the kernels.
func (f *fastNet) headArgmax(feat *Tensor) []uint8 {
	c := f.final.c
	nv := feat.Voxels()
	out := make([]uint8, nv)
	parallelFor(ceilDivInt(nv, headChunkSize), func(chunk int) {
		hc := f.newHeadChunk()
		v0 := chunk * headChunkSize
		n := min(headChunkSize, nv-v0)
		for i := range c.In {
			copy(hc.feat[i*hc.cs:][:n], feat.Data[i*nv+v0:][:n])
		}
		f.logits(hc, n)
		f.argmax(hc, n, out[v0:])
	})
	return out
}
