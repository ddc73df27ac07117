package volume

import (
	"encoding/binary"
	"math"
)

// scaling reproduces the arithmetic of nibabel's apply_read_scaling followed by MONAI's cast to
// float32, so loaded values are bit-identical to what the bundle sees:
//   - slope 0 or non-finite: no scaling; (slope, inter) == (1, 0): no scaling either;
//   - otherwise arr*slope (skipped when slope == 1) then +inter (skipped when inter == 0), in
//     the dtype numpy promotes to: a NIfTI-1 header stores slope/inter as float32, so uint8,
//     int8, int16, uint16 and float32 data are scaled in float32, while 32/64-bit integers and
//     float64 data promote to float64; NIfTI-2 stores float64 scale factors, so everything is
//     scaled in float64. The result is then rounded to float32.
type scaling struct {
	apply    bool
	f32      bool
	s32, i32 float32
	s64, i64 float64
}

func newScaling(h *Header) scaling {
	s, i := h.SclSlope, h.SclInter
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) || (s == 1 && i == 0) {
		return scaling{}
	}
	sc := scaling{apply: true, s64: s, i64: i, s32: float32(s), i32: float32(i)}
	if h.Version == 1 {
		switch h.Datatype {
		case dtUint8, dtInt8, dtInt16, dtUint16, dtFloat32:
			sc.f32 = true
		}
	}
	return sc
}

func (sc scaling) from64(x float64) float32 {
	if sc.s64 != 1 {
		x = float64(x * sc.s64)
	}
	if sc.i64 != 0 {
		x = float64(x + sc.i64)
	}
	return float32(x)
}

func (sc scaling) from32(x float32) float32 {
	if sc.s32 != 1 {
		x = float32(x * sc.s32)
	}
	if sc.i32 != 0 {
		x = float32(x + sc.i32)
	}
	return x
}

// convert decodes len(dst) voxels of datatype dt from src. One loop per datatype keeps the
// type switch out of the per-voxel path.
func convert(dst []float32, src []byte, dt int, bo binary.ByteOrder, sc scaling) {
	n := len(dst)
	// f stores a value that is exact (or rounded once) in float64 and applies the scaling.
	f := func(i int, x float64) {
		switch {
		case !sc.apply:
			dst[i] = float32(x)
		case sc.f32:
			dst[i] = sc.from32(float32(x))
		default:
			dst[i] = sc.from64(x)
		}
	}
	switch dt {
	case dtUint8:
		for i := 0; i < n; i++ {
			f(i, float64(src[i]))
		}
	case dtInt8:
		for i := 0; i < n; i++ {
			f(i, float64(int8(src[i])))
		}
	case dtInt16:
		for i := 0; i < n; i++ {
			f(i, float64(int16(bo.Uint16(src[2*i:]))))
		}
	case dtUint16:
		for i := 0; i < n; i++ {
			f(i, float64(bo.Uint16(src[2*i:])))
		}
	case dtInt32:
		for i := 0; i < n; i++ {
			f(i, float64(int32(bo.Uint32(src[4*i:]))))
		}
	case dtUint32:
		for i := 0; i < n; i++ {
			f(i, float64(bo.Uint32(src[4*i:])))
		}
	case dtInt64:
		// Not via float64: int64 -> float32 must round once, as numpy's astype does.
		for i := 0; i < n; i++ {
			v := int64(bo.Uint64(src[8*i:]))
			if sc.apply {
				dst[i] = sc.from64(float64(v))
			} else {
				dst[i] = float32(v)
			}
		}
	case dtUint64:
		for i := 0; i < n; i++ {
			v := bo.Uint64(src[8*i:])
			if sc.apply {
				dst[i] = sc.from64(float64(v))
			} else {
				dst[i] = float32(v)
			}
		}
	case dtFloat32:
		for i := 0; i < n; i++ {
			x := math.Float32frombits(bo.Uint32(src[4*i:]))
			if sc.apply {
				if sc.f32 {
					dst[i] = sc.from32(x)
				} else {
					dst[i] = sc.from64(float64(x))
				}
			} else {
				dst[i] = x
			}
		}
	case dtFloat64:
		for i := 0; i < n; i++ {
			f(i, math.Float64frombits(bo.Uint64(src[8*i:])))
		}
	}
}
