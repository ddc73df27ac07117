package model_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/model"
)

// TestSoftmaxTop: the host's confidence on hand-made logits: the first maximum wins a tie (as
// argmax), the runner-up is the first maximum among the rest, p1 and p2 are the softmax.
func TestSoftmaxTop(t *testing.T) {
	l := []float32{1, 3, 3, -2, 0.5}
	top := model.SoftmaxTop(func(j int) float32 { return l[j] }, len(l))
	sum := 0.0
	for _, x := range l {
		sum += math.Exp(float64(x))
	}
	require.Equal(t, 1, top.Label)
	require.Equal(t, 2, top.Second)
	require.InDelta(t, math.Exp(3)/sum, top.P1, 1e-15)
	require.InDelta(t, math.Exp(3)/sum, top.P2, 1e-15)

	one := model.SoftmaxTop(func(int) float32 { return 7 }, 1)
	require.Equal(t, model.Top{Label: 0, Second: 0, P1: 1, P2: 0}, one)

	// channel-major logits of 3 classes and 2 voxels
	p1 := model.SoftmaxP1([]float32{0, 10, 0, 0, 0, 0}, 3)
	require.InDelta(t, 1/(1+2*math.Exp(-10)), p1[1], 1e-7)
	require.InDelta(t, 1.0/3, p1[0], 1e-7)

	w := model.PackConf(1, 0.5)
	a, b := model.UnpackConf(w)
	require.Equal(t, float32(1), a)
	require.InDelta(t, 0.5, b, 1.0/65535)
}
