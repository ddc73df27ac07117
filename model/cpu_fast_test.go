package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The CPU kernels (cpu_fast*.go, cpu_kernels_*.s) against the pure-Go reference of
// cpu_ops.go, on every kernel level this machine runs. opTol (cpu_ops_test.go) is the
// tolerance: the kernels sum in another order, with fused multiply-adds.

// eachISA runs f once per vector kernel level of this machine, with that level selected.
// A machine without kernels (or a build for another architecture) runs nothing here: the
// tests that go through Net run the reference there, and eachLevel below says so.
func eachISA(t *testing.T, f func(t *testing.T, isa *cpuISA)) {
	t.Helper()
	for _, isa := range cpuISAs {
		t.Run(isa.name, func(t *testing.T) {
			withLevel(t, isa.name)
			f(t, isa)
		})
	}
}

// eachLevel runs f once per kernel level including "generic" (the reference), selected.
func eachLevel(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, l := range CPUKernelLevels() {
		t.Run(l, func(t *testing.T) {
			withLevel(t, l)
			f(t)
		})
	}
}

// withLevel selects a kernel level for the rest of the test.
func withLevel(t testing.TB, level string) {
	prev, err := SetCPUKernels(level)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = SetCPUKernels(prev) })
	got, err := CPUKernels()
	require.NoError(t, err)
	require.Equal(t, level, got)
}

// poison fills a buffer's slack and interior with NaN, keeping the zero halo: a value a
// kernel should not have used, or a voxel it should have written, shows up in the result.
func poison(b *pbuf, interior bool) {
	nan := float32(math.NaN())
	for i := range pbufSlack {
		b.mem[i], b.mem[len(b.mem)-1-i] = nan, nan
	}
	if interior {
		for c := range b.C {
			for z := range b.D {
				for y := range b.H {
					r := b.row(c, z, y)
					for i := range r {
						r[i] = nan
					}
				}
			}
		}
	}
}

// requireZeroHalo checks the invariant every operation keeps: the halo of a buffer is zero.
func requireZeroHalo(t *testing.T, b *pbuf) {
	t.Helper()
	dp, hp, wp := b.D+2, b.H+2, b.W+2
	for c := range b.C {
		for z := range dp {
			for y := range hp {
				for x := range wp {
					if z > 0 && z <= b.D && y > 0 && y <= b.H && x > 0 && x <= b.W {
						continue
					}
					v := b.data[c*b.cstride()+(z*hp+y)*wp+x]
					if v != 0 {
						require.Failf(t, "halo not zero", "channel %d at padded (%d, %d, %d): %v", c, z, y, x, v)
					}
				}
			}
		}
	}
}

// tensorErr is the largest difference between two tensors of one shape and the largest
// magnitude of want.
func tensorErr(t *testing.T, got, want *Tensor) (e, scale float64) {
	t.Helper()
	require.Equal(t, [4]int{want.C, want.D, want.H, want.W}, [4]int{got.C, got.D, got.H, got.W})
	for i, w := range want.Data {
		g := got.Data[i]
		if math.IsNaN(float64(g)) {
			return math.Inf(1), 0
		}
		e = max(e, math.Abs(float64(g)-float64(w)))
		scale = max(scale, math.Abs(float64(w)))
	}
	return e, scale
}

func TestFastConvMatchesReference(t *testing.T) {
	cases := []struct {
		in, out, d, h, w, k, stride int
		residual                    bool
	}{
		{1, 8, 5, 7, 9, 3, 1, false}, // convInit: one input channel
		{3, 5, 7, 5, 9, 3, 1, false}, // fewer output channels than a block
		{2, 3, 1, 1, 1, 3, 1, true},  // a single voxel: only the centre tap, and a residual
		{1, 1, 2, 1, 2, 3, 1, false},
		{5, 7, 9, 6, 11, 3, 2, false}, // stride 2, odd sizes: the last window overhangs
		{4, 6, 5, 7, 3, 3, 2, false},
		{7, 3, 1, 2, 2, 3, 2, false},
		{32, 64, 8, 8, 8, 3, 2, false},   // stride 2 as in the network
		{6, 11, 3, 4, 5, 1, 1, false},    // 1x1x1
		{13, 5, 2, 3, 17, 1, 1, false},   // 1x1x1, rows of 19 positions with the halo
		{64, 32, 3, 4, 6, 1, 1, false},   // the decoder's channel halving
		{9, 33, 4, 13, 50, 3, 1, true},   // 676 positions a plane: 14 blocks and a tail
		{33, 9, 3, 3, 97, 3, 1, false},   // rows longer than two blocks
		{32, 32, 6, 12, 12, 3, 1, true},  // the bundle's block, deepest-level geometry
		{256, 256, 3, 5, 4, 3, 1, true},  // 256 channels: 32 input-channel chunks, 4 groups
		{128, 256, 6, 6, 5, 3, 2, false}, // the deepest downsampling
		{256, 17, 2, 3, 3, 1, 1, false},
		{200, 250, 2, 2, 3, 3, 1, false}, // channels that are multiples of nothing here
	}
	eachISA(t, func(t *testing.T, isa *cpuISA) {
		for _, tc := range cases {
			name := fmt.Sprintf("%d->%d_%dx%dx%d_k%d_s%d_res%v", tc.in, tc.out, tc.d, tc.h, tc.w, tc.k, tc.stride, tc.residual)
			t.Run(name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(3, uint64(tc.in*1000+tc.out*7+tc.w)))
				c := &Conv{Name: "test", In: tc.in, Out: tc.out, K: tc.k, Stride: tc.stride,
					W: randSlice(rng, tc.out*tc.in*tc.k*tc.k*tc.k, 0.3, 0)}
				x := randTensor(rng, tc.in, tc.d, tc.h, tc.w, 0)
				od, oh, ow := convOutSize(tc.d, tc.stride), convOutSize(tc.h, tc.stride), convOutSize(tc.w, tc.stride)
				var res *Tensor
				if tc.residual {
					res = randTensor(rng, tc.out, od, oh, ow, 0)
				}
				want, err := conv3D(x, c, res)
				require.NoError(t, err)

				f := &fastNet{isa: isa}
				in := newPbuf(tc.in, tc.d, tc.h, tc.w, false)
				poison(in, false)
				in.fromTensor(x)
				out := newPbuf(tc.out, od, oh, ow, false)
				poison(out, !tc.residual)
				if tc.residual {
					out.fromTensor(res)
				}
				f.convPadded(out, in, packConv(c, isa), tc.residual)
				e, scale := tensorErr(t, out.toTensor(), want)
				require.LessOrEqual(t, e, opTol*max(scale, 1), "max error %g at scale %g", e, scale)
				requireZeroHalo(t, out)
				requireZeroHalo(t, in)
				require.Equal(t, x.Data, in.toTensor().Data, "the input is left as it was")
			})
		}
	})
}

func TestFastGroupNormMatchesReference(t *testing.T) {
	cases := []struct {
		c, d, h, w int
		offset     float32
	}{
		{8, 1, 1, 1, 0},
		{8, 3, 5, 7, 0},
		{16, 4, 3, 9, 3},     // an offset far from zero: the variance must not cancel
		{16, 5, 6, 13, -500}, // a much larger one
		{32, 6, 5, 4, -1},
		{256, 2, 3, 3, 0},
	}
	eachISA(t, func(t *testing.T, isa *cpuISA) {
		f := &fastNet{isa: isa}
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%dx%dx%dx%d_%g", tc.c, tc.d, tc.h, tc.w, tc.offset), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(4, uint64(tc.c*100+tc.w)))
				n := &Norm{Name: "test", C: tc.c, Groups: 8, Gamma: randSlice(rng, tc.c, 0.5, 1), Beta: randSlice(rng, tc.c, 0.5, 0)}
				x := randTensor(rng, tc.c, tc.d, tc.h, tc.w, tc.offset)
				ref, err := groupNorm(x, n, true)
				require.NoError(t, err)
				src := newPbuf(tc.c, tc.d, tc.h, tc.w, false)
				src.fromTensor(x)
				dst := newPbuf(tc.c, tc.d, tc.h, tc.w, false)
				poison(dst, true)
				f.groupNormPadded(dst, src, n)
				// Far from zero, x*scale + shift cancels and both float32 versions lose digits
				// to the float64 definition: the kernels (one rounding, a fused multiply-add)
				// may lose no more than the reference (two).
				truth := naiveGroupNorm(to64(x), n, true)
				eRef, scale := maxErr(ref, truth)
				e, _ := maxErr(dst.toTensor(), truth)
				t.Logf("max error against float64: %.3g (reference %.3g) at scale %.3g", e, eRef, scale)
				require.LessOrEqual(t, e, max(eRef, 2e-6*max(scale, 1)))
				requireZeroHalo(t, dst)

				f.groupNormPadded(src, src, n) // in place, as the ResBlock's second norm
				require.Equal(t, dst.toTensor().Data, src.toTensor().Data)
				requireZeroHalo(t, src)

				unpadded := NewTensor(tc.c, tc.d, tc.h, tc.w)
				src.fromTensor(x)
				f.groupNormToTensor(unpadded, src, n)
				require.Equal(t, dst.toTensor().Data, unpadded.Data)
			})
		}
	})
}

func TestFastUpsampleMatchesReference(t *testing.T) {
	for _, s := range [][4]int{{1, 1, 1, 1}, {3, 2, 3, 1}, {5, 3, 4, 6}, {32, 6, 6, 6}} {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, uint64(s[0]*10+s[3])))
			x := randTensor(rng, s[0], s[1], s[2], s[3], 0)
			skip := randTensor(rng, s[0], 2*s[1], 2*s[2], 2*s[3], 0)
			want, err := upsampleAdd(x, skip)
			require.NoError(t, err)
			xb := newPbuf(s[0], s[1], s[2], s[3], false)
			xb.fromTensor(x)
			sb := newPbuf(s[0], 2*s[1], 2*s[2], 2*s[3], false)
			sb.fromTensor(skip)
			upsampleAddPadded(sb, xb)
			// the same float32 operations in the same order as the reference
			require.Equal(t, want.Data, sb.toTensor().Data)
			requireZeroHalo(t, sb)
		})
	}
}

func TestFastHeadMatchesReference(t *testing.T) {
	eachISA(t, func(t *testing.T, isa *cpuISA) {
		for _, k := range []int{1, 9, 105, 256} {
			t.Run(fmt.Sprint(k), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(6, uint64(k)))
				n := randomNet(t, 8, k, int64(k))
				f := n.fast()
				require.NotNil(t, f)
				// 2 x 3 x 347: a volume that is no multiple of a head chunk or a block
				feat := randTensor(rng, 8, 2, 3, 347, 0)
				want, err := conv3D(feat, &n.Final, nil)
				require.NoError(t, err)
				got := f.headTensor(feat)
				e, scale := tensorErr(t, got, want)
				require.LessOrEqual(t, e, opTol*max(scale, 1))

				// the labels are the argmax of exactly these logits, first maximum winning
				lab := n.HeadArgmax(feat)
				nv := feat.Voxels()
				for v := range nv {
					best := 0
					for o := 1; o < k; o++ {
						if got.Data[o*nv+v] > got.Data[best*nv+v] {
							best = o
						}
					}
					require.Equal(t, uint8(best), lab[v], "voxel %d", v)
				}
			})
		}
	})
}

// The fast Trace visits the reference's layers, in its order, with its shapes and values.
func TestFastTraceMatchesReference(t *testing.T) {
	n := randomNet(t, 8, 5, 9)
	x := randTensor(rand.New(rand.NewPCG(7, 7)), 1, 16, 8, 24, 0)
	type layer struct {
		name string
		t    *Tensor
	}
	trace := func() []layer {
		var ls []layer
		_, err := n.Trace(x, func(name string, t *Tensor) {
			ls = append(ls, layer{name, &Tensor{C: t.C, D: t.D, H: t.H, W: t.W, Data: append([]float32(nil), t.Data...)}})
		})
		require.NoError(t, err)
		return ls
	}
	withLevel(t, "generic")
	want := trace()
	eachISA(t, func(t *testing.T, isa *cpuISA) {
		got := trace()
		require.Len(t, got, len(want))
		for i := range want {
			require.Equal(t, want[i].name, got[i].name)
			e, scale := tensorErr(t, got[i].t, want[i].t)
			require.LessOrEqual(t, e, 1e-4*max(scale, 1), "%s: max error %g at scale %g", want[i].name, e, scale)
		}
		// every buffer the pool keeps for the next window has a zero halo
		f := n.fast()
		for _, l := range f.pool.free {
			for _, b := range l {
				if !b.phase {
					requireZeroHalo(t, b)
				}
			}
		}
	})
}

func TestCPUKernelLevels(t *testing.T) {
	levels := CPUKernelLevels()
	require.Equal(t, "generic", levels[len(levels)-1])
	_, err := pickISA("no-such-isa")
	require.ErrorContains(t, err, "CTSEG_CPU=no-such-isa")
	k, err := pickISA("GENERIC")
	require.NoError(t, err)
	require.Nil(t, k)
	_, err = SetCPUKernels("no-such-isa")
	require.Error(t, err)
	// NetShape has no weights: the reference's checks answer for it
	withLevel(t, levels[0])
	shape, err := NetShape(randomNet(t, 8, 3, 1).Cfg)
	require.NoError(t, err)
	require.Nil(t, shape.fast())
}
