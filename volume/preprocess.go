package volume

import (
	"fmt"
	"math"
)

// Inversion holds what is needed to map a label map on the preprocessed grid back onto the
// input grid (MONAI Invertd with nearest_interp=True): the orientation and spacing records.
type Inversion struct {
	Orientation Orientation
	Spacing     SpacingInfo
	// Norm is the intensity scaling Preprocess applied (zero for InversionFor): what a value
	// in HU becomes in the network's input (NormalizedHU).
	Norm NormStats
}

// NormalizedHU is the network's input value of a voxel of hu HU under inv's scaling
// (Preprocess's NormalizeIntensity(nonzero) and ScaleIntensity): an exact 0 is what the CT's
// own exact zeros become (NormalizeIntensity leaves them at 0, i.e. at the mean).
func (inv *Inversion) NormalizedHU(hu float32) float32 {
	n := inv.Norm
	span := n.MaxN - n.MinN
	switch {
	case span == 0:
		return 0
	case hu == 0:
		return float32(2*(0-n.MinN)/span - 1)
	}
	return float32(2*((float64(hu)-n.Mean)/n.Std-n.MinN)/span - 1)
}

// ToPreprocessed is the preprocessed voxel an input voxel (index of the stored array) takes
// its label from: the inversion's nearest neighbour (see Invert).
func (inv *Inversion) ToPreprocessed(ijk [3]int) ([3]int, error) {
	o := inv.Orientation
	for a := range 3 {
		if ijk[a] < 0 || ijk[a] >= o.InDims[a] {
			return [3]int{}, fmt.Errorf("voxel %v is outside the %v input", ijk, o.InDims)
		}
	}
	// the stored index in RAS order: stored axis a is RAS axis Axis[a], reversed when Flip[a]
	var ras [3]int
	for a := range 3 {
		x := ijk[a]
		if o.Flip[a] {
			x = o.InDims[a] - 1 - x
		}
		ras[o.Axis[a]] = x
	}
	if !inv.Spacing.Resampled {
		return ras, nil
	}
	m, err := solve4(inv.Spacing.OutAffine, o.OutAffine)
	if err != nil {
		return [3]int{}, fmt.Errorf("preprocessed affine is singular")
	}
	g := newTorchGrid(m, view{dims: inv.Spacing.OutDims, st: [3]int{1, 1, 1}}, o.OutDims)
	zy := g.rowTerms(ras[1], ras[2])
	var out [3]int
	for a := range 3 {
		out[a] = int(math.Round(g.coord(a, ras[0], zy[a])))
	}
	return out, nil
}

// OrigDims and OrigAffine are the input (stored) grid the inversion maps back to.
func (inv *Inversion) OrigDims() [3]int                  { return inv.Orientation.InDims }
func (inv *Inversion) OrigAffine() [4][4]float64         { return inv.Orientation.InAffine }
func (inv *Inversion) PreprocessedDims() [3]int          { return inv.Spacing.OutDims }
func (inv *Inversion) PreprocessedAffine() [4][4]float64 { return inv.Spacing.OutAffine }

// Preprocess runs the bundle's inference preprocessing on a loaded volume: Orientationd RAS,
// Spacingd(p, p, p) and NormalizeIntensity(nonzero) + ScaleIntensity(-1, 1). The result is in
// x-fastest order with its affine. v is not modified. Peak extra memory is the output: the
// reorientation is folded into the resampling (read through a permuted view of v's data).
func Preprocess(v *Volume, spacing float64) (*Volume, *Inversion, error) {
	if err := v.check(); err != nil {
		return nil, nil, fmt.Errorf("preprocess: %w", err)
	}
	if err := v.CheckFinite(); err != nil {
		return nil, nil, err
	}
	inv, err := InversionForGrid(v.Dims, v.Affine, spacing)
	if err != nil {
		return nil, nil, err
	}
	off, st := inv.Orientation.strides()
	src := view{data: v.Data, off: off, st: st, dims: inv.Orientation.OutDims}
	out := resampleView(src, inv.Spacing)
	inv.Norm = NormalizeScale(out)
	return out, inv, nil
}

// InversionFor rebuilds the inversion of Preprocess from the reference image's header alone
// (the intensities are not needed), e.g. for `ctseg invert --labels L --reference CT`.
func InversionFor(ref *Header, spacing float64) (*Inversion, error) {
	if ref == nil {
		return nil, fmt.Errorf("inversion: nil reference header")
	}
	return InversionForGrid(ref.Dims, ref.Affine, spacing)
}

// InversionForGrid is InversionFor for an explicit grid (dims and affine of the stored input).
func InversionForGrid(dims [3]int, affine [4][4]float64, spacing float64) (*Inversion, error) {
	if _, err := voxelCount(dims, math.MaxInt64); err != nil {
		return nil, fmt.Errorf("inversion: %w", err)
	}
	o, err := planOrientation(dims, affine)
	if err != nil {
		return nil, fmt.Errorf("preprocess: %w", err)
	}
	si, err := planSpacing(o.OutDims, o.OutAffine, spacing)
	if err != nil {
		return nil, fmt.Errorf("preprocess: %w", err)
	}
	return &Inversion{Orientation: o, Spacing: si}, nil
}

// Invert maps a label map on the preprocessed grid (x-fastest, PreprocessedDims) back to the
// input grid and axis order as MONAI's Invertd(nearest_interp=True) does: the inverse Spacingd
// resamples the map with grid_sample's nearest mode at solve(A_pre, A_ras) @ j (j the input
// voxel's RAS-ordered index) through the same torch arithmetic as the forward resampling
// (gridsample.go), so a source coordinate that is k + 0.5 in exact arithmetic rounds to the
// side MONAI's round-off puts it on; then the inverse Orientationd restores the stored order.
func (inv *Inversion) Invert(labels []uint8) ([]uint8, error) {
	pd := inv.Spacing.OutDims
	if len(labels) != pd[0]*pd[1]*pd[2] {
		return nil, fmt.Errorf("invert: %d labels, the preprocessed grid %dx%dx%d has %d voxels", len(labels), pd[0], pd[1], pd[2], pd[0]*pd[1]*pd[2])
	}
	o := inv.Orientation
	out := make([]uint8, o.InDims[0]*o.InDims[1]*o.InDims[2])
	if !inv.Spacing.Resampled {
		unpermute(out, labels, o)
		return out, nil
	}
	m, err := solve4(inv.Spacing.OutAffine, o.OutAffine)
	if err != nil {
		return nil, fmt.Errorf("invert: preprocessed affine is singular")
	}
	src := view{dims: pd, st: [3]int{1, pd[0], pd[0] * pd[1]}}
	off, st := o.strides()
	newTorchGrid(m, src, o.OutDims).sampleNearest(o.OutDims, off, st, func(p, s int) { out[p] = labels[s] })
	return out, nil
}
