package shaders_test

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/gpu"
	"ctseg/model"
	"ctseg/shaders"
)

// TestGroupNorm checks the two statistics passes by applying their per-channel scale/shift
// exactly as the consumers do (relu(scale*x + shift)) and comparing with the CPU GroupNorm +
// ReLU. Shapes cover one channel per group, many partials, a large mean (where a naive
// E[x^2] - E[x]^2 would lose the variance) and f16 storage. Tolerance 1e-4 scale-free (the
// output is O(1) after normalisation). The consumers apply y = x*scale + shift, which is
// ATen's own GroupNorm arithmetic; at mean/std ratios near 1e4 that form loses about 5e-4
// against the float64 reference, in PyTorch as here, so the large-mean case uses a ratio of 40.
func TestGroupNorm(t *testing.T) {
	ctx := device(t)
	cases := []struct {
		c, d, h, w int
		mean, std  float64
	}{
		{8, 3, 5, 7, 0, 1},
		{16, 9, 11, 13, 0.5, 2},
		{32, 20, 21, 22, 0, 1},
		{64, 4, 4, 4, 20, 0.5},
		{256, 3, 3, 3, -3, 5},
	}
	rng := rand.New(rand.NewSource(11))
	for _, tc := range cases {
		for _, f16 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d_%dx%dx%d_mean%g_f16%v", tc.c, tc.d, tc.h, tc.w, tc.mean, f16), func(t *testing.T) {
				x := model.NewTensor(tc.c, tc.d, tc.h, tc.w)
				for i := range x.Data {
					x.Data[i] = float32(tc.mean + tc.std*rng.NormFloat64())
				}
				if f16 {
					x = roundF16(x)
				}
				norm := &model.Norm{Name: "n", C: tc.c, Groups: 8, Gamma: randSlice(rng, tc.c, 0.25, 1), Beta: randSlice(rng, tc.c, 0.25, 0)}
				want := model.GroupNorm(x, norm, true)
				require.NotNil(t, want)

				spec := &shaders.GroupNormStats{C: tc.c, N: x.Voxels(), Groups: 8, F16: f16, Eps: model.GroupNormEps}
				fin := shaders.GroupNormFinalize{GroupNormStats: spec}
				p1, p2 := compile(t, ctx, spec), compile(t, ctx, fin)
				part := newBuf(t, ctx, spec.PartialsBytes())
				nrm := newBuf(t, ctx, spec.NormBytes())
				bg1, err := ctx.BindGroup(p1, gpu.Whole(upload(t, ctx, x, f16)), gpu.Whole(part))
				require.NoError(t, err)
				bg2, err := ctx.BindGroup(p2, gpu.Whole(part), gpu.Whole(floatBuf(t, ctx, norm.Gamma)), gpu.Whole(floatBuf(t, ctx, norm.Beta)), gpu.Whole(nrm))
				require.NoError(t, err)
				x1, y1, z1 := spec.Grid()
				x2, y2, z2 := fin.Grid()
				run(t, ctx, gpu.Dispatch{P: p1, Group: bg1, X: x1, Y: y1, Z: z1}, gpu.Dispatch{P: p2, Group: bg2, X: x2, Y: y2, Z: z2})
				ss := download(t, ctx, nrm, 1, 1, 1, 2*tc.c, false).Data
				got := model.NewTensor(x.C, x.D, x.H, x.W)
				n := x.Voxels()
				for c := 0; c < x.C; c++ {
					for v := 0; v < n; v++ {
						got.Data[c*n+v] = float32(math.Max(float64(ss[2*c]*x.Data[c*n+v]+ss[2*c+1]), 0))
					}
				}
				require.LessOrEqual(t, relErr(t, got, want), 1e-4)
			})
		}
	}
}
