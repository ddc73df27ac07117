package model

import (
	"bytes"
	"fmt"
	"math"
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

// The CPU path's confidence is the softmax of the logits of the whole volume's blended
// features (the head applied after the blend, as the labels' test): p1 and p2 within one
// unorm16 step, the runner-up the first maximum among the other classes; the labels are
// SlidingWindowLabels'. On every kernel level and the reference.
func TestSlidingWindowConfidence(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		n := randomNet(t, 8, 7, 5)
		x := randTensor(rand.New(rand.NewPCG(9, 1)), 1, 37, 20, 23, 0)
		opt := WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: Gaussian, SigmaScale: 0.125}
		feat, err := SlidingWindow(x, opt, n.Cfg.InitFilters, n.Features)
		if err != nil {
			t.Fatal(err)
		}
		logits, err := n.head(feat)
		if err != nil {
			t.Fatal(err)
		}
		nv := x.Voxels()
		out := WindowOutput{Labels: make([]uint8, nv), Conf: make([]uint32, nv), Second: make([]uint8, nv)}
		if err := n.SlidingWindowOutput(x, opt, out, nil); err != nil {
			t.Fatal(err)
		}
		labels, err := n.SlidingWindowLabels(x, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Labels, labels) {
			t.Fatal("the labels with the confidence differ from the labels alone")
		}
		k := n.Final.Out
		worst := 0.0
		for v := range nv {
			top := SoftmaxTop(func(j int) float32 { return logits.Data[j*nv+v] }, k)
			p1, p2 := UnpackConf(out.Conf[v])
			if int(out.Labels[v]) != top.Label || int(out.Second[v]) != top.Second {
				t.Fatalf("voxel %d: label %d, runner-up %d; the softmax of the logits says %d, %d", v, out.Labels[v], out.Second[v], top.Label, top.Second)
			}
			worst = max(worst, math.Abs(float64(p1)-top.P1), math.Abs(float64(p2)-top.P2))
		}
		if worst > 1.0/65535 {
			t.Fatalf("p1 or p2 off by %g, more than a unorm16 step", worst)
		}
		t.Logf("%d voxels: p1 and p2 within %.2g of the softmax of the logits", nv, worst)
	})
}
