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

// TestToPreprocessed: the preprocessed voxel an input voxel maps to is the one whose label the
// inversion gives it (three label maps carrying x, y and z of the preprocessed grid), on a
// stored order that needs a permutation and flips; NormalizedHU is Preprocess's scaling.
func TestToPreprocessed(t *testing.T) {
	v := storePIR(loadCTsm(t))
	pre, inv, err := Preprocess(v, 1.5)
	if err != nil {
		t.Fatal(err)
	}
	pd := pre.Dims
	var maps [3][]uint8
	for a := range 3 {
		m := make([]uint8, pd[0]*pd[1]*pd[2])
		for z := 0; z < pd[2]; z++ {
			for y := 0; y < pd[1]; y++ {
				for x := 0; x < pd[0]; x++ {
					m[x+pd[0]*(y+pd[1]*z)] = uint8([3]int{x, y, z}[a] % 256)
				}
			}
		}
		if maps[a], err = inv.Invert(m); err != nil {
			t.Fatal(err)
		}
	}
	d := v.Dims
	for i := 0; i < len(v.Data); i += 997 {
		ijk := [3]int{i % d[0], (i / d[0]) % d[1], i / (d[0] * d[1])}
		p, err := inv.ToPreprocessed(ijk)
		if err != nil {
			t.Fatal(err)
		}
		for a := range 3 {
			if uint8(p[a]%256) != maps[a][i] {
				t.Fatalf("input voxel %v maps to %v, the inversion takes axis %d = %d", ijk, p, a, maps[a][i])
			}
		}
	}
	if _, err := inv.ToPreprocessed([3]int{d[0], 0, 0}); err == nil {
		t.Error("a voxel outside the input was mapped")
	}
	// every resampled voxel's input value is NormalizedHU of its HU, the exact zeros included
	s, err := Tell(v, 1.5)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Steps[2].Slice
	n := s.Steps[3].Slice
	zeros := 0
	for i := range r {
		if r[i] == 0 {
			zeros++
		}
		if inv.NormalizedHU(r[i]) != n[i] {
			t.Fatalf("NormalizedHU(%v) = %v, Preprocess gave %v", r[i], inv.NormalizedHU(r[i]), n[i])
		}
	}
	if zeros == 0 {
		t.Error("no exact zero on the slice: NormalizedHU(0) was not checked")
	}
}
