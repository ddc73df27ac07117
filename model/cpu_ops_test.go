package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// opTol is the tolerated error of one fast float32 op against the float64 definition,
// relative to the largest reference value (float32 rounding over a few hundred terms).
const opTol = 1e-5

func TestConv3DMatchesNaive(t *testing.T) {
	cases := []struct {
		in, out, d, h, w, k, stride int
		bias                        bool
	}{
		{3, 5, 7, 5, 9, 3, 1, false},
		{2, 3, 1, 1, 1, 3, 1, true}, // a single voxel: only the centre tap
		{1, 4, 2, 1, 2, 3, 1, false},
		{5, 7, 9, 6, 11, 3, 2, false}, // stride 2, odd sizes: last window overhangs
		{4, 6, 5, 7, 3, 3, 2, true},
		{7, 3, 1, 2, 2, 3, 2, false},
		{3, 2, 8, 8, 8, 3, 2, false}, // even sizes, as in the network
		{6, 11, 3, 4, 5, 1, 1, true}, // 1x1 with bias, channels that are multiples of nothing
		{13, 5, 2, 3, 17, 1, 1, false},
		{3, 9, 4, 1, 6, 1, 1, true},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%d->%d_%dx%dx%d_k%d_s%d_bias%v", tc.in, tc.out, tc.d, tc.h, tc.w, tc.k, tc.stride, tc.bias)
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.in*1000+tc.w)))
			c := &Conv{Name: "test", In: tc.in, Out: tc.out, K: tc.k, Stride: tc.stride,
				W: randSlice(rng, tc.out*tc.in*tc.k*tc.k*tc.k, 0.3, 0)}
			if tc.bias {
				c.B = randSlice(rng, tc.out, 1, 0)
			}
			x := randTensor(rng, tc.in, tc.d, tc.h, tc.w, 0)
			got := Conv3D(x, c)
			require.NotNil(t, got)
			want := naiveConv(to64(x), c)
			require.Equal(t, [4]int{want.C, want.D, want.H, want.W}, [4]int{got.C, got.D, got.H, got.W})
			// PyTorch's output size for padding 1: ceil(n / stride).
			require.Equal(t, (tc.d+tc.stride-1)/tc.stride, got.D)
			e, scale := maxErr(got, want)
			require.LessOrEqual(t, e, opTol*max(scale, 1), "max error %g at scale %g", e, scale)
		})
	}
}

func TestConv3DResidual(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	c := &Conv{Name: "res", In: 3, Out: 3, K: 3, Stride: 1, W: randSlice(rng, 3*3*27, 0.3, 0)}
	x := randTensor(rng, 3, 5, 4, 6, 0)
	r := randTensor(rng, 3, 5, 4, 6, 0)
	got, err := conv3D(x, c, r)
	require.NoError(t, err)
	want := naiveAdd(naiveConv(to64(x), c), to64(r))
	e, scale := maxErr(got, want)
	require.LessOrEqual(t, e, opTol*max(scale, 1))

	_, err = conv3D(x, c, NewTensor(3, 5, 4, 5))
	require.ErrorContains(t, err, "residual")
}

func TestConv3DRejectsBadInput(t *testing.T) {
	ok := &Conv{Name: "c", In: 2, Out: 3, K: 3, Stride: 1, W: make([]float32, 2*3*27)}
	x := NewTensor(2, 3, 3, 3)
	cases := map[string]struct {
		x *Tensor
		c *Conv
	}{
		"nil input":      {nil, ok},
		"nil conv":       {x, nil},
		"channels":       {NewTensor(3, 3, 3, 3), ok},
		"short data":     {&Tensor{C: 2, D: 3, H: 3, W: 3, Data: make([]float32, 5)}, ok},
		"empty axis":     {&Tensor{C: 2, D: 0, H: 3, W: 3}, ok},
		"kernel 5":       {x, &Conv{Name: "c", In: 2, Out: 3, K: 5, Stride: 1, W: make([]float32, 2*3*125)}},
		"1x1 stride 2":   {x, &Conv{Name: "c", In: 2, Out: 3, K: 1, Stride: 2, W: make([]float32, 6)}},
		"stride 0":       {x, &Conv{Name: "c", In: 2, Out: 3, K: 3, Stride: 0, W: make([]float32, 2*3*27)}},
		"weights length": {x, &Conv{Name: "c", In: 2, Out: 3, K: 3, Stride: 1, W: make([]float32, 7)}},
		"bias length":    {x, &Conv{Name: "c", In: 2, Out: 3, K: 3, Stride: 1, W: make([]float32, 2*3*27), B: make([]float32, 2)}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			require.Nil(t, Conv3D(tc.x, tc.c))
			_, err := conv3D(tc.x, tc.c, nil)
			require.Error(t, err)
		})
	}
}

func TestGroupNormMatchesNaive(t *testing.T) {
	cases := []struct {
		c, groups, d, h, w int
		relu               bool
		offset             float32
	}{
		{8, 8, 3, 5, 7, true, 0}, // one channel per group
		{16, 8, 4, 3, 5, false, 0},
		{24, 4, 1, 1, 3, true, 0},
		{12, 3, 5, 6, 7, false, 100}, // large mean: variance must not cancel
		{8, 1, 2, 9, 1, true, -3},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("c%d_g%d_%dx%dx%d_relu%v_off%v", tc.c, tc.groups, tc.d, tc.h, tc.w, tc.relu, tc.offset)
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, uint64(tc.c)))
			n := &Norm{Name: "gn", C: tc.c, Groups: tc.groups,
				Gamma: randSlice(rng, tc.c, 0.25, 1), Beta: randSlice(rng, tc.c, 0.25, 0)}
			x := randTensor(rng, tc.c, tc.d, tc.h, tc.w, tc.offset)
			got := GroupNorm(x, n, tc.relu)
			require.NotNil(t, got)
			e, scale := maxErr(got, naiveGroupNorm(to64(x), n, tc.relu))
			require.LessOrEqual(t, e, opTol*max(scale, 1), "max error %g at scale %g", e, scale)
		})
	}
	n := &Norm{Name: "gn", C: 6, Groups: 4, Gamma: make([]float32, 6), Beta: make([]float32, 6)}
	require.Nil(t, GroupNorm(NewTensor(6, 1, 1, 1), n, false), "6 channels in 4 groups")
	n.Groups = 3
	require.Nil(t, GroupNorm(NewTensor(5, 1, 1, 1), n, false), "channel mismatch")
	require.Nil(t, GroupNorm(NewTensor(6, 1, 1, 1), nil, false))
}

func TestUpsampleAddMatchesNaive(t *testing.T) {
	for _, sh := range [][4]int{{3, 1, 1, 1}, {2, 3, 5, 2}, {5, 4, 3, 7}, {1, 2, 1, 6}} {
		t.Run(fmt.Sprint(sh), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(4, uint64(sh[3])))
			x := randTensor(rng, sh[0], sh[1], sh[2], sh[3], 0)
			skip := randTensor(rng, sh[0], 2*sh[1], 2*sh[2], 2*sh[3], 0)
			got := UpsampleAdd(x, skip)
			require.NotNil(t, got)
			e, scale := maxErr(got, naiveAdd(naiveUpsample(to64(x)), to64(skip)))
			require.LessOrEqual(t, e, opTol*max(scale, 1), "max error %g", e)
		})
	}
	require.Nil(t, UpsampleAdd(NewTensor(2, 2, 2, 2), NewTensor(2, 4, 4, 3)))
	require.Nil(t, UpsampleAdd(NewTensor(2, 2, 2, 2), NewTensor(1, 4, 4, 4)))
	require.Nil(t, UpsampleAdd(nil, NewTensor(1, 4, 4, 4)))
}

// The formula of the bundle note, on one axis, against the separable implementation.
func TestUpsampleFormula(t *testing.T) {
	x := &Tensor{C: 1, D: 1, H: 1, W: 3, Data: []float32{1, 2, 4}}
	got := UpsampleAdd(x, NewTensor(1, 2, 2, 6))
	require.NotNil(t, got)
	// out[2k] = .75 in[k] + .25 in[k-1], out[2k+1] = .75 in[k] + .25 in[k+1], clamped.
	want := []float32{1, 1.25, 1.75, 2.5, 3.5, 4}
	for p := 0; p < 4; p++ { // the D and H copies are identical
		require.InDeltaSlice(t, want, got.Data[p*6:(p+1)*6], 1e-6)
	}
}

func TestAdd(t *testing.T) {
	a := &Tensor{C: 1, D: 1, H: 1, W: 3, Data: []float32{1, 2, 3}}
	b := &Tensor{C: 1, D: 1, H: 1, W: 3, Data: []float32{10, 20, 30}}
	require.Equal(t, []float32{11, 22, 33}, Add(a, b).Data)
	require.Nil(t, Add(a, NewTensor(1, 1, 3, 1)))
	require.Nil(t, Add(nil, b))
}

func TestParallelForCoversEveryIndex(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 1000} {
		seen := make([]int32, n)
		parallelFor(n, func(i int) { seen[i]++ })
		for i, s := range seen {
			require.Equal(t, int32(1), s, "index %d of %d", i, n)
		}
	}
}
