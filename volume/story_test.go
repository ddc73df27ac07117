package volume

import (
	"slices"
	"testing"
)

// TestTell: the storyboard's steps are Preprocess's: the last slice equals the same slice of
// Preprocess's output, the grids follow orientation and resampling, the histograms count
// every voxel.
func TestTell(t *testing.T) {
	v := storePIR(loadCTsm(t)) // stored P, I, R: the steps must reorient
	s, err := Tell(v, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Steps) != 4 || s.Steps[0].Codes != "PIR" || s.Steps[1].Codes != "RAS" || s.Steps[0].Dims != v.Dims {
		t.Fatalf("steps %v %v %v", len(s.Steps), s.Steps[0].Codes, s.Steps[0].Dims)
	}
	pre, _, err := Preprocess(v, 3)
	if err != nil {
		t.Fatal(err)
	}
	last := s.Steps[3]
	if last.Dims != pre.Dims {
		t.Fatalf("normalised dims %v, Preprocess %v", last.Dims, pre.Dims)
	}
	n := pre.Dims[0] * pre.Dims[1]
	k := pre.Dims[2] / 2
	if !slices.Equal(last.Slice, pre.Data[k*n:(k+1)*n]) {
		t.Error("the normalised slice is not Preprocess's")
	}
	total := func(h Histogram) (c int) {
		for _, x := range h.Counts {
			c += x
		}
		return
	}
	if total(s.HU) != len(pre.Data) || total(s.Norm) != len(pre.Data) {
		t.Errorf("histograms count %d and %d voxels of %d", total(s.HU), total(s.Norm), len(pre.Data))
	}
	if len(last.Slice) != n || s.Steps[2].Spacing[0] < 2.999 || s.Steps[2].Spacing[0] > 3.001 {
		t.Errorf("resampled spacing %v", s.Steps[2].Spacing)
	}
}
