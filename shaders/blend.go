package shaders

import (
	"fmt"

	"ctseg/gpu"
)

// Accumulator describes the ring of z-slots the blend and head kernels share: each slot holds
// the C weighted feature channels of one z-slice of the volume, [C][HV][WV] in f32, or with
// F16 as C/2 planes of packed pairs ([C/2][HV][WV] words), at a stride rounded up to 64 words
// so any slot can start a binding (256-byte offset alignment). The weight sum is not stored:
// the head recomputes it (see Head).
type Accumulator struct {
	C      int
	HV, WV int
	F16    bool
}

// SlotWords is the stride of one z-slot in 4-byte words.
func (a Accumulator) SlotWords() int {
	planes := a.C
	if a.F16 {
		planes = a.C / 2
	}
	n := planes * a.HV * a.WV
	return (n + 63) &^ 63
}

// Blend specialises blend.wgsl for one window size and ring axis.
type Blend struct {
	Acc        Accumulator
	RD, RH, RW int // window size
	Axis       int // the ring's axis (0 D, 1 H, 2 W); the accumulator's plane is the other two
	F16        bool
}

// PlaneAxes are the two axes other than the ring's axis, in order.
func PlaneAxes(axis int) (int, int) {
	switch axis {
	case 0:
		return 1, 2
	case 1:
		return 0, 2
	}
	return 0, 1
}

func (b *Blend) Name() string {
	return fmt.Sprintf("blend %d %dx%dx%d into %dx%d", b.Acc.C, b.RD, b.RH, b.RW, b.Acc.HV, b.Acc.WV)
}
func (b *Blend) Kind() string { return "blend" }
func (b *Blend) Bindings() []gpu.Access {
	return []gpu.Access{gpu.ReadOnly, gpu.ReadOnly, gpu.ReadOnly, gpu.ReadWrite, gpu.Uniform}
}

func (b *Blend) roi() [3]int { return [3]int{b.RD, b.RH, b.RW} }

// Grid for a run of nz slices.
func (b *Blend) Grid(nz int) (x, y, z uint32) {
	pb, pc := PlaneAxes(b.Axis)
	r := b.roi()
	return uint32(ceilDiv(r[pb]*r[pc], 256)), uint32(nz), 1
}

func (b *Blend) FLOPs(nz int) float64 {
	pb, pc := PlaneAxes(b.Axis)
	r := b.roi()
	return 4 * float64(b.Acc.C*r[pb]*r[pc]*nz)
}

func (b *Blend) Source() (string, error) {
	if b.Acc.C%2 != 0 {
		return "", fmt.Errorf("blend: %d channels must be even", b.Acc.C)
	}
	r := b.roi()
	strides := [3]int{b.RH * b.RW, b.RW, 1}
	pb, pc := PlaneAxes(b.Axis)
	return Render("blend.wgsl", map[string]any{
		"C": b.Acc.C, "CP": b.Acc.C / 2, "RB": r[pb], "RC": r[pc], "RPlane": b.RD * b.RH * b.RW,
		"SA": strides[b.Axis], "SB": strides[pb], "SC": strides[pc], "Axis": b.Axis,
		"HV": b.Acc.HV, "WV": b.Acc.WV, "HWV": b.Acc.HV * b.Acc.WV, "Slot": b.Acc.SlotWords(), "F16": b.F16,
		"AccF16": b.Acc.F16,
	})
}

// Head specialises head.wgsl for the runs of slots of one sliding-window pass. The WGSL does
// not depend on the run (its first slice and voxel count come in HeadParams), so one pipeline
// serves the pass.
//
// The features are divided by the sum of the importance weights of the windows covering the
// voxel. Rather than accumulating that sum in a plane of every slot (32 MB for 287x287x397 at
// 1.5 mm), the head adds up the same weights in the order the windows were blended, which
// gives the same float32 sum bit for bit: windows run in rows along the ring's axis (start
// ascending), and within a row in order of their starts along the plane's axes, the first
// axis outermost. Cover lists which windows cover each coordinate of each axis.
type Head struct {
	Acc    Accumulator
	K, NZ  int // classes; slices in the run (for the grid and output size only)
	Argmax bool
	// Confidence (with Argmax) also writes each voxel's p1 and p2 and runner-up class (see
	// head.wgsl and HeadOutBytes).
	Confidence bool
	ROI        [3]int // window size, [D][H][W]
	Axis       int    // the ring's axis
	Cover      Cover
}

// Cover is the layout of the head's cover table ([]uint32): for each of the axes (ring axis,
// then the plane's two), at Pairs[a], a pair (first window index, count) per coordinate of the
// volume along that axis; at Bases[a], per window start along that axis, PadBefore - start as
// an int32, so a voxel's coordinate in the window is its volume coordinate plus that.
type Cover struct {
	Pairs, Bases [3]int
}

// HeadParams are the run-dependent values of a head dispatch (a 16-byte uniform).
func HeadParams(z0, nv int) []uint32 { return []uint32{uint32(z0), uint32(nv), 0, 0} }

func (h *Head) nv() int { return h.NZ * h.Acc.HV * h.Acc.WV }

// invocations: one per voxel for logits, one per four voxels (a word of labels) for argmax.
func (h *Head) invocations() int {
	if h.Argmax {
		return (h.nv() + 3) / 4
	}
	return h.nv()
}

// HeadOutBytes is the head's output for nv voxels: a byte per voxel, in whole words, for
// argmax, and with confidence then a word per voxel (p1 and p2, unorm16 each) and the
// runner-up's byte per voxel, in whole words; k float32 logits per voxel otherwise.
func HeadOutBytes(nv, k int, argmax, confidence bool) uint64 {
	labels := uint64((nv + 3) / 4 * 4)
	switch {
	case argmax && confidence:
		return 2*labels + uint64(4*nv)
	case argmax:
		return labels
	}
	return uint64(4 * k * nv)
}
func (h *Head) Name() string {
	mode := "logits"
	if h.Argmax {
		mode = "argmax"
		if h.Confidence {
			mode = "argmax+confidence"
		}
	}
	return fmt.Sprintf("head-%s %d->%d slices of %dx%d", mode, h.Acc.C, h.K, h.Acc.HV, h.Acc.WV)
}
func (h *Head) Kind() string { return "head" }

// Bindings: accumulator slots, weights, bias, output, importance map, cover table, params.
func (h *Head) Bindings() []gpu.Access {
	p := gpu.ReadOnly
	if HeadUniform(h.Acc.C, h.K) {
		p = gpu.Uniform
	}
	return []gpu.Access{gpu.ReadOnly, p, p, gpu.ReadWrite, gpu.ReadOnly, gpu.ReadOnly, gpu.Uniform}
}

// maxUniformBinding is WebGPU's default maxUniformBufferBindingSize, which every device
// grants.
const maxUniformBinding = 64 << 10

// HeadUniform says the head takes its weights ([K][C] float32) and bias ([K]) as uniform
// buffers (each padded to 16 bytes, see HeadParamBytes): whenever the weights fit a uniform
// binding, as the bundle's 105x32 (13 KB) do.
func HeadUniform(c, k int) bool { return 4*c*k <= maxUniformBinding }

// HeadParamBytes is the size of the head's weight and bias buffers.
func HeadParamBytes(c, k int) (w, b uint64) {
	w, b = uint64(4*c*k), uint64(4*k)
	if HeadUniform(c, k) {
		w, b = (w+15)&^15, (b+15)&^15
	}
	return w, b
}
func (h *Head) Grid() (x, y, z uint32) {
	x, y, _ = grid1D(h.invocations())
	return x, y, 1
}
func (h *Head) FLOPs() float64 { return 2 * float64(h.Acc.C*h.K*h.nv()) }

// OutBytes is the size of the head's output for the run.
func (h *Head) OutBytes() uint64 { return HeadOutBytes(h.nv(), h.K, h.Argmax, h.Confidence) }

func (h *Head) Source() (string, error) {
	if h.Argmax && h.K > 256 {
		return "", fmt.Errorf("head: %d classes do not fit byte labels", h.K)
	}
	if h.Confidence && !h.Argmax {
		return "", fmt.Errorf("head: confidence comes with the argmax")
	}
	strides := [3]int{h.ROI[1] * h.ROI[2], h.ROI[2], 1}
	pb, pc := PlaneAxes(h.Axis)
	return Render("head.wgsl", map[string]any{
		"C": h.Acc.C, "K": h.K, "HWV": h.Acc.HV * h.Acc.WV, "WV": h.Acc.WV, "Slot": h.Acc.SlotWords(),
		"AccF16": h.Acc.F16, "Argmax": h.Argmax, "Confidence": h.Confidence,
		"RSA": strides[h.Axis], "RSB": strides[pb], "RSC": strides[pc],
		"PA": h.Cover.Pairs[0], "PB": h.Cover.Pairs[1], "PC": h.Cover.Pairs[2],
		"BA": h.Cover.Bases[0], "BB": h.Cover.Bases[1], "BC": h.Cover.Bases[2],
		"Uniform": HeadUniform(h.Acc.C, h.K), "WQ": (h.Acc.C*h.K + 3) / 4, "BQ": (h.K + 3) / 4,
	})
}

// Zero clears a bound range of N words with zero.wgsl, whose source does not depend on N.
type Zero struct{ N int }

func (z *Zero) Name() string           { return "zero" }
func (z *Zero) Kind() string           { return "zero" }
func (z *Zero) Bindings() []gpu.Access { return []gpu.Access{gpu.ReadWrite} }
func (z *Zero) Grid() (x, y, zz uint32) {
	x, y, _ = grid1D(z.N)
	return x, y, 1
}
func (z *Zero) Source() (string, error) { return Render("zero.wgsl", nil) }
