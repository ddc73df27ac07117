package model

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// The ring-based CPU path must give exactly the labels of blending the whole volume's
// features and then applying the head: the same windows, additions and divisions in the same
// order. Sizes below, above and across the window, padding, both blend modes, several
// overlaps (so slots are reused several times).
func TestSlidingWindowLabelsEqualsWholeVolume(t *testing.T) {
	n := randomNet(t, 8, 7, 5)
	cases := []struct {
		size    [3]int
		overlap float64
		mode    BlendMode
	}{
		{[3]int{45, 20, 23}, 0.25, Gaussian},
		{[3]int{12, 30, 17}, 0.5, Gaussian},
		{[3]int{50, 9, 16}, 0.7, Constant},
		{[3]int{16, 16, 16}, 0.25, Gaussian},
	}
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%v_%v_%v", tc.size, tc.overlap, tc.mode), func(t *testing.T) {
			x := randTensor(rand.New(rand.NewPCG(uint64(i), 1)), 1, tc.size[0], tc.size[1], tc.size[2], 0)
			opt := WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: tc.overlap, Mode: tc.mode, SigmaScale: 0.125}
			feat, err := SlidingWindow(x, opt, n.Cfg.InitFilters, n.Features)
			if err != nil {
				t.Fatal(err)
			}
			want := n.HeadArgmax(feat)
			calls := 0
			got, err := n.SlidingWindowLabels(x, opt, func(done, total int) error { calls++; return nil })
			if err != nil {
				t.Fatal(err)
			}
			plan, _ := PlanWindows(tc.size[0], tc.size[1], tc.size[2], opt)
			if calls != plan.NumWindows() {
				t.Fatalf("progress called %d times for %d windows", calls, plan.NumWindows())
			}
			if !bytes.Equal(got, want) {
				diff := 0
				for v := range got {
					if got[v] != want[v] {
						diff++
					}
				}
				t.Fatalf("%d of %d labels differ", diff, len(got))
			}
		})
	}
}
