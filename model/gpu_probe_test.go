package model_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/gputest"
	"ctseg/model"
	"ctseg/weights"
)

// TestGPUProbe: every block's output read back by the GPU probe equals the CPU reference's
// (Net.Probe, from the layer-by-layer Trace) within 2e-5 of the block's largest magnitude
// (f32 storage; f16 storage within 5e-3), on windows of unequal sides, for whole outputs and
// for planes: a plane is the whole output's plane at plane >> level (the upsampled plane for
// up_samples), bit for bit. The names and shapes are Blocks' (MONAI's module paths).
func TestGPUProbe(t *testing.T) {
	ctx := gputest.Context(t)
	cfg := weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 6, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
	n, err := model.NewNet(weights.Random(cfg, 5))
	require.NoError(t, err)
	for _, tc := range []struct {
		size [3]int
		f16  bool
		tol  float64
	}{{[3]int{16, 24, 32}, false, 2e-5}, {[3]int{24, 16, 40}, true, 5e-3}} {
		t.Run(fmt.Sprint(tc.size, tc.f16), func(t *testing.T) {
			vol := randomVolume(tc.size, 7)
			want, err := n.Probe(vol)
			require.NoError(t, err)
			info, err := model.Blocks(cfg, tc.size)
			require.NoError(t, err)
			g, err := model.NewGPUNet(ctx, n, tc.size[0], tc.size[1], tc.size[2], model.GPUOptions{F16: tc.f16})
			require.NoError(t, err)
			defer g.Release()
			got, err := g.Probe(vol.Data, -1)
			require.NoError(t, err)
			require.Len(t, got, len(info))
			for i, b := range got {
				w := want[i]
				require.Equal(t, info[i].Name, b.Name)
				require.Equal(t, w.Name, b.Name)
				require.Equal(t, [4]int{info[i].Channels, info[i].Size[0], info[i].Size[1], info[i].Size[2]}, [4]int{b.C, b.D, b.H, b.W}, b.Name)
				require.Equal(t, [4]int{w.C, w.D, w.H, w.W}, [4]int{b.C, b.D, b.H, b.W}, b.Name)
				worst, scale := 0.0, 0.0
				for j := range b.Data {
					worst = math.Max(worst, math.Abs(float64(b.Data[j]-w.Data[j])))
					scale = math.Max(scale, math.Abs(float64(w.Data[j])))
				}
				t.Logf("%-14s %3dx%dx%dx%d  max |GPU - CPU| %.2g of %.3g", b.Name, b.C, b.D, b.H, b.W, worst, scale)
				require.LessOrEqual(t, worst, tc.tol*scale, b.Name)
			}
			for _, plane := range []int{0, 5, tc.size[2] - 1} {
				planes, err := g.Probe(vol.Data, plane)
				require.NoError(t, err)
				for i, b := range planes {
					whole := got[i]
					level := 0
					for tc.size[2]>>level > whole.W {
						level++
					}
					require.Equal(t, 1, b.W)
					require.Equal(t, plane>>level, b.Plane, "%s: the plane at its resolution", b.Name)
					for c := 0; c < b.C; c++ {
						for d := 0; d < b.D; d++ {
							for h := 0; h < b.H; h++ {
								require.Equal(t, math.Float32bits(whole.Data[((c*whole.D+d)*whole.H+h)*whole.W+b.Plane]), math.Float32bits(b.Data[(c*b.D+d)*b.H+h]),
									"%s plane %d: channel %d (%d, %d)", b.Name, plane, c, d, h)
							}
						}
					}
				}
			}
		})
	}
}
