package model_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/gputest"
	"ctseg/model"
	"ctseg/weights"
)

// TestVotes: at voxels in the middle, at a corner and in the padding's reach, the covering
// windows' votes blend (weighted mean) to the sliding window's logits there (within 1e-6 of the
// logits' scale: measured 5e-8, float32 sums against float64), their weights are the importance
// map's at each window's local position, and WindowAt picks the covering window that weighs
// most there.
func TestVotes(t *testing.T) {
	ctx := gputest.Context(t)
	cfg := weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 5, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
	n, err := model.NewNet(weights.Random(cfg, 11))
	require.NoError(t, err)
	size := [3]int{27, 14, 33} // H shorter than the window: padded
	vol := randomVolume(size, 3)
	opt := model.WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: model.Gaussian, SigmaScale: 0.125}
	plan, err := model.PlanWindows(size[0], size[1], size[2], opt)
	require.NoError(t, err)
	g, err := model.NewGPUNet(ctx, n, 16, 16, 16, model.GPUOptions{})
	require.NoError(t, err)
	defer g.Release()
	nv := vol.Voxels()
	logits := make([]float32, cfg.OutChannels*nv)
	require.NoError(t, g.SlidingWindow(vol, plan, model.WindowOutput{Logits: logits}, nil))
	imp := plan.ImportanceMap()
	for _, v := range [][3]int{{13, 7, 16}, {0, 0, 0}, {26, 13, 32}, {12, 3, 20}} {
		votes, err := g.Votes(vol, plan, v)
		require.NoError(t, err)
		starts, locals := plan.Covering(v)
		require.Len(t, votes, len(starts))
		require.Greater(t, len(votes), 0)
		for i, vt := range votes {
			l := locals[i]
			require.Equal(t, imp[(l[0]*16+l[1])*16+l[2]], vt.Weight)
		}
		blend := model.Blend(votes)
		idx := (v[0]*size[1]+v[1])*size[2] + v[2]
		worst, scale := 0.0, 0.0
		for k := range blend {
			want := float64(logits[k*nv+idx])
			worst = math.Max(worst, math.Abs(blend[k]-want))
			scale = math.Max(scale, math.Abs(want))
		}
		t.Logf("voxel %v: %d windows, blended votes within %.2g of the sliding window's logits (scale %.3g)", v, len(votes), worst, scale)
		require.LessOrEqual(t, worst, 1e-6*scale)
		st, local, err := plan.WindowAt(v)
		require.NoError(t, err)
		w := func(l [3]int) float32 { return imp[(l[0]*16+l[1])*16+l[2]] }
		for i := range starts {
			require.GreaterOrEqual(t, w(local), w(locals[i]), "WindowAt %v does not weigh most", st)
		}
	}
}

// TestRestrictedPlan: a plan kept to the windows overlapping a box gives, bit for bit, the full
// plan's labels on every voxel that all its covering windows reach (the kept windows' union
// when they are all the windows that cover it).
func TestRestrictedPlan(t *testing.T) {
	ctx := gputest.Context(t)
	cfg := weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 5, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
	n, err := model.NewNet(weights.Random(cfg, 12))
	require.NoError(t, err)
	size := [3]int{40, 35, 46}
	vol := randomVolume(size, 4)
	opt := model.WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: model.Gaussian, SigmaScale: 0.125}
	plan, err := model.PlanWindows(size[0], size[1], size[2], opt)
	require.NoError(t, err)
	g, err := model.NewGPUNet(ctx, n, 16, 16, 16, model.GPUOptions{})
	require.NoError(t, err)
	defer g.Release()
	nv := vol.Voxels()
	full := make([]uint8, nv)
	require.NoError(t, g.SlidingWindow(vol, plan, model.WindowOutput{Labels: full}, nil))
	lo, hi := [3]int{18, 10, 20}, [3]int{22, 14, 26}
	sub := plan.Restrict(lo, hi)
	require.Less(t, sub.NumWindows(), plan.NumWindows())
	part := make([]uint8, nv)
	require.NoError(t, g.SlidingWindow(vol, sub, model.WindowOutput{Labels: part}, nil))
	checked := 0
	for d := 0; d < size[0]; d++ {
		for h := 0; h < size[1]; h++ {
			for w := 0; w < size[2]; w++ {
				all, _ := plan.Covering([3]int{d, h, w})
				kept, _ := sub.Covering([3]int{d, h, w})
				if len(all) != len(kept) {
					continue
				}
				i := (d*size[1]+h)*size[2] + w
				require.Equal(t, full[i], part[i], "voxel (%d, %d, %d)", d, h, w)
				checked++
			}
		}
	}
	t.Logf("%d of %d windows, %d voxels fully covered by them, equal", sub.NumWindows(), plan.NumWindows(), checked)
	require.Greater(t, checked, 1000)
}
