package model_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/gputest"
	"ctseg/internal/shared"
	"ctseg/model"
	"ctseg/shaders"
	"ctseg/weights"
)

func readF32(t testing.TB, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func loadNet(t testing.TB, dir string) *model.Net {
	t.Helper()
	sd, err := weights.Load(shared.Path(t, "golden", dir, "model.pt"))
	require.NoError(t, err)
	n, err := model.NewNet(sd)
	require.NoError(t, err)
	return n
}

// gpuLogits runs the GPU sliding window and gathers the logits [K][D][H][W].
func gpuLogits(t testing.TB, n *model.Net, vol *model.Tensor, opt model.WindowOptions, f16 bool) []float32 {
	return gpuLogitsWith(t, n, vol, opt, model.GPUOptions{F16: f16})
}

func gpuLogitsWith(t testing.TB, n *model.Net, vol *model.Tensor, opt model.WindowOptions, gopt model.GPUOptions) []float32 {
	t.Helper()
	ctx := gputest.Context(t)
	plan, err := model.PlanWindows(vol.D, vol.H, vol.W, opt)
	require.NoError(t, err)
	g, err := model.NewGPUNet(ctx, n, plan.ROI[0], plan.ROI[1], plan.ROI[2], gopt)
	require.NoError(t, err)
	defer g.Release()
	out := make([]float32, n.Cfg.OutChannels*vol.Voxels())
	require.NoError(t, g.SlidingWindow(vol, plan, model.WindowOutput{Logits: out}, nil))
	return out
}

// compareLogits returns the max abs error and the fraction of voxels whose argmax agrees.
func compareLogits(got, want []float32, k, voxels int) (maxErr float64, agree float64) {
	same := 0
	for v := 0; v < voxels; v++ {
		ag, aw := 0, 0
		for c := 0; c < k; c++ {
			i := c*voxels + v
			if e := math.Abs(float64(got[i] - want[i])); e > maxErr || math.IsNaN(e) {
				maxErr = e
				if math.IsNaN(e) {
					maxErr = math.Inf(1)
				}
			}
			if got[i] > got[ag*voxels+v] {
				ag = c
			}
			if want[i] > want[aw*voxels+v] {
				aw = c
			}
		}
		if ag == aw {
			same++
		}
	}
	return maxErr, float64(same) / float64(voxels)
}

// Tolerances from issue 3: f32 max abs error <= 1e-3 and argmax identical on >= 99.99 % of
// voxels; f16 storage argmax >= 99.5 % (its max error is reported).
func TestGPUGolden(t *testing.T) {
	whole := func(d, h, w int) model.WindowOptions {
		return model.WindowOptions{ROI: [3]int{d, h, w}, Overlap: 0, Mode: model.Constant}
	}
	win := model.WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: model.Gaussian, SigmaScale: 0.125}
	cases := []struct {
		name, weights, input, output string
		shape                        [3]int
		opt                          model.WindowOptions
	}{
		{"segresnet_small", "segresnet_small", "segresnet_small/input.f32", "segresnet_small/output.f32", [3]int{24, 40, 32}, whole(24, 40, 32)},
		{"segresnet_full", "segresnet_full", "segresnet_full/input.f32", "segresnet_full/output.f32", [3]int{32, 32, 32}, whole(32, 32, 32)},
		{"sliding_window_gaussian", "segresnet_small", "sliding_window/input.f32", "sliding_window/output_gaussian.f32", [3]int{37, 29, 45}, win},
		{"sliding_window_constant", "segresnet_small", "sliding_window/input.f32", "sliding_window/output_constant.f32", [3]int{37, 29, 45}, func() model.WindowOptions { o := win; o.Mode = model.Constant; return o }()},
	}
	for _, tc := range cases {
		for _, f16 := range []bool{false, true} {
			name := tc.name + "/f32"
			if f16 {
				name = tc.name + "/f16"
			}
			t.Run(name, func(t *testing.T) {
				n := loadNet(t, tc.weights)
				in := readF32(t, shared.Path(t, "golden", tc.input))
				want := readF32(t, shared.Path(t, "golden", tc.output))
				vol := &model.Tensor{C: 1, D: tc.shape[0], H: tc.shape[1], W: tc.shape[2], Data: in}
				got := gpuLogits(t, n, vol, tc.opt, f16)
				require.Len(t, got, len(want))
				maxErr, agree := compareLogits(got, want, n.Cfg.OutChannels, vol.Voxels())
				t.Logf("%s: max abs error %.3g, argmax agreement %.5f%%", name, maxErr, 100*agree)
				if f16 {
					require.GreaterOrEqual(t, agree, 0.995)
				} else {
					require.LessOrEqual(t, maxErr, 1e-3)
					require.GreaterOrEqual(t, agree, 0.9999)
				}
			})
		}
	}
}

// TestGPUGoldenTileVariants runs the bundle-shaped golden network with the convolution tiles
// that `ctseg bench --tiles` offers for tuning, so a faster choice is a correct one too, and
// with both defaults (GPUs and CPU adapters pick different tiles).
func TestGPUGoldenTileVariants(t *testing.T) {
	n := loadNet(t, "segresnet_full")
	in := readF32(t, shared.Path(t, "golden", "segresnet_full/input.f32"))
	want := readF32(t, shared.Path(t, "golden", "segresnet_full/output.f32"))
	vol := &model.Tensor{C: 1, D: 32, H: 32, W: 32, Data: in}
	opt := model.WindowOptions{ROI: [3]int{32, 32, 32}, Overlap: 0, Mode: model.Constant}
	for _, tile := range []string{
		"2x8x4",  // the GPU default, whatever adapter runs the tests
		"8x8x4c", // the CPU-adapter default
		"4x8c", "8x4x2c", "4x16x8", "4x8x4c/ty4/tn16", "2x8x2/tn8", "2x8x4p", "8x8x4cp/ty8",
		"32=8x8x4c+16=2x8x4/tn16+8=4x4x2c", // a tile per layer width
	} {
		t.Run(strings.ReplaceAll(tile, "/", "_"), func(t *testing.T) {
			tiles, err := model.ParseConvTiles(tile)
			require.NoError(t, err)
			v := model.GPUOptions{ConvTiles: tiles}
			got := gpuLogitsWith(t, n, vol, opt, v)
			require.Len(t, got, len(want))
			maxErr, agree := compareLogits(got, want, n.Cfg.OutChannels, vol.Voxels())
			t.Logf("max abs error %.3g, argmax agreement %.5f%%", maxErr, 100*agree)
			require.LessOrEqual(t, maxErr, 1e-3)
			require.GreaterOrEqual(t, agree, 0.9999)
		})
	}
}

// TestGPUUnseenShapes checks the GPU against the CPU reference (itself checked against MONAI)
// on configurations that are not in ../shared: other channel counts and classes, random
// weights, volume sizes that are not multiples of anything and are padded on some axes, other
// overlaps and both blend modes. Same tolerances as the golden cases.
func TestGPUUnseenShapes(t *testing.T) {
	cases := []struct {
		f, k    int
		size    [3]int
		roi     int
		overlap float64
		mode    model.BlendMode
		seed    int64
	}{
		{16, 7, [3]int{21, 34, 27}, 16, 0.5, model.Gaussian, 11},
		{8, 3, [3]int{13, 40, 19}, 16, 0.6, model.Constant, 12},
		{8, 12, [3]int{30, 9, 41}, 24, 0.1, model.Gaussian, 13},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("F%d_K%d_%v_roi%d_overlap%g_%v", tc.f, tc.k, tc.size, tc.roi, tc.overlap, tc.mode), func(t *testing.T) {
			cfg := weights.Config{InitFilters: tc.f, InChannels: 1, OutChannels: tc.k, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
			n, err := model.NewNet(weights.Random(cfg, tc.seed))
			require.NoError(t, err)
			vol := randomVolume(tc.size, tc.seed)
			opt := model.WindowOptions{ROI: [3]int{tc.roi, tc.roi, tc.roi}, Overlap: tc.overlap, Mode: tc.mode, SigmaScale: 0.125}
			want, err := model.SlidingWindow(vol, opt, tc.k, n.Forward)
			require.NoError(t, err)
			got := gpuLogits(t, n, vol, opt, false)
			maxErr, agree := compareLogits(got, want.Data, tc.k, vol.Voxels())
			t.Logf("max abs error %.3g, argmax agreement %.5f%%", maxErr, 100*agree)
			require.LessOrEqual(t, maxErr, 1e-3)
			require.GreaterOrEqual(t, agree, 0.9999)
		})
	}
}

// TestGPULabelsAreArgmaxOfLogits: the head's label output (bytes packed four to a word) is
// the argmax of its logit output, first maximum winning, on volumes whose runs hold a number
// of voxels that is not a multiple of four and that wrap around the accumulator ring.
func TestGPULabelsAreArgmaxOfLogits(t *testing.T) {
	ctx := gputest.Context(t)
	cfg := weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 7, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
	n, err := model.NewNet(weights.Random(cfg, 21))
	require.NoError(t, err)
	for _, size := range [][3]int{{23, 19, 37}, {41, 13, 15}, {17, 29, 21}} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			vol := randomVolume(size, int64(size[0]))
			opt := model.WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: model.Gaussian, SigmaScale: 0.125}
			plan, err := model.PlanWindows(size[0], size[1], size[2], opt)
			require.NoError(t, err)
			g, err := model.NewGPUNet(ctx, n, 16, 16, 16, model.GPUOptions{})
			require.NoError(t, err)
			defer g.Release()
			nv := vol.Voxels()
			logits := make([]float32, cfg.OutChannels*nv)
			require.NoError(t, g.SlidingWindow(vol, plan, model.WindowOutput{Logits: logits}, nil))
			labels := make([]uint8, nv)
			require.NoError(t, g.SlidingWindow(vol, plan, model.WindowOutput{Labels: labels}, nil))
			classes := map[uint8]bool{}
			for v := 0; v < nv; v++ {
				best := 0
				for k := 1; k < cfg.OutChannels; k++ {
					if logits[k*nv+v] > logits[best*nv+v] {
						best = k
					}
				}
				require.Equal(t, uint8(best), labels[v], "voxel %d", v)
				classes[labels[v]] = true
			}
			require.Greater(t, len(classes), 1, "a constant label map would match trivially")
		})
	}
}

// The head takes its weights from a uniform buffer when they fit one (the bundle's do) and
// from a storage buffer when not: both sum in the same order, so the logits of the classes
// two heads share are bit-identical.
func TestHeadUniformAndStorageAgree(t *testing.T) {
	ctx := gputest.Context(t)
	big := weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 2050, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
	require.False(t, shaders.HeadUniform(big.InitFilters, big.OutChannels))
	nBig, err := model.NewNet(weights.Random(big, 4))
	require.NoError(t, err)
	nSmall, err := model.NewNet(weights.Random(big, 4))
	require.NoError(t, err)
	const k = 6
	nSmall.Cfg.OutChannels, nSmall.Final.Out = k, k
	nSmall.Final.W, nSmall.Final.B = nSmall.Final.W[:k*big.InitFilters], nSmall.Final.B[:k]
	require.True(t, shaders.HeadUniform(big.InitFilters, k))

	size := [3]int{18, 16, 20}
	vol := randomVolume(size, 9)
	opt := model.WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: model.Gaussian, SigmaScale: 0.125}
	plan, err := model.PlanWindows(size[0], size[1], size[2], opt)
	require.NoError(t, err)
	nv := vol.Voxels()
	logits := func(n *model.Net) []float32 {
		g, err := model.NewGPUNet(ctx, n, 16, 16, 16, model.GPUOptions{})
		require.NoError(t, err)
		defer g.Release()
		out := make([]float32, n.Cfg.OutChannels*nv)
		require.NoError(t, g.SlidingWindow(vol, plan, model.WindowOutput{Logits: out}, nil))
		return out[:k*nv]
	}
	storage, uniform := logits(nBig), logits(nSmall)
	for i := range uniform {
		require.Equal(t, math.Float32bits(storage[i]), math.Float32bits(uniform[i]), "class %d voxel %d", i/nv, i%nv)
	}
}
