package shaders

import (
	"fmt"

	"ctseg/gpu"
)

// Accumulator describes the ring of z-slots the blend and head kernels share: each slot holds
// C feature channels and the weight sum for one z-slice of the volume, [C+1][HV][WV] in f32,
// or with F16 the channels as C/2 planes of packed pairs followed by the f32 weight sum
// ([C/2+1][HV][WV] words), at a stride rounded up to 64 words so any slot can start a binding
// (256-byte offset alignment).
type Accumulator struct {
	C      int
	HV, WV int
	F16    bool
}

// SlotWords is the stride of one z-slot in 4-byte words.
func (a Accumulator) SlotWords() int {
	planes := a.C + 1
	if a.F16 {
		planes = a.C/2 + 1
	}
	n := planes * a.HV * a.WV
	return (n + 63) &^ 63
}

// WeightPlane is the word offset of the weight-sum plane within a slot.
func (a Accumulator) WeightPlane() int {
	if a.F16 {
		return a.C / 2 * a.HV * a.WV
	}
	return a.C * a.HV * a.WV
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
		"AccF16": b.Acc.F16, "WPlane": b.Acc.WeightPlane(),
	})
}

// Head specialises head.wgsl for a run of NZ slots.
type Head struct {
	Acc    Accumulator
	K, NZ  int
	Argmax bool
}

func (h *Head) nv() int { return h.NZ * h.Acc.HV * h.Acc.WV }

// invocations: one per voxel for logits, one per four voxels (a word of labels) for argmax.
func (h *Head) invocations() int {
	if h.Argmax {
		return (h.nv() + 3) / 4
	}
	return h.nv()
}

// HeadOutBytes is the head's output for nv voxels: a byte per voxel, in whole words, for
// argmax; k float32 logits per voxel otherwise.
func HeadOutBytes(nv, k int, argmax bool) uint64 {
	if argmax {
		return uint64((nv + 3) / 4 * 4)
	}
	return uint64(4 * k * nv)
}
func (h *Head) Name() string {
	mode := "logits"
	if h.Argmax {
		mode = "argmax"
	}
	return fmt.Sprintf("head-%s %d->%d %dx%dx%d", mode, h.Acc.C, h.K, h.NZ, h.Acc.HV, h.Acc.WV)
}
func (h *Head) Kind() string { return "head" }
func (h *Head) Bindings() []gpu.Access {
	if HeadUniform(h.Acc.C, h.K) {
		return []gpu.Access{gpu.ReadOnly, gpu.Uniform, gpu.Uniform, gpu.ReadWrite}
	}
	return []gpu.Access{gpu.ReadOnly, gpu.ReadOnly, gpu.ReadOnly, gpu.ReadWrite}
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
func (h *Head) OutBytes() uint64 { return HeadOutBytes(h.nv(), h.K, h.Argmax) }

func (h *Head) Source() (string, error) {
	if h.Argmax && h.K > 256 {
		return "", fmt.Errorf("head: %d classes do not fit byte labels", h.K)
	}
	_, _, gx := grid1D(h.invocations())
	return Render("head.wgsl", map[string]any{
		"C": h.Acc.C, "K": h.K, "HWV": h.Acc.HV * h.Acc.WV, "Slot": h.Acc.SlotWords(), "NV": h.nv(),
		"AccF16": h.Acc.F16, "WPlane": h.Acc.WeightPlane(),
		"NZ": h.NZ, "GX": gx, "Argmax": h.Argmax,
		"Uniform": HeadUniform(h.Acc.C, h.K), "WQ": (h.Acc.C*h.K + 3) / 4, "BQ": (h.K + 3) / 4,
	})
}

// Zero specialises zero.wgsl for n words.
type Zero struct{ N int }

func (z *Zero) Name() string           { return fmt.Sprintf("zero %d", z.N) }
func (z *Zero) Kind() string           { return "zero" }
func (z *Zero) Bindings() []gpu.Access { return []gpu.Access{gpu.ReadWrite} }
func (z *Zero) Grid() (x, y, zz uint32) {
	x, y, _ = grid1D(z.N)
	return x, y, 1
}
func (z *Zero) Source() (string, error) {
	_, _, gx := grid1D(z.N)
	return Render("zero.wgsl", map[string]any{"N": z.N, "GX": gx})
}
