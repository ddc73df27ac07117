package model

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// goldenTol is the golden README's safe tolerance for an independent float32 implementation.
const goldenTol = 1e-4

// On every CPU kernel level of this machine and the pure-Go reference.
func TestForwardGolden(t *testing.T) {
	eachLevel(t, testForwardGolden)
}

func testForwardGolden(t *testing.T) {
	cases := []struct {
		name       string
		k, d, h, w int
	}{
		{"segresnet_small", 9, 24, 40, 32},
		{"segresnet_full", 105, 32, 32, 32},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := goldenNet(t, tc.name)
			x := &Tensor{C: 1, D: tc.d, H: tc.h, W: tc.w, Data: readF32(t, tc.d*tc.h*tc.w, "golden", tc.name, "input.f32")}
			want := readF32(t, tc.k*tc.d*tc.h*tc.w, "golden", tc.name, "output.f32")
			got, err := n.Forward(x)
			require.NoError(t, err)
			require.Equal(t, [4]int{tc.k, tc.d, tc.h, tc.w}, [4]int{got.C, got.D, got.H, got.W})
			maxAbs, agree := compareGolden(got, want)
			t.Logf("%s: max abs error %.3g, argmax agreement %.6f", tc.name, maxAbs, agree)
			require.LessOrEqual(t, maxAbs, goldenTol)
			require.Greater(t, agree, 0.999)
		})
	}
}

// The whole network on a random-weight config and a non-cubic input, against the naive
// float64 composition of cpu_naive_test.go.
func TestForwardMatchesNaive(t *testing.T) {
	n := randomNet(t, 8, 5, 7)
	x := randTensor(rand.New(rand.NewPCG(5, 5)), 1, 16, 24, 8, 0)
	got, err := n.Forward(x)
	require.NoError(t, err)
	want := naiveForward(n, to64(x))
	e, scale := maxErr(got, want)
	t.Logf("random F=8 K=5 16x24x8: max error %.3g at scale %.3g", e, scale)
	require.LessOrEqual(t, e, goldenTol*max(scale, 1))

	// Forward is Head(Features), and Trace visits every layer in order.
	var layers []string
	feat, err := n.Trace(x, func(name string, _ *Tensor) { layers = append(layers, name) })
	require.NoError(t, err)
	require.Equal(t, 8, feat.C)
	require.Equal(t, got.Data, n.Head(feat).Data)
	require.Equal(t, "convInit", layers[0])
	require.Equal(t, "conv_final.1", layers[len(layers)-1])
	require.Contains(t, layers, "down_layers.3.4")
	require.Contains(t, layers, "up_layers.2.0")
	require.Len(t, layers, 1+1+3+(2+2+4)+3*2+1)
}

func TestForwardRejectsBadInput(t *testing.T) {
	n := randomNet(t, 8, 3, 1)
	cases := map[string]*Tensor{
		"nil":              nil,
		"two channels":     NewTensor(2, 8, 8, 8),
		"not multiple 8":   NewTensor(1, 8, 12, 8),
		"inconsistent":     {C: 1, D: 8, H: 8, W: 8, Data: make([]float32, 10)},
		"zero size":        {C: 1, D: 0, H: 8, W: 8},
		"negative size":    {C: 1, D: -8, H: -8, W: 8, Data: make([]float32, 512)},
		"odd but not 8ths": NewTensor(1, 7, 8, 8),
	}
	for name, x := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := n.Forward(x)
			require.Error(t, err)
			_, err = n.Features(x)
			require.Error(t, err)
		})
	}
	require.Nil(t, n.Head(NewTensor(3, 8, 8, 8)), "head needs F=8 channels")
}
