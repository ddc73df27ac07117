package model

import "testing"

// TestWeightSum: with constant blending the sum is the number of windows covering the voxel
// (counted here directly from the starts); with gaussian blending it is positive everywhere.
func TestWeightSum(t *testing.T) {
	opt := DefaultWindowOptions()
	opt.ROI = [3]int{16, 16, 16}
	opt.Mode = Constant
	p, err := PlanWindows(37, 20, 45, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []int{0, 11, 12, 44} {
		got, err := p.WeightSum(w)
		if err != nil {
			t.Fatal(err)
		}
		for d := 0; d < 37; d++ {
			for h := 0; h < 20; h++ {
				n := 0
				for _, st := range p.Windows() {
					if d+p.PadBefore[0] >= st[0] && d+p.PadBefore[0] < st[0]+16 && h+p.PadBefore[1] >= st[1] && h+p.PadBefore[1] < st[1]+16 &&
						w+p.PadBefore[2] >= st[2] && w+p.PadBefore[2] < st[2]+16 {
						n++
					}
				}
				if got[d+37*h] != float32(n) {
					t.Fatalf("slice %d voxel (%d, %d): %v, %d windows cover it", w, d, h, got[d+37*h], n)
				}
			}
		}
	}
	opt.Mode = Gaussian
	g, _ := PlanWindows(37, 20, 45, opt)
	s, _ := g.WeightSum(7)
	for i, x := range s {
		if !(x > 0) {
			t.Fatalf("gaussian weight sum %v at %d", x, i)
		}
	}
	if _, err := g.WeightSum(45); err == nil {
		t.Error("a slice outside the image was accepted")
	}
}
