package volume

import (
	"fmt"
	"math"
)

// Story is the bundle's preprocessing of one CT step by step, for the page's storyboard: each
// step's grid and the middle slice of its last array axis (which orientation puts on the
// body's axial plane), and the intensity histograms before and after normalisation.
type Story struct {
	Steps []StoryStep
	// Histograms of the resampled HU and the normalised values, Bins bins each over [Lo, Hi].
	HU, Norm  Histogram
	NormStats NormStats
	Zeros     int // voxels exactly 0 after resampling (NormalizeIntensity leaves them at the mean)
}

// StoryStep is one step's grid and slice.
type StoryStep struct {
	Name    string
	Dims    [3]int
	Spacing [3]float64 // voxel size along each array axis, mm
	Codes   string     // the array axes' directions ("RAS" after orientation)
	Slice   []float32  // Dims[0] x Dims[1] values at the middle of the last axis, first axis fastest
}

// Histogram counts values in Bins equal bins over [Lo, Hi]; values outside go to the end bins.
type Histogram struct {
	Lo, Hi float64
	Counts []int
}

func histogram(d []float32, lo, hi float64, bins int) Histogram {
	h := Histogram{Lo: lo, Hi: hi, Counts: make([]int, bins)}
	for _, x := range d {
		b := int(math.Floor((float64(x) - lo) / (hi - lo) * float64(bins)))
		h.Counts[min(max(b, 0), bins-1)]++
	}
	return h
}

func middleSlice(v *Volume) []float32 {
	n := v.Dims[0] * v.Dims[1]
	k := v.Dims[2] / 2
	return append([]float32(nil), v.Data[k*n:(k+1)*n]...)
}

func voxelSizes(a [4][4]float64) [3]float64 {
	c := colNorms(a)
	return [3]float64{c[0], c[1], c[2]}
}

// Tell runs Preprocess's steps one by one on v (which it does not modify) and keeps what the
// storyboard shows: as read, reoriented to RAS, resampled to spacing mm, normalised. The last
// step's values are Preprocess's.
func Tell(v *Volume, spacing float64) (*Story, error) {
	if err := v.check(); err != nil {
		return nil, fmt.Errorf("preprocess: %w", err)
	}
	if err := v.CheckFinite(); err != nil {
		return nil, err
	}
	o, orient, err := Orient(v)
	if err != nil {
		return nil, err
	}
	r, si, err := ResampleSpacing(o, spacing)
	if err != nil {
		return nil, err
	}
	s := &Story{}
	add := func(name string, x *Volume, codes string) {
		s.Steps = append(s.Steps, StoryStep{Name: name, Dims: x.Dims, Spacing: voxelSizes(x.Affine), Codes: codes, Slice: middleSlice(x)})
	}
	add("as read", v, orient.Codes())
	add("reoriented to RAS", o, "RAS")
	add(fmt.Sprintf("resampled to %g mm", si.Pixdim), r, "RAS")
	for _, x := range r.Data {
		if x == 0 {
			s.Zeros++
		}
	}
	s.HU = histogram(r.Data, -1024, 2048, 128)
	n := &Volume{Dims: r.Dims, Affine: r.Affine, Data: r.Data} // r is ours: normalise in place
	s.NormStats = NormalizeScale(n)
	add("normalised to [-1, 1]", n, "RAS")
	s.Norm = histogram(n.Data, -1, 1, 128)
	return s, nil
}
