package volume

import (
	"fmt"
	"math"
)

// Orientation records how a stored array was permuted/flipped to RAS (MONAI Orientationd with
// axcodes "RAS", i.e. nibabel io_orientation + apply_orientation). Stored axis a becomes RAS
// axis Axis[a], reversed when Flip[a]. No resampling is involved: an oblique rotation stays in
// the affine.
type Orientation struct {
	InDims    [3]int        // stored dims
	InAffine  [4][4]float64 // stored affine
	Axis      [3]int
	Flip      [3]bool
	OutDims   [3]int        // RAS-ordered dims
	OutAffine [4][4]float64 // affine of the RAS-ordered array
}

// IsIdentity reports whether the stored array is already in RAS axis order.
func (o Orientation) IsIdentity() bool {
	return o.Axis == [3]int{0, 1, 2} && o.Flip == [3]bool{}
}

// Codes returns the stored array's axis codes, e.g. "RAS" or "SPL".
func (o Orientation) Codes() string {
	pos, neg := "RAS", "LPI"
	b := make([]byte, 3)
	for a := 0; a < 3; a++ {
		if o.Flip[a] {
			b[a] = neg[o.Axis[a]]
		} else {
			b[a] = pos[o.Axis[a]]
		}
	}
	return string(b)
}

// ioOrientation is nibabel.orientations.io_orientation: for each input axis, the world axis it
// is closest to (after removing zooms and shears by a polar decomposition) and the direction,
// choosing axes greedily in input order and removing used world axes.
func ioOrientation(a [4][4]float64) (axis [3]int, flip [3]bool, err error) {
	z := colNorms(a)
	var rs [3][3]float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			if z[j] == 0 {
				return axis, flip, fmt.Errorf("affine column %d is zero", j)
			}
			rs[i][j] = a[i][j] / z[j]
		}
	}
	r, ok := polar3(rs)
	if !ok {
		return axis, flip, fmt.Errorf("affine is singular")
	}
	used := [3]bool{}
	for in := 0; in < 3; in++ {
		best, bv := -1, 0.0
		for out := 0; out < 3; out++ {
			if used[out] {
				continue
			}
			// np.argmax takes the first maximum.
			if v := math.Abs(r[out][in]); best < 0 || v > bv {
				best, bv = out, v
			}
		}
		if bv == 0 {
			return axis, flip, fmt.Errorf("cannot determine the orientation of axis %d", in)
		}
		axis[in] = best
		flip[in] = r[best][in] < 0
		used[best] = true
	}
	return axis, flip, nil
}

// planOrientation computes the orientation transform and the RAS-ordered dims and affine.
func planOrientation(dims [3]int, affine [4][4]float64) (Orientation, error) {
	o := Orientation{InDims: dims, InAffine: affine}
	if err := checkAffine(affine); err != nil {
		return o, err
	}
	var err error
	if o.Axis, o.Flip, err = ioOrientation(affine); err != nil {
		return o, fmt.Errorf("orientation: %w", err)
	}
	// m maps a RAS-ordered index j to the stored index i (nibabel inv_ornt_aff): i[a] =
	// j[Axis[a]], or n_a - 1 - j[Axis[a]] when flipped. The new affine is affine @ m.
	var m [4][4]float64
	m[3][3] = 1
	for a := 0; a < 3; a++ {
		o.OutDims[o.Axis[a]] = dims[a]
		if o.Flip[a] {
			m[a][o.Axis[a]] = -1
			m[a][3] = float64(dims[a] - 1)
		} else {
			m[a][o.Axis[a]] = 1
		}
	}
	o.OutAffine = mul4(affine, m)
	return o, nil
}

// strides returns, for the RAS-ordered view, the offset of voxel (0,0,0) in the stored array
// and the stored-array step of one voxel along each RAS axis (negative when flipped).
func (o Orientation) strides() (off int, st [3]int) {
	inSt := [3]int{1, o.InDims[0], o.InDims[0] * o.InDims[1]}
	for a := 0; a < 3; a++ {
		if o.Flip[a] {
			off += (o.InDims[a] - 1) * inSt[a]
			st[o.Axis[a]] = -inSt[a]
		} else {
			st[o.Axis[a]] = inSt[a]
		}
	}
	return off, st
}

// Orient returns v reordered to RAS axis order (MONAI Orientationd "RAS") and the transform.
// When v is already RAS-ordered the result shares v's data.
func Orient(v *Volume) (*Volume, Orientation, error) {
	if err := v.check(); err != nil {
		return nil, Orientation{}, fmt.Errorf("orient: %w", err)
	}
	o, err := planOrientation(v.Dims, v.Affine)
	if err != nil {
		return nil, o, err
	}
	out := &Volume{Dims: o.OutDims, Affine: o.OutAffine}
	if o.IsIdentity() {
		out.Data = v.Data
		return out, o, nil
	}
	out.Data = make([]float32, len(v.Data))
	permute(out.Data, v.Data, o)
	return out, o, nil
}

// permute copies stored data src into RAS-ordered dst.
func permute[T any](dst, src []T, o Orientation) {
	off, st := o.strides()
	d := o.OutDims
	i := 0
	for z := 0; z < d[2]; z++ {
		for y := 0; y < d[1]; y++ {
			p := off + y*st[1] + z*st[2]
			for x := 0; x < d[0]; x++ {
				dst[i] = src[p]
				p += st[0]
				i++
			}
		}
	}
}

// unpermute is the inverse of permute: RAS-ordered src back into stored order dst.
func unpermute[T any](dst, src []T, o Orientation) {
	off, st := o.strides()
	d := o.OutDims
	i := 0
	for z := 0; z < d[2]; z++ {
		for y := 0; y < d[1]; y++ {
			p := off + y*st[1] + z*st[2]
			for x := 0; x < d[0]; x++ {
				dst[p] = src[i]
				p += st[0]
				i++
			}
		}
	}
}

// Undo maps a RAS-ordered volume's data back to the stored axis order (float32).
func (o Orientation) Undo(data []float32) ([]float32, error) {
	if len(data) != o.InDims[0]*o.InDims[1]*o.InDims[2] {
		return nil, fmt.Errorf("undo orientation: %d values for dims %v", len(data), o.OutDims)
	}
	out := make([]float32, len(data))
	unpermute(out, data, o)
	return out, nil
}

// UndoLabels maps a RAS-ordered label map back to the stored axis order.
func (o Orientation) UndoLabels(l []uint8) ([]uint8, error) {
	if len(l) != o.InDims[0]*o.InDims[1]*o.InDims[2] {
		return nil, fmt.Errorf("undo orientation: %d labels for dims %v", len(l), o.OutDims)
	}
	out := make([]uint8, len(l))
	unpermute(out, l, o)
	return out, nil
}
