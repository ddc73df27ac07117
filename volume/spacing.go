package volume

import (
	"fmt"
	"math"
)

// affineTol is MONAI's AFFINE_TOL, used for the no-op test and the origin choice.
const (
	affineTol      = 1e-3
	originCornerTo = 1e-8 // np.allclose(min_corner, 0) with its default atol
)

// SpacingInfo describes one Spacingd step (MONAI Spacing, diagonal=False, bilinear, border
// padding, float64): the input (RAS-ordered) grid, the output grid and the voxel map between.
type SpacingInfo struct {
	Pixdim    float64
	InDims    [3]int
	InAffine  [4][4]float64
	OutDims   [3]int
	OutAffine [4][4]float64
	// VoxelMap maps an output voxel index to the input voxel coordinate it samples
	// (solve(InAffine, dst affine)); identity-like when Resampled is false.
	VoxelMap [4][4]float64
	// Resampled is false when MONAI's short cut applies (affine unchanged within 1e-3 and same
	// shape, or a voxel map within 1e-3 of the identity): the data are only cast to float32.
	Resampled bool
	// Centered is true when no input corner sat at the smallest output offsets and the output
	// grid was centred on the input grid instead.
	Centered bool
}

// planSpacing reproduces MONAI Spacing.__call__ up to the resampling: zoom_affine with
// diagonal=False, compute_shape_offset, then SpatialResample's xform and no-op test.
func planSpacing(dims [3]int, affine [4][4]float64, p float64) (SpacingInfo, error) {
	si := SpacingInfo{Pixdim: p, InDims: dims, InAffine: affine}
	if !(p > 0) || math.IsInf(p, 0) {
		return si, fmt.Errorf("spacing %v mm: must be a positive number", p)
	}
	if err := checkAffine(affine); err != nil {
		return si, fmt.Errorf("spacing: %w", err)
	}
	// zoom_affine: rzs = B; zs = cholesky(B^T B)^T; rotation = B @ inv(zs);
	// out 3x3 = rotation @ diag(sign(diag(zs)) * p). diag(zs) > 0 from Cholesky.
	b := block3(affine)
	l, err := cholesky3(mul3(transpose3(b), b))
	if err != nil {
		return si, fmt.Errorf("spacing: affine is singular: %w", err)
	}
	rot := mul3(b, invUpper3(transpose3(l)))
	out0 := identity4()
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			out0[i][j] = float64(rot[i][j] * p)
		}
	}

	// compute_shape_offset(scale_extent=False): the 8 corner voxel centres mapped by
	// solve(out0, in_affine); shape = round_half_even(ptp + 1).
	x, err := solve4(out0, affine)
	if err != nil {
		return si, fmt.Errorf("spacing: output affine is singular")
	}
	var corners [8][4]float64 // meshgrid "ij" order: x slowest
	var outC [8][3]float64
	for c := 0; c < 8; c++ {
		corners[c] = [4]float64{0, 0, 0, 1}
		if c&4 != 0 {
			corners[c][0] = float64(dims[0] - 1)
		}
		if c&2 != 0 {
			corners[c][1] = float64(dims[1] - 1)
		}
		if c&1 != 0 {
			corners[c][2] = float64(dims[2] - 1)
		}
		for i := 0; i < 3; i++ {
			s := 0.0
			for k := 0; k < 4; k++ {
				s += float64(x[i][k] * corners[c][k])
			}
			outC[c][i] = s
		}
	}
	var outShape [3]float64
	for i := 0; i < 3; i++ {
		lo, hi := outC[0][i], outC[0][i]
		for c := 1; c < 8; c++ {
			lo, hi = math.Min(lo, outC[c][i]), math.Max(hi, outC[c][i])
		}
		outShape[i] = math.RoundToEven(hi - lo + 1)
		if outShape[i] < 1 || outShape[i] > math.MaxInt32 {
			return si, fmt.Errorf("spacing: output dimension %d would be %v", i, outShape[i])
		}
		si.OutDims[i] = int(outShape[i])
	}
	// A plausible-looking header with absurd voxel sizes (1000 mm) would otherwise ask for a
	// grid of 10^11 voxels here, after the reader's own cap was passed.
	if _, err := voxelCount(si.OutDims, DefaultMaxVoxels); err != nil {
		return si, fmt.Errorf("spacing: the %v mm grid would be %dx%dx%d voxels, over the limit of %d (check the header's voxel size)",
			p, si.OutDims[0], si.OutDims[1], si.OutDims[2], DefaultMaxVoxels)
	}
	// Origin: the first corner whose offsets to every other corner are all >= 0 (within
	// 1e-8) keeps its world position; otherwise the output grid is centred on the input one.
	found := false
	var offset [3]float64
	for c := 0; c < 8 && !found; c++ {
		ok := true
		for i := 0; i < 3 && ok; i++ {
			m := math.Inf(1)
			for d := 0; d < 8; d++ {
				m = math.Min(m, outC[d][i]-outC[c][i])
			}
			ok = math.Abs(m) <= originCornerTo
		}
		if ok {
			found = true
			offset = apply4(affine, [3]float64{corners[c][0], corners[c][1], corners[c][2]})
		}
	}
	if !found {
		si.Centered = true
		for i := 0; i < 3; i++ {
			var a, o float64
			for k := 0; k < 3; k++ {
				a += float64(affine[i][k] * (float64(dims[k]) / 2))
				o += float64(out0[i][k] * (outShape[k] / 2))
			}
			offset[i] = a + affine[i][3] - o
		}
	}
	dst := out0
	dst[0][3], dst[1][3], dst[2][3] = offset[0], offset[1], offset[2]

	// SpatialResample: xform = solve(src, dst); the recorded affine is src @ xform.
	if si.VoxelMap, err = solve4(affine, dst); err != nil {
		return si, fmt.Errorf("spacing: input affine is singular")
	}
	si.OutAffine = mul4(affine, si.VoxelMap)
	unchanged := (allClose(affine, dst) && si.OutDims == dims) || allClose(si.VoxelMap, identity4())
	if unchanged {
		// MONAI returns the data untouched; its shape stays the input's.
		si.OutDims = dims
	}
	si.Resampled = !unchanged
	return si, nil
}

// allClose is torch/numpy allclose(a, b, rtol=1e-5, atol=AFFINE_TOL).
func allClose(a, b [4][4]float64) bool {
	for i := 0; i < 4; i++ {
		for j := 0; j < 4; j++ {
			if !(math.Abs(a[i][j]-b[i][j]) <= affineTol+1e-5*math.Abs(b[i][j])) {
				return false
			}
		}
	}
	return true
}

// ResampleSpacing resamples a RAS-ordered volume to p x p x p mm exactly as MONAI Spacingd
// (see planSpacing): trilinear interpolation in float64 with border clamping, at the sample
// positions and with the sums torch computes (gridsample.go). When the short cut applies the
// result is a copy of v's data with the new affine.
func ResampleSpacing(v *Volume, p float64) (*Volume, SpacingInfo, error) {
	if err := v.check(); err != nil {
		return nil, SpacingInfo{}, fmt.Errorf("resample: %w", err)
	}
	if err := v.CheckFinite(); err != nil {
		return nil, SpacingInfo{}, err
	}
	si, err := planSpacing(v.Dims, v.Affine, p)
	if err != nil {
		return nil, si, err
	}
	src := view{data: v.Data, dims: v.Dims, st: [3]int{1, v.Dims[0], v.Dims[0] * v.Dims[1]}}
	return resampleView(src, si), si, nil
}

// resampleView produces the Spacingd output from a (possibly permuted) view of the input.
func resampleView(src view, si SpacingInfo) *Volume {
	out := &Volume{Dims: si.OutDims, Affine: si.OutAffine}
	n := si.OutDims[0] * si.OutDims[1] * si.OutDims[2]
	out.Data = make([]float32, n)
	if !si.Resampled {
		src.copyTo(out.Data)
		return out
	}
	newTorchGrid(si.VoxelMap, src, si.OutDims).sample(out, src)
	return out
}
