// Package volume reads and writes NIfTI volumes and reproduces the pre- and post-processing
// of the MONAI wholeBody_ct_segmentation bundle: load as float32, reorient to RAS, resample to
// an isotropic spacing (Spacingd, trilinear, float64, through torch's own arithmetic so that
// the same voxels come out exactly zero: gridsample.go), NormalizeIntensity(nonzero) +
// ScaleIntensity(-1, 1), and the nearest-neighbour inversion of a label map back onto the
// input grid (Invertd). The rules and tolerances are those of shared/golden/pipeline/README.md.
//
// Arrays are in NIfTI order: index = x + X*(y + Y*z), x fastest.
package volume

import (
	"fmt"
	"math"
)

// Volume is a 3-D float32 image with its voxel-to-world (RAS mm) affine.
type Volume struct {
	Dims   [3]int
	Affine [4][4]float64
	Data   []float32 // index x + X*(y + Y*z)
}

// NumVoxels returns X*Y*Z.
func (v *Volume) NumVoxels() int { return v.Dims[0] * v.Dims[1] * v.Dims[2] }

// Spacing returns the voxel sizes (column norms of the affine's 3x3 block), in mm.
func (v *Volume) Spacing() [3]float64 { return colNorms(v.Affine) }

// Index returns the linear index of voxel (x, y, z).
func (v *Volume) Index(x, y, z int) int { return x + v.Dims[0]*(y+v.Dims[1]*z) }

// Clone returns a deep copy.
func (v *Volume) Clone() *Volume {
	c := *v
	c.Data = append([]float32(nil), v.Data...)
	return &c
}

// check verifies that the volume is internally consistent before any processing.
func (v *Volume) check() error {
	if v == nil {
		return fmt.Errorf("nil volume")
	}
	n, err := voxelCount(v.Dims, math.MaxInt64)
	if err != nil {
		return err
	}
	if int64(len(v.Data)) != n {
		return fmt.Errorf("volume data has %d values, dims %v need %d", len(v.Data), v.Dims, n)
	}
	return checkAffine(v.Affine)
}

// voxelCount multiplies the dims, refusing non-positive dims and products above max.
func voxelCount(d [3]int, max int64) (int64, error) {
	n := int64(1)
	for i, x := range d {
		if x <= 0 {
			return 0, fmt.Errorf("dimension %d is %d: must be positive", i+1, x)
		}
		if int64(x) > max || n > max/int64(x) {
			return 0, fmt.Errorf("volume %dx%dx%d exceeds the limit of %d voxels", d[0], d[1], d[2], max)
		}
		n *= int64(x)
	}
	return n, nil
}

// CheckFinite refuses NaN and infinite voxels. MONAI would let them through the normalisation
// (the mean and range become NaN) into every window's logits, and the label map would be
// meaningless; naming the first bad voxel is more useful.
func (v *Volume) CheckFinite() error {
	for i, x := range v.Data {
		if math.Float32bits(x)&0x7f800000 == 0x7f800000 {
			what := "infinite"
			if x != x {
				what = "NaN"
			}
			nx, ny := v.Dims[0], v.Dims[1]
			return fmt.Errorf("input contains %s voxels (the first at x=%d y=%d z=%d); a CT must hold finite values",
				what, i%nx, i/nx%ny, i/(nx*ny))
		}
	}
	return nil
}
