package model

import (
	"math"
	"math/rand"
	"testing"

	"ctseg/gpu"
	"ctseg/weights"
)

// The head recomputes each voxel's weight sum from the cover table instead of reading an
// accumulated plane; the division is only the bundle's if the sum is the same float32 the
// blend would have accumulated. This walks windows in the order windowPass.run blends them,
// accumulates the importance map per voxel, and requires the head's loop over the cover
// table (shaders/head.wgsl weightSum) to give the same bits, with padding, every ring axis
// and overlaps up to 0.75 (up to four windows per axis).
func TestCoverTableGivesBlendingWeightSums(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	cfg := weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 3, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
	for trial := 0; trial < 40; trial++ {
		size := [3]int{5 + rng.Intn(40), 5 + rng.Intn(40), 5 + rng.Intn(40)}
		opt := WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: []float64{0, 0.25, 0.5, 0.75}[rng.Intn(4)], Mode: Gaussian, SigmaScale: 0.125}
		plan, err := PlanWindows(size[0], size[1], size[2], opt)
		if err != nil {
			t.Fatal(err)
		}
		l, err := newWindowLayout(cfg, plan, gpu.DefaultLimits(), false, ReadLabels)
		if err != nil {
			t.Fatal(err)
		}
		gmap := plan.ImportanceMap()
		roi := plan.ROI
		at := func(p [3]int, st [3]int) float32 { // window st's weight at volume voxel p
			var w [3]int
			for a := range 3 {
				w[a] = p[a] + plan.PadBefore[a] - st[a]
			}
			return gmap[(w[0]*roi[1]+w[1])*roi[2]+w[2]]
		}
		// blending: rows along the ring's axis, then the windows of the row in plan order
		want := make([]float32, size[0]*size[1]*size[2])
		for _, s := range plan.Starts[l.axis] {
			for _, st := range plan.Windows() {
				if st[l.axis] != s {
					continue
				}
				var p [3]int
				for p[0] = 0; p[0] < size[0]; p[0]++ {
					for p[1] = 0; p[1] < size[1]; p[1]++ {
						for p[2] = 0; p[2] < size[2]; p[2]++ {
							inside := true
							for a := range 3 {
								x := p[a] + plan.PadBefore[a]
								inside = inside && st[a] <= x && x < st[a]+roi[a]
							}
							if inside {
								want[(p[0]*size[1]+p[1])*size[2]+p[2]] += at(p, st)
							}
						}
					}
				}
			}
		}
		// the head's loops over the cover table
		words, c := l.cover()
		axes := [3]int{l.axis, l.pb, l.pc}
		var p [3]int
		for p[0] = 0; p[0] < size[0]; p[0]++ {
			for p[1] = 0; p[1] < size[1]; p[1]++ {
				for p[2] = 0; p[2] < size[2]; p[2]++ {
					var first, n, g [3]int
					for i, a := range axes {
						g[i] = p[a]
						first[i], n[i] = int(words[c.Pairs[i]+2*g[i]]), int(words[c.Pairs[i]+2*g[i]+1])
					}
					local := func(i, j int) int { return g[i] + int(int32(words[c.Bases[i]+j])) }
					var sum float32
					for ia := first[0]; ia < first[0]+n[0]; ia++ {
						for ib := first[1]; ib < first[1]+n[1]; ib++ {
							for ic := first[2]; ic < first[2]+n[2]; ic++ {
								var w [3]int
								w[axes[0]], w[axes[1]], w[axes[2]] = local(0, ia), local(1, ib), local(2, ic)
								sum += gmap[(w[0]*roi[1]+w[1])*roi[2]+w[2]]
							}
						}
					}
					v := (p[0]*size[1]+p[1])*size[2] + p[2]
					if math.Float32bits(sum) != math.Float32bits(want[v]) {
						t.Fatalf("size %v overlap %v ring axis %d voxel %v: cover sum %v, blended %v", size, opt.Overlap, l.axis, p, sum, want[v])
					}
				}
			}
		}
		if got := uint64(4 * len(words)); got != l.coverBytes() {
			t.Fatalf("cover table %d bytes, planned %d", got, l.coverBytes())
		}
	}
}
