package model_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/gputest"
	"ctseg/internal/shared"
	"ctseg/model"
	"ctseg/shaders"
	"ctseg/weights"
)

// TestTune picks per width with timestamps and for the whole window without, and keeps a
// choice only when a whole window with it beat the defaults.
func TestTune(t *testing.T) {
	ctx := gputest.Context(t)
	cfg := weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 5, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
	net, err := model.NewNet(weights.Random(cfg, 2))
	require.NoError(t, err)
	all, err := shaders.ParseConvTileList(model.TuneCandidates)
	require.NoError(t, err, "the default candidates parse")
	require.Greater(t, len(all), 10)
	quick, err := shaders.ParseConvTileList(model.TuneCandidatesQuick)
	require.NoError(t, err, "the browser's candidates parse")
	require.Less(t, len(quick), len(all))
	cands := []shaders.ConvTile{{MX: 2, MN: 8, CK: 4}, {MX: 8, MN: 8, CK: 4, Contig: true}, {MX: 4, MN: 4, CK: 2, Contig: true, TN: 4}}
	check := func(res *model.TuneResult) {
		require.Greater(t, res.DefaultSeconds, 0.0)
		if res.Tiles == "" {
			require.Equal(t, res.DefaultSeconds, res.TunedSeconds)
		} else {
			require.Less(t, res.TunedSeconds, model.TuneMargin*res.DefaultSeconds)
			_, err := model.ParseConvTiles(res.Tiles)
			require.NoError(t, err)
		}
		for _, w := range res.Widths {
			require.LessOrEqual(t, w.Seconds, w.DefaultSeconds, "a width's choice is never slower than its default")
			require.NotEmpty(t, w.Default)
		}
	}
	if ctx.Timestamps {
		res, err := model.Tune(ctx, net, [3]int{16, 16, 16}, false, cands, 1, nil)
		require.NoError(t, err)
		require.Equal(t, "gpu timestamps per layer", res.Method)
		var widths []int
		for _, w := range res.Widths {
			widths = append(widths, w.Width)
		}
		require.Equal(t, []int{16, 8, 4, 2}, widths, "one choice per width of the tiled layers")
		check(res)
	}
	saved := ctx.Timestamps
	ctx.Timestamps = false // as in a browser or on an adapter without timestamp queries
	defer func() { ctx.Timestamps = saved }()
	res, err := model.Tune(ctx, net, [3]int{16, 16, 16}, true, cands, 1, nil)
	require.NoError(t, err)
	require.Equal(t, "whole window", res.Method)
	require.Len(t, res.Widths, 1)
	require.Equal(t, 0, res.Widths[0].Width)
	check(res)
}

// TestTilesAgree: the tiles a tuning may choose give the same logits as the defaults up to
// float rounding (they sum in the same order; a driver may still contract multiply-adds
// differently per shader), so `ctseg tune` changes speed, not results.
func TestTilesAgree(t *testing.T) {
	n := loadNet(t, "segresnet_full")
	in := readF32(t, shared.Path(t, "golden", "segresnet_full/input.f32"))
	vol := &model.Tensor{C: 1, D: 32, H: 32, W: 32, Data: in}
	opt := model.WindowOptions{ROI: [3]int{32, 32, 32}, Overlap: 0, Mode: model.Constant}
	want := gpuLogitsWith(t, n, vol, opt, model.GPUOptions{})
	for _, tile := range []string{"2x8x4", "8x8x4c", "4x8x4cp/tn16", "32=8x8x2c+8=2x8x4/ty2"} {
		tiles, err := model.ParseConvTiles(tile)
		require.NoError(t, err)
		got := gpuLogitsWith(t, n, vol, opt, model.GPUOptions{ConvTiles: tiles})
		same, maxDiff := 0, 0.0
		for i := range want {
			if got[i] == want[i] {
				same++
			}
			maxDiff = max(maxDiff, math.Abs(float64(got[i]-want[i])))
		}
		t.Logf("%s: %d of %d logits bit-identical to the defaults, max difference %.3g", tile, same, len(want), maxDiff)
		require.LessOrEqual(t, maxDiff, 1e-5)
	}
}
