package model

import "math"

// The fast path's memory-bound operations on padded buffers: GroupNorm (+ReLU), trilinear
// upsampling with the skip add, and the head with argmax. They do what cpu_ops.go does, in
// the same float32 (and float64) operations, only over padded rows.

// groupNormStats returns each channel's scale and shift, y = x*scale + shift, as groupNorm
// defines them. One float64 pass per channel over its whole padded storage (the halo is zero,
// so its share is known and taken off) gives the sum and the sum of squares of x - s, s
// being a value of the group: in float64 and shifted by a value of the data, the variance
// does not suffer the cancellation the reference's two passes avoid, and the activations are
// read once instead of twice.
func (f *fastNet) groupNormStats(src *pbuf, n *Norm) (scale, shift []float32) {
	cpg := n.C / n.Groups
	vox := src.D * src.H * src.W
	cs := src.cstride()
	halo := float64(cs - vox)
	count := float64(cpg * vox)
	ref := make([]float64, n.Groups)
	for g := range ref {
		ref[g] = float64(src.row(g*cpg, 0, 0)[0])
	}
	s, q := make([]float64, n.C), make([]float64, n.C)
	parallelFor(n.C, func(c int) {
		r := ref[c/cpg]
		s[c], q[c] = f.isa.sums(src.data[c*cs:(c+1)*cs], r)
		s[c] += r * halo // each zero of the halo added 0 - r and r²
		q[c] -= r * r * halo
	})
	scale, shift = make([]float32, n.C), make([]float32, n.C)
	for g := range n.Groups {
		var sg, qg float64
		for c := g * cpg; c < (g+1)*cpg; c++ {
			sg, qg = sg+s[c], qg+q[c]
		}
		d := sg / count // mean - ref
		mean := ref[g] + d
		variance := max(qg/count-d*d, 0)
		inv := 1 / math.Sqrt(variance+GroupNormEps)
		for c := g * cpg; c < (g+1)*cpg; c++ {
			sc := float64(n.Gamma[c]) * inv
			scale[c], shift[c] = float32(sc), float32(float64(n.Beta[c])-mean*sc)
		}
	}
	return scale, shift
}

// groupNormPadded writes GroupNorm and ReLU of src into dst's interior (the network never
// normalises without the ReLU); dst may be src. Each plane's interior rows are one run with
// their halo columns, which are cleared after.
func (f *fastNet) groupNormPadded(dst, src *pbuf, n *Norm) {
	scale, shift := f.groupNormStats(src, n)
	wp, plane, cs := src.W+2, (src.H+2)*(src.W+2), src.cstride()
	parallelFor(n.C*src.D, func(t int) {
		c, z := t/src.D, t%src.D
		lo, hi := c*cs+(z+1)*plane+wp, c*cs+(z+1)*plane+(src.H+1)*wp
		d := dst.data[lo:hi]
		f.isa.scaleReLU(d, src.data[lo:hi], scale[c], shift[c])
		for p := 0; p < len(d); p += wp {
			d[p], d[p+wp-1] = 0, 0
		}
	})
}

// groupNormToTensor writes GroupNorm and ReLU of src into dst, an unpadded tensor of its
// shape: the network's features leave the padded layout here.
func (f *fastNet) groupNormToTensor(dst *Tensor, src *pbuf, n *Norm) {
	scale, shift := f.groupNormStats(src, n)
	parallelFor(n.C*src.D, func(t int) {
		c, z := t/src.D, t%src.D
		for y := range src.H {
			f.isa.scaleReLU(dst.Data[((c*src.D+z)*src.H+y)*src.W:][:src.W], src.row(c, z, y), scale[c], shift[c])
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
	cs       int
	feat     []float32
	logits   []float32
	best     []float32
	sum, sec []float32 // the confidence's scratch (confChunk), made when first needed
}

// headChunkSize is the voxels per head chunk: features and logits of the bundle's head
// (32 and 112 channels) fit in a core's L2 cache.
const headChunkSize = 1024

// headChunk returns a head chunk from the pool (600 KB each for the bundle's head: a whole
// volume's head would otherwise allocate thousands); give it back with f.chunks.Put.
func (f *fastNet) headChunk() *headChunk {
	if hc, ok := f.chunks.Get().(*headChunk); ok {
		return hc
	}
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

// headTensor applies the head to features [F][D][H][W] and returns the logits. The kernels
// read the features and write the logits in place, but for the last partial block of
// voxels, which goes through a head chunk (so that no kernel reads past the features' end).
func (f *fastNet) headTensor(feat *Tensor) *Tensor {
	c := f.final.c
	nv := feat.Voxels()
	out := NewTensor(c.Out, feat.D, feat.H, feat.W)
	full := nv / f.isa.block() * f.isa.block()
	if full > 0 {
		parallelFor(c.Out, func(o int) {
			row := out.Data[o*nv : o*nv+full]
			for i := range row {
				row[i] = c.B[o]
			}
		})
		j := &convJob{isa: f.isa, pc: f.final, out: out.Data, outStride: nv, in: feat.Data, inStride: nv,
			taps: []int64{0}, accumulate: true}
		step := ceilDivInt(headChunkSize, f.isa.block()) * f.isa.block()
		for lo := 0; lo < full; lo += step {
			j.ranges = append(j.ranges, [2]int{lo, min(lo+step, full)})
		}
		j.run()
	}
	if n := nv - full; n > 0 {
		hc := f.headChunk()
		defer f.chunks.Put(hc)
		for i := range c.In {
			copy(hc.feat[i*hc.cs:][:n], feat.Data[i*nv+full:][:n])
		}
		f.logits(hc, n)
		for o := range c.Out {
			copy(out.Data[o*nv+full:][:n], hc.logits[o*hc.cs:][:n])
		}
	}
	return out
}

// headArgmax is HeadArgmax on the kernels.
func (f *fastNet) headArgmax(feat *Tensor) []uint8 {
	c := f.final.c
	nv := feat.Voxels()
	out := make([]uint8, nv)
	parallelFor(ceilDivInt(nv, headChunkSize), func(chunk int) {
		hc := f.headChunk()
		defer f.chunks.Put(hc)
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
