package model_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/gpu"
	"ctseg/internal/gputest"
	"ctseg/model"
	"ctseg/weights"
)

// TestPlanMatchesRun checks that the planner (what `ctseg segment --dry-run` prints) predicts a
// real run's peak GPU memory to the byte, for padded and unpadded volumes, f32 and f16, labels
// and logits.
func TestPlanMatchesRun(t *testing.T) {
	ctx := gputest.Context(t)
	cfg := weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 5, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
	net, err := model.NewNet(weights.Random(cfg, 3))
	require.NoError(t, err)
	cases := []struct {
		size [3]int
		f16  bool
		read model.Readback
	}{
		{[3]int{40, 21, 35}, false, model.ReadLabels},
		{[3]int{13, 30, 17}, true, model.ReadLogits},
		{[3]int{50, 18, 16}, true, model.ReadLabels},
		{[3]int{13, 17, 40}, false, model.ReadLabels},
		{[3]int{41, 23, 19}, true, model.ReadConfidence},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v_f16%v_read%v", tc.size, tc.f16, tc.read), func(t *testing.T) {
			runPlanned(t, ctx, net, randomVolume(tc.size, 1), model.GPUOptions{F16: tc.f16}, tc.read)
		})
	}
}

// runPlanned plans and runs the GPU sliding window (16^3 windows, overlap 0.25) over vol on
// ctx as it is, and requires the planned network size and peak to equal the measured ones and
// every buffer to be released afterwards.
func runPlanned(t *testing.T, ctx *gpu.Context, net *model.Net, vol *model.Tensor, gopt model.GPUOptions, read model.Readback) model.WindowOutput {
	t.Helper()
	opt := model.WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: model.Gaussian, SigmaScale: 0.125}
	plan, err := model.PlanWindows(vol.D, vol.H, vol.W, opt)
	require.NoError(t, err)
	want, err := model.PlanGPU(net.Cfg, plan, ctx.Limits, gopt, read)
	require.NoError(t, err)
	require.LessOrEqual(t, want.MaxBinding, ctx.Limits.MaxStorageBufferBindingSize)

	base := ctx.LiveBytes()
	ctx.ResetPeak()
	g, err := model.NewGPUNet(ctx, net, 16, 16, 16, gopt)
	require.NoError(t, err)
	require.Equal(t, want.NetworkBytes, g.PlanBytes)
	n := vol.Voxels()
	out := model.WindowOutput{Labels: make([]uint8, n)}
	switch read {
	case model.ReadLogits:
		out = model.WindowOutput{Logits: make([]float32, net.Cfg.OutChannels*n)}
	case model.ReadConfidence:
		out.Conf, out.Second = make([]uint32, n), make([]uint8, n)
	}
	require.NoError(t, g.SlidingWindow(vol, plan, out, nil))
	g.Release()
	require.Equal(t, want.PeakBytes, ctx.PeakBytes()-base, "measured peak vs plan")
	require.Equal(t, base, ctx.LiveBytes(), "every buffer released")
	return out
}

// TestBundleWindowFitsDefaultLimits plans the full bundle model (F=32, K=105) for its 96^3
// window under WebGPU's default limits, what any browser grants without asking: every
// binding within maxStorageBufferBindingSize and every buffer within maxBufferSize (the plan
// fails otherwise), the 105-channel logits never exist as one buffer, and the whole 287x287x397
// run at 1.5 mm plans at most 1.5 GB in either precision, with or without the confidence.
func TestBundleWindowFitsDefaultLimits(t *testing.T) {
	limits := gpu.DefaultLimits()
	for _, tc := range []struct {
		f16  bool
		read model.Readback
	}{{false, model.ReadLabels}, {true, model.ReadLabels}, {false, model.ReadConfidence}, {true, model.ReadConfidence}} {
		f16 := tc.f16
		plan, err := model.PlanWindows(287, 287, 397, model.DefaultWindowOptions())
		require.NoError(t, err)
		p, err := model.PlanGPU(weights.BundleConfig(), plan, limits, model.GPUOptions{F16: f16}, tc.read)
		require.NoError(t, err)
		require.LessOrEqual(t, p.MaxBinding, limits.MaxStorageBufferBindingSize)
		logits := uint64(105 * 96 * 96 * 96 * 4)
		require.Less(t, p.MaxBinding, logits, "no binding can hold a window's logits")
		t.Logf("f16=%v read=%v: network %d bytes, largest binding %d bytes, whole 287x287x397 run peak %d bytes", f16, tc.read, p.NetworkBytes, p.MaxBinding, p.PeakBytes)
		// issue 6's memory target for this volume
		require.LessOrEqual(t, p.PeakBytes, uint64(1.5e9), "planned peak of the whole run")
	}
}

// With a small binding limit the accumulator ring splits into several buffers and a row's
// finished slices into several head chunks, each collected while the next chunk's head runs.
// The labels and logits must not change, nothing may stay allocated, and the plan must still
// equal the measured peak.
func TestSmallBindingLimitsSplitTheRing(t *testing.T) {
	ctx := gputest.Context(t)
	cfg := weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 5, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
	net, err := model.NewNet(weights.Random(cfg, 3))
	require.NoError(t, err)
	orig := ctx.Limits
	defer func() { ctx.Limits = orig }()
	// a 40x40 slot is 51 KB in f32, a 40x52 one 33 KB in f16: 8 or 13 of the 16 slots a
	// binding (the network's own largest binding is 432 KB)
	const small = 448 << 10
	cases := []struct {
		size [3]int
		read model.Readback
		f16  bool
	}{
		{[3]int{40, 40, 52}, model.ReadLabels, false},
		{[3]int{40, 52, 40}, model.ReadLogits, true},
		{[3]int{52, 40, 40}, model.ReadConfidence, false},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v_read%v_f16%v", tc.size, tc.read, tc.f16), func(t *testing.T) {
			vol := randomVolume(tc.size, 1)
			gopt := model.GPUOptions{F16: tc.f16}
			ctx.Limits = orig
			whole := runPlanned(t, ctx, net, vol, gopt, tc.read)
			ctx.Limits.MaxStorageBufferBindingSize = small
			split := runPlanned(t, ctx, net, vol, gopt, tc.read)
			require.Equal(t, whole.Labels, split.Labels)
			require.Equal(t, whole.Conf, split.Conf)
			require.Equal(t, whole.Second, split.Second)
			require.Equal(t, len(whole.Logits), len(split.Logits))
			for i := range whole.Logits {
				require.Equal(t, math.Float32bits(whole.Logits[i]), math.Float32bits(split.Logits[i]), "logit %d", i)
			}
		})
	}
}

// Every blend and head dispatch has its own 256-byte parameter slot: with a very high overlap
// their buffer can outgrow maxBufferSize, which the plan must say up front rather than the
// device at buffer creation.
func TestPlanRefusesTooManyDispatchParameters(t *testing.T) {
	cfg := weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 5, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
	limits := gpu.DefaultLimits()
	limits.MaxBufferSize = 1 << 20
	for _, tc := range []struct {
		overlap float64
		ok      bool
	}{{0.25, true}, {0.9, false}} {
		plan, err := model.PlanWindows(40, 40, 40, model.WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: tc.overlap, Mode: model.Gaussian, SigmaScale: 0.125})
		require.NoError(t, err)
		_, err = model.PlanGPU(cfg, plan, limits, model.GPUOptions{}, model.ReadLabels)
		if tc.ok {
			require.NoError(t, err, "overlap %v", tc.overlap)
		} else {
			require.ErrorContains(t, err, "use less overlap", "overlap %v: %d windows", tc.overlap, plan.NumWindows())
		}
	}
}
