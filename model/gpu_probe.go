package model

import (
	"encoding/binary"
	"fmt"
	"math"

	"ctseg/gpu"
	"ctseg/shaders"
)

// The probe reads what each block of the network computed for one window, for the Teach view
// and `ctseg forward --probe`: the blocks are Blocks' (MONAI's module paths). The network
// reuses an activation's buffer as soon as no later layer reads it, so the probe inserts, right
// after the dispatch that completes a block's output, a copy of the planes wanted into a
// buffer of its own (shaders.ProbeCopy), runs the window, and reads that buffer back. Two
// blocks are finished on the host, from values read back from the GPU: up_samples.i (the
// network fuses the upsampling with the skip's addition, and the probe wants the upsampling
// alone) from the 1x1x1 convolution's output, with the upsampling's own arithmetic; and
// conv_final (the head runs in the sliding window's blend pass) from the last block's output
// and its GroupNorm's scale and shift, as the head computes it.

// probePoint is where a block's output exists on the GPU: its tensor, complete after the
// network's first `after` dispatches (later ones may reuse the buffer).
type probePoint struct {
	name  string
	t     *gpuTensor
	after int
	up    bool // up_samples.i: t is the 1x1x1 convolution's output, upsampled on the host
}

func (g *GPUNet) mark(name string, t *gpuTensor, up bool) {
	g.probes = append(g.probes, probePoint{name: name, t: t, after: len(g.Dispatches), up: up})
}

// ProbeBlock is one block's output as the probe read it: f32 [C][D][H][W], W being 1 for a
// plane (the block's plane through the requested one), the block's width for a whole output.
type ProbeBlock struct {
	Name       string
	C, D, H, W int
	Plane      int // the plane's index along the block's last axis (-1: the whole output)
	Data       []float32
}

// Probe runs the network on one window (input: f32 [D][H][W] of the window's size) and returns
// every block's output, in Blocks' order. With plane >= 0, each block's plane through the
// window's plane at that index of its last axis (the plane plane >> level at a block whose
// resolution is halved level times: the one its stride-2 convolutions centre there); with
// plane < 0 the whole outputs.
func (g *GPUNet) Probe(input []float32, plane int) ([]ProbeBlock, error) {
	if len(input) != g.D*g.H*g.W {
		return nil, fmt.Errorf("probe: %d input values for a %dx%dx%d window", len(input), g.D, g.H, g.W)
	}
	if plane >= g.W {
		return nil, fmt.Errorf("probe: plane %d of a window %d wide", plane, g.W)
	}
	ctx := g.ctx
	// what to copy from each point: planes [w0, w0+nw) of its tensor
	type copyOut struct {
		spec   *shaders.ProbeCopy
		offset uint64
		plane  int // the block's plane (for up: the upsampled plane), -1 whole
	}
	copies := make([]copyOut, len(g.probes))
	var total uint64
	for i, p := range g.probes {
		t := p.t
		w0, nw, bp := 0, t.W, -1
		if plane >= 0 {
			level := 0
			for g.W>>level > t.W {
				level++
			}
			switch {
			case p.up: // the upsampled plane and the two low planes it interpolates
				bp = plane >> (level - 1)
				w0 = max(bp/2-1, 0)
				nw = min(bp/2+1, t.W-1) - w0 + 1
			default:
				bp = plane >> level
				w0, nw = bp, 1
			}
		}
		spec := &shaders.ProbeCopy{C: t.C, D: t.D, H: t.H, W: t.W, F16: t.F16, W0: w0, NW: nw}
		copies[i] = copyOut{spec: spec, offset: total, plane: bp}
		total += (spec.OutBytes() + 255) &^ 255 // each copy's binding starts aligned
	}
	if total > min(g.limits.MaxBufferSize, g.limits.MaxStorageBufferBindingSize) && plane < 0 {
		// whole outputs of a large window: one binding each, but the buffer must hold them all
		return nil, fmt.Errorf("probe: the whole outputs of a %dx%dx%d window need %d bytes, over this device's buffer limit; probe a plane, or a smaller input", g.D, g.H, g.W, total)
	}
	out, err := ctx.NewBuffer("probe", total)
	if err != nil {
		return nil, err
	}
	defer out.Release()
	var ds []gpu.Dispatch
	next := 0
	for i, d := range append(g.Dispatches, gpu.Dispatch{}) {
		for next < len(g.probes) && g.probes[next].after == i {
			c := copies[next]
			p, err := shaders.Compile(ctx, c.spec)
			if err != nil {
				return nil, err
			}
			bg, err := ctx.BindGroup(p, g.bind(g.probes[next].t), gpu.Binding{Buf: out, Offset: c.offset, Size: c.spec.OutBytes()})
			if err != nil {
				return nil, err
			}
			x, y, z := c.spec.Grid()
			ds = append(ds, gpu.Dispatch{Label: "probe " + g.probes[next].name, Kind: "probe", P: p, Group: bg, X: x, Y: y, Z: z})
			next++
		}
		if i < len(g.Dispatches) {
			ds = append(ds, d)
		}
	}
	if err := ctx.Write(g.Input, 0, gpu.Float32Bytes(input)); err != nil {
		return nil, err
	}
	r := ctx.NewRunner()
	if err := r.Run(ds); err != nil {
		return nil, err
	}
	if err := r.Drain(); err != nil {
		return nil, err
	}
	raw, err := ctx.Read(out, 0, total)
	if err != nil {
		return nil, err
	}
	norm, err := ctx.Read(g.featNorm, 0, g.featNorm.Size)
	if err != nil {
		return nil, err
	}
	var blocks []ProbeBlock
	var last ProbeBlock
	for i, p := range g.probes {
		c := copies[i]
		s := c.spec
		vals := floats(raw[c.offset : c.offset+s.OutBytes()])
		b := ProbeBlock{Name: p.name, C: s.C, D: s.D, H: s.H, W: s.NW, Plane: c.plane, Data: vals}
		if p.up {
			b = upsampleProbe(b, s.W0, s.W, c.plane)
		}
		blocks = append(blocks, b)
		last = b
	}
	blocks = append(blocks, g.headProbe(last, floats(norm)))
	return blocks, nil
}

func floats(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// upsampleTaps is upsample_add.wgsl's taps: output index o of a x2 upsampling (align_corners
// False) reads low indices a and b with weights wa and wb.
func upsampleTaps(o, n int) (a, b int, wa, wb float32) {
	k := o / 2
	if o%2 == 0 {
		return max(k-1, 0), k, 0.25, 0.75
	}
	return k, min(k+1, n-1), 0.75, 0.25
}

// upsampleProbe upsamples a probe of the 1x1x1 convolution's output (low planes w0 .. of a
// tensor lowW wide) as upsample_add.wgsl does, without the skip: the plane out (or, out < 0,
// the whole output).
func upsampleProbe(low ProbeBlock, w0, lowW, out int) ProbeBlock {
	D2, H2 := 2*low.D, 2*low.H
	xs := []int{out}
	if out < 0 {
		xs = make([]int, 2*lowW)
		for i := range xs {
			xs[i] = i
		}
	}
	up := ProbeBlock{Name: low.Name, C: low.C, D: D2, H: H2, W: len(xs), Plane: out}
	up.Data = make([]float32, low.C*D2*H2*len(xs))
	at := func(c, z, y, x int) float32 { return low.Data[((c*low.D+z)*low.H+y)*low.W+x-w0] }
	o := 0
	for c := 0; c < low.C; c++ {
		for z := 0; z < D2; z++ {
			za, zb, wza, wzb := upsampleTaps(z, low.D)
			for y := 0; y < H2; y++ {
				ya, yb, wya, wyb := upsampleTaps(y, low.H)
				for _, x := range xs {
					xa, xb, wxa, wxb := upsampleTaps(x, lowW)
					var r float32
					for _, zt := range [2]struct {
						i int
						w float32
					}{{za, wza}, {zb, wzb}} {
						for _, yt := range [2]struct {
							i int
							w float32
						}{{ya, wya}, {yb, wyb}} {
							// r += wz * wy * (wxa * low[xa] + wxb * low[xb]), in the shader's order
							r += zt.w * yt.w * (wxa*at(c, zt.i, yt.i, xa) + wxb*at(c, zt.i, yt.i, xb))
						}
					}
					up.Data[o] = r
					o++
				}
			}
		}
	}
	return up
}

// headProbe is conv_final on the probe of the last block: its GroupNorm (the per-channel scale
// and shift the GPU computed for the window), ReLU, and the 1x1x1 convolution with bias, in the
// head's order of additions.
func (g *GPUNet) headProbe(feat ProbeBlock, scaleShift []float32) ProbeBlock {
	n := g.net
	k, c := n.Final.Out, n.Final.In
	nv := feat.D * feat.H * feat.W
	out := ProbeBlock{Name: "conv_final", C: k, D: feat.D, H: feat.H, W: feat.W, Plane: feat.Plane, Data: make([]float32, k*nv)}
	f := make([]float32, c)
	for v := 0; v < nv; v++ {
		for ch := 0; ch < c; ch++ {
			x := feat.Data[ch*nv+v]*scaleShift[2*ch] + scaleShift[2*ch+1]
			f[ch] = max(x, 0)
		}
		for kk := 0; kk < k; kk++ {
			s := n.Final.B[kk]
			for ch := 0; ch < c; ch++ {
				s += n.Final.W[kk*c+ch] * f[ch]
			}
			out.Data[kk*nv+v] = s
		}
	}
	return out
}
