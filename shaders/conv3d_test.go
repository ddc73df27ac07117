package shaders_test

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/gpu"
	"ctseg/model"
	"ctseg/shaders"
)

// Tolerance: scale-free error (see relErr) of 2e-5 in f32; with f16 storage the output is
// rounded to f16 (relative 2^-11), so 2e-3.
const (
	convTolF32 = 2e-5
	convTolF16 = 2e-3
)

// TestConv3D runs conv3d.wgsl against the CPU reference on awkward shapes: sizes that are not
// multiples of the 4-voxel tile, odd sizes with stride 2, 1 input channel, 8 to 256 channels,
// and every fused step (GroupNorm+ReLU on the input, residual, bias), in f32 and f16 storage.
func TestConv3D(t *testing.T) {
	ctx := device(t)
	cases := []struct {
		cin, cout, d, h, w, k, s int
		norm, res, bias          bool
	}{
		{1, 8, 7, 9, 13, 3, 1, false, false, false},
		{8, 8, 5, 6, 11, 3, 1, true, true, false},
		{8, 16, 7, 5, 9, 3, 2, false, false, false},
		{16, 32, 3, 4, 5, 3, 1, true, false, false},
		{32, 64, 9, 7, 3, 3, 2, false, false, false},
		{64, 32, 3, 5, 6, 1, 1, false, false, false},
		{32, 12, 4, 3, 7, 1, 1, true, false, true},
		{128, 256, 3, 3, 5, 3, 2, false, false, false},
		{256, 256, 2, 3, 3, 3, 1, true, true, false},
		{256, 128, 2, 2, 3, 1, 1, false, false, false},
		{16, 32, 3, 37, 41, 3, 1, true, true, true},
		{32, 32, 4, 9, 70, 3, 1, true, false, false},
	}
	rng := rand.New(rand.NewSource(7))
	for _, tc := range cases {
		for _, variant := range []struct {
			f16, tiled bool
			tile       shaders.ConvTile // of the tiled kernel (zero: defaults)
		}{{false, false, shaders.ConvTile{}}, {true, false, shaders.ConvTile{}}, {false, true, shaders.ConvTile{}}, {true, true, shaders.ConvTile{}},
			{false, true, shaders.ConvTile{MX: 4, Contig: true}}, {true, true, shaders.ConvTile{MX: 8, Contig: true}},
			{false, true, shaders.ConvTile{MX: 4, MN: 4, CK: 2, Contig: true, TY: 2, TN: 8}},
			{true, true, shaders.ConvTile{Prefetch: true}}, {false, true, shaders.ConvTile{MX: 8, Contig: true, Prefetch: true, TY: 3}}} {
			f16, tiled := variant.f16, variant.tiled
			if f16 && tc.cin == 1 {
				continue // a 1-channel input is always f32
			}
			if tiled && !(&shaders.Conv3D{Cin: tc.cin, K: tc.k, Stride: tc.s}).CanTile() {
				continue
			}
			name := fmt.Sprintf("%dto%d_%dx%dx%d_k%d_s%d_norm%v_res%v_bias%v_f16%v_tiled%v", tc.cin, tc.cout, tc.d, tc.h, tc.w, tc.k, tc.s, tc.norm, tc.res, tc.bias, f16, tiled)
			if variant.tile != (shaders.ConvTile{}) {
				name += "_" + strings.ReplaceAll(variant.tile.String(), "/", "_")
			}
			t.Run(name, func(t *testing.T) {
				x := randTensor(rng, tc.cin, tc.d, tc.h, tc.w)
				if f16 {
					x = roundF16(x)
				}
				conv := &model.Conv{Name: "c", In: tc.cin, Out: tc.cout, K: tc.k, Stride: tc.s,
					W: randSlice(rng, tc.cout*tc.cin*tc.k*tc.k*tc.k, 0.1, 0)}
				if tc.bias {
					conv.B = randSlice(rng, tc.cout, 0.5, 0)
				}
				spec := &shaders.Conv3D{Cin: tc.cin, Cout: tc.cout, D: tc.d, H: tc.h, W: tc.w, K: tc.k, Stride: tc.s,
					InF16: f16, OutF16: f16, NormIn: tc.norm, Residual: tc.res, Bias: tc.bias, SlabDepth: 2,
					Tiled: tiled, MaxShared: int(ctx.Limits.MaxWorkgroupStorageSize), MaxThreads: int(ctx.Limits.MaxInvocationsPerWorkgroup),
					Tile: variant.tile}
				require.NoError(t, spec.Validate())
				do, ho, wo := spec.Out()

				// CPU reference: the fused input step spelled out
				in := x
				scaleShift := make([]float32, 2*tc.cin)
				if tc.norm {
					in = model.NewTensor(x.C, x.D, x.H, x.W)
					n := x.Voxels()
					for c := 0; c < x.C; c++ {
						a, b := float32(0.5+rng.Float64()), float32(rng.NormFloat64()*0.3)
						scaleShift[2*c], scaleShift[2*c+1] = a, b
						for v := 0; v < n; v++ {
							in.Data[c*n+v] = max(a*x.Data[c*n+v]+b, 0)
						}
					}
				}
				want := model.Conv3D(in, conv)
				require.NotNil(t, want)
				var res *model.Tensor
				if tc.res {
					res = randTensor(rng, tc.cout, do, ho, wo)
					if f16 {
						res = roundF16(res)
					}
					want = model.Add(want, res)
				}

				p := compile(t, ctx, spec)
				packed, err := spec.PackWeights(conv.W)
				require.NoError(t, err)
				wb := newBuf(t, ctx, uint64(len(packed)))
				require.NoError(t, ctx.Write(wb, 0, packed))
				outBytes := uint64(4 * tc.cout * do * ho * wo)
				if f16 {
					outBytes /= 2
				}
				out := newBuf(t, ctx, outBytes)
				binds := []gpu.Binding{gpu.Whole(upload(t, ctx, x, f16)), gpu.Whole(wb), gpu.Whole(out), {}}
				if tc.norm {
					binds = append(binds, gpu.Whole(floatBuf(t, ctx, scaleShift)))
				}
				if tc.res {
					binds = append(binds, gpu.Whole(upload(t, ctx, res, f16)))
				}
				if tc.bias {
					binds = append(binds, gpu.Whole(floatBuf(t, ctx, conv.B)))
				}
				grids, z0s := spec.Slabs()
				var ds []gpu.Dispatch
				for i, g := range grids {
					u, err := ctx.NewUniform("z0", binary.LittleEndian.AppendUint32(nil, z0s[i]))
					require.NoError(t, err)
					t.Cleanup(u.Release)
					binds[3] = gpu.Whole(u)
					bg, err := ctx.BindGroup(p, binds...)
					require.NoError(t, err)
					ds = append(ds, gpu.Dispatch{P: p, Group: bg, X: g[0], Y: g[1], Z: g[2]})
				}
				run(t, ctx, ds...)
				got := download(t, ctx, out, tc.cout, do, ho, wo, f16)
				e := relErr(t, got, want)
				tol := convTolF32
				if f16 {
					tol = convTolF16
				}
				require.LessOrEqual(t, e, tol, "scale-free error")
			})
		}
	}
}
