package model_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/gputest"
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
	cands := []shaders.ConvTile{{MX: 2, MN: 8, CK: 4}, {MX: 8, MN: 8, CK: 4, Contig: true}, {MX: 4, MN: 4, CK: 2, Contig: true, TN: 4}}
	check := func(res *model.TuneResult) {
		require.Greater(t, res.DefaultSeconds, 0.0)
		if res.Tiles == "" {
			require.Equal(t, res.DefaultSeconds, res.TunedSeconds)
		} else {
			require.Less(t, res.TunedSeconds, res.DefaultSeconds)
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
