package model

import "sync"

// The fast CPU path: the network on the vector kernels of cpu_isa.go.
//
// Activations live in padded buffers (pbuf): every channel is stored with a one-voxel zero
// halo on each side, so a 3x3x3 convolution reads its zero padding from memory and the
// kernels need no edge cases. Within one padded plane the output positions of the H interior
// rows form one contiguous run, halo columns included; a kernel computes a block of such
// positions at a time, each tap being a fixed offset from the output position, and the
// halo columns it computes on the way are cleared afterwards. That wastes 2 of every W+2
// positions (2 % at 96³, 14 % at the 12³ of the deepest level) but lets one kernel serve
// every layer: 3x3x3 with stride 1 (tap = neighbour offset), stride 2 (tap = offset into a
// phase-split copy of the input, see phaseSplit) and 1x1x1 (one tap).

// pbufSlack is the number of floats kept before and after a buffer's data: a kernel block
// may start one position before a channel (the first halo column's left neighbour) and run
// up to a block of positions past the last plane's last interior row plus a plane.
const pbufSlack = 64

// pbuf is a padded activation [C][D+2][H+2][W+2]. Its halo is zero whenever it is handed
// between operations (each operation writes interior voxels only, or clears what it
// computed in the halo); the interior is whatever the last writer left.
type pbuf struct {
	C, D, H, W int
	phase      bool      // a phase-split input of a stride-2 conv (no zero-halo invariant)
	mem        []float32 // data with pbufSlack floats on each side
	data       []float32
}

func newPbuf(c, d, h, w int, phase bool) *pbuf {
	n := c * (d + 2) * (h + 2) * (w + 2)
	mem := make([]float32, n+2*pbufSlack)
	return &pbuf{C: c, D: d, H: h, W: w, phase: phase, mem: mem, data: mem[pbufSlack : pbufSlack+n]}
}

// cstride is the distance between channels, (D+2)(H+2)(W+2).
func (b *pbuf) cstride() int { return (b.D + 2) * (b.H + 2) * (b.W + 2) }

// row returns interior row (z, y) of channel c (z, y unpadded).
func (b *pbuf) row(c, z, y int) []float32 {
	off := c*b.cstride() + ((z+1)*(b.H+2)+y+1)*(b.W+2) + 1
	return b.data[off : off+b.W]
}

// fromTensor copies t into the interior of b (same shape).
func (b *pbuf) fromTensor(t *Tensor) {
	parallelFor(t.C*t.D, func(i int) {
		c, z := i/t.D, i%t.D
		for y := range t.H {
			copy(b.row(c, z, y), t.Data[((c*t.D+z)*t.H+y)*t.W:][:t.W])
		}
	})
}

// toTensor returns b's interior as a Tensor.
func (b *pbuf) toTensor() *Tensor {
	t := NewTensor(b.C, b.D, b.H, b.W)
	parallelFor(t.C*t.D, func(i int) {
		c, z := i/t.D, i%t.D
		for y := range t.H {
			copy(t.Data[((c*t.D+z)*t.H+y)*t.W:][:t.W], b.row(c, z, y))
		}
	})
	return t
}

// bufPool recycles buffers between operations and windows: a window of the bundle's network
// needs a few buffers of 120 MB, and allocating them afresh for every layer would have the
// garbage collector hold several times that.
type bufPool struct {
	mu   sync.Mutex
	free map[[5]int][]*pbuf
}

func (p *bufPool) get(c, d, h, w int, phase bool) *pbuf {
	key := [5]int{c, d, h, w, 0}
	if phase {
		key[4] = 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.free[key]; len(l) > 0 {
		b := l[len(l)-1]
		p.free[key] = l[:len(l)-1]
		return b
	}
	return newPbuf(c, d, h, w, phase)
}

func (p *bufPool) put(bs ...*pbuf) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free == nil {
		p.free = map[[5]int][]*pbuf{}
	}
	for _, b := range bs {
		key := [5]int{b.C, b.D, b.H, b.W, 0}
		if b.phase {
			key[4] = 1
		}
		p.free[key] = append(p.free[key], b)
	}
}

// packedConv is a convolution's weights in the order the kernels read them:
// [output-channel block][input channel][tap][noc], zero for channels past Out.
type packedConv struct {
	c     *Conv
	ntaps int
	w     []float32
}

func packConv(c *Conv, k *cpuISA) *packedConv {
	ntaps := c.K * c.K * c.K
	nob := ceilDivInt(c.Out, k.noc)
	w := make([]float32, nob*c.In*ntaps*k.noc)
	for o := range c.Out {
		ob, oi := o/k.noc, o%k.noc
		for i := range c.In {
			for t := range ntaps {
				w[((ob*c.In+i)*ntaps+t)*k.noc+oi] = c.W[(o*c.In+i)*ntaps+t]
			}
		}
	}
	return &packedConv{c: c, ntaps: ntaps, w: w}
}

// convJob is one convolution as runs of output positions: out[o*outStride + p] for p in
// each range, from in (channel stride inStride, position p of in aligned with p of out) at
// the byte offsets taps. after, when set, runs once a range of some channels is done.
type convJob struct {
	isa        *cpuISA
	pc         *packedConv
	out        []float32
	outStride  int
	in         []float32
	inStride   int
	taps       []int64
	accumulate bool
	ranges     [][2]int
	after      func(lo, hi, o0, o1 int)
}

// Cache blocking of a convJob task. A task's positions are taken subBlocks kernel blocks at
// a time; over those, the kernels run icChunk input channels at a time, for every
// output-channel block of the task and every block of positions, before the next chunk. The
// chunk's weights for one output block (27 × 8 × noc floats, 7 KB) stay in L1 across the
// position blocks, its input rows (3 planes × a few rows × 8 channels) in L1 and L2 across the
// output blocks, and the partial sums (obGroup × noc channels × subBlocks blocks) in L2.
const (
	icChunk   = 8
	obGroup   = 8
	subBlocks = 10
)

// chunk is the input channels a kernel call takes: icChunk for a 3x3x3 conv, as many for a
// 1x1x1 conv as make the same 216 (channel, tap) steps, so that the accumulators' load and
// store stay a small part of a call.
func (j *convJob) chunk() int { return max(1, icChunk*27/len(j.taps)) }

// run computes every (range, group of output-channel blocks) pair on all cores,
// range-major so that the cores share the input planes of neighbouring ranges in the
// last-level cache.
func (j *convJob) run() {
	k := j.isa
	nob := ceilDivInt(j.pc.c.Out, k.noc)
	ngroups := ceilDivInt(nob, obGroup)
	parallelFor(len(j.ranges)*ngroups, func(t int) {
		r, g := j.ranges[t/ngroups], t%ngroups
		ob0, ob1 := g*obGroup, min((g+1)*obGroup, nob)
		j.blocks(r[0], r[1], ob0, ob1)
		if j.after != nil {
			j.after(r[0], r[1], ob0*k.noc, min(ob1*k.noc, j.pc.c.Out))
		}
	})
}

// blocks computes positions [lo, hi) of output-channel blocks [ob0, ob1).
func (j *convJob) blocks(lo, hi, ob0, ob1 int) {
	blk := j.isa.block()
	var scratch []float32
	for sub := lo; sub < hi; sub += subBlocks * blk {
		end := min(hi, sub+subBlocks*blk)
		for ic := 0; ic < j.pc.c.In; ic += j.chunk() {
			nic := min(j.chunk(), j.pc.c.In-ic)
			for ob := ob0; ob < ob1; ob++ {
				for pos := sub; pos < end; pos += blk {
					scratch = j.block(pos, min(blk, end-pos), ob, ic, nic, scratch)
				}
			}
		}
	}
}

// block runs one kernel: n positions from pos, output-channel block ob, input channels
// [ic, ic+nic), on top of what earlier input channels (or the residual) left. A whole block
// goes straight to out; a short block, or one of fewer than noc real channels, goes through
// scratch so that nothing outside the positions and the real channels is written.
func (j *convJob) block(pos, n, ob, ic, nic int, scratch []float32) []float32 {
	k := j.isa
	c := j.pc.c
	blk := k.block()
	o0 := ob * k.noc
	valid := min(k.noc, c.Out-o0)
	w := &j.pc.w[((ob*c.In+ic)*j.pc.ntaps)*k.noc]
	in := &j.in[ic*j.inStride+pos]
	acc := j.accumulate || ic > 0
	nv := ceilDivInt(n, k.lanes)
	kern := k.kernels[nv-1]
	if valid == k.noc && n == nv*k.lanes {
		kern(&j.out[o0*j.outStride+pos], uintptr(4*j.outStride), in, uintptr(4*j.inStride), &j.taps[0], len(j.taps), nic, w, acc)
		return scratch
	}
	if scratch == nil {
		scratch = make([]float32, k.noc*blk)
	}
	if acc {
		for o := range valid {
			copy(scratch[o*blk:o*blk+n], j.out[(o0+o)*j.outStride+pos:][:n])
		}
	}
	kern(&scratch[0], uintptr(4*blk), in, uintptr(4*j.inStride), &j.taps[0], len(j.taps), nic, w, acc)
	for o := range valid {
		copy(j.out[(o0+o)*j.outStride+pos:][:n], scratch[o*blk:o*blk+n])
	}
	return scratch
}

// interiorRows is the position runs of a padded volume's interior: per plane, the H interior
// rows with their halo columns.
func interiorRows(d, h, w int) [][2]int {
	wp, plane := w+2, (h+2)*(w+2)
	r := make([][2]int, d)
	for z := range d {
		base := (z + 1) * plane
		r[z] = [2]int{base + wp, base + (h+1)*wp}
	}
	return r
}

// clearHaloColumns returns an after hook that zeroes the halo columns of the rows a kernel
// computed in out (the positions between two interior rows).
func clearHaloColumns(out *pbuf) func(lo, hi, o0, o1 int) {
	wp, cs := out.W+2, out.cstride()
	return func(lo, hi, o0, o1 int) {
		for o := o0; o < o1; o++ {
			d := out.data[o*cs:]
			for p := lo; p < hi; p += wp {
				d[p] = 0
				d[p+wp-1] = 0
			}
		}
	}
}

// tapOffsets3 are the byte offsets of a 3x3x3 neighbourhood in a padded volume of row length
// wp and plane size plane, in the weights' (kd, kh, kw) order.
func tapOffsets3(plane, wp int) []int64 {
	taps := make([]int64, 0, 27)
	for kd := -1; kd <= 1; kd++ {
		for kh := -1; kh <= 1; kh++ {
			for kw := -1; kw <= 1; kw++ {
				taps = append(taps, int64(4*(kd*plane+kh*wp+kw)))
			}
		}
	}
	return taps
}

// tapOffsetsPhase are the byte offsets of a stride-2 3x3x3 conv's taps in a phase-split
// input (see phaseSplit) laid out in the output's padded geometry: tap (kd, kh, kw) reads
// phase (kd%2, kh%2, kw%2) at the output position moved by (kd/2-1, kh/2-1, kw/2-1).
func tapOffsetsPhase(plane, wp, cs int) []int64 {
	taps := make([]int64, 0, 27)
	for kd := range 3 {
		for kh := range 3 {
			for kw := range 3 {
				ph := (kd%2)*4 + (kh%2)*2 + kw%2
				taps = append(taps, int64(4*(ph*cs+(kd/2-1)*plane+(kh/2-1)*wp+(kw/2-1))))
			}
		}
	}
	return taps
}

// convPadded runs c (3x3x3 stride 1 or 2, or 1x1x1) from the padded in to the padded out,
// on top of out's interior when accumulate is set (the ResBlock's residual). A stride-2 conv
// reads a phase-split copy of in made with the pool's buffers.
func (f *fastNet) convPadded(out, in *pbuf, pc *packedConv, accumulate bool) {
	plane, wp, cs := (out.H+2)*(out.W+2), out.W+2, out.cstride()
	j := &convJob{isa: f.isa, pc: pc, out: out.data, outStride: cs, accumulate: accumulate,
		ranges: interiorRows(out.D, out.H, out.W), after: clearHaloColumns(out)}
	switch {
	case pc.c.K == 1:
		j.in, j.inStride, j.taps = in.data, in.cstride(), []int64{0}
	case pc.c.Stride == 1:
		j.in, j.inStride, j.taps = in.data, in.cstride(), tapOffsets3(plane, wp)
	default:
		ph := f.pool.get(8*in.C, out.D, out.H, out.W, true)
		defer f.pool.put(ph)
		phaseSplit(ph, in)
		j.in, j.inStride, j.taps = ph.data, 8*cs, tapOffsetsPhase(plane, wp, cs)
	}
	j.run()
}

// phaseSplit fills ph (8*in.C channels in the output geometry of a stride-2 conv of in)
// with the eight parity phases of in's padded volume: channel 8i + 4a + 2b + c at padded
// position (z, y, x) holds in's channel i at padded position (2z+a, 2y+b, 2x+c), zero
// outside. A stride-2 tap then reads consecutive positions, as a stride-1 tap does.
func phaseSplit(ph, in *pbuf) {
	dp, hp, wp := in.D+2, in.H+2, in.W+2
	ics := in.cstride()
	odp, ohp, owp := ph.D+2, ph.H+2, ph.W+2
	ocs := ph.cstride()
	parallelFor(in.C*8, func(t int) {
		i, p := t/8, t%8
		a, b, c := p/4, (p/2)%2, p%2
		src := in.data[i*ics : (i+1)*ics]
		dst := ph.data[t*ocs : (t+1)*ocs]
		for z := range odp {
			for y := range ohp {
				row := dst[(z*ohp+y)*owp : (z*ohp+y+1)*owp]
				zi, yi := 2*z+a, 2*y+b
				if zi >= dp || yi >= hp {
					clear(row)
					continue
				}
				s := src[(zi*hp+yi)*wp : (zi*hp+yi+1)*wp]
				for x := range row {
					if xi := 2*x + c; xi < wp {
						row[x] = s[xi]
					} else {
						row[x] = 0
					}
				}
			}
		}
	})
}
