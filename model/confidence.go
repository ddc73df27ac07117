package model

import "math"

// The confidence on the host: what the GPU head computes in the argmax pass (shaders/head.wgsl),
// from logits already blended, for the CPU path and for `ctseg forward --confidence`.

// Top is one voxel's decision: the chosen class (the first maximum, as argmax), the runner-up
// (the first maximum among the others) and their softmax probabilities.
type Top struct {
	Label, Second int
	P1, P2        float64
}

// SoftmaxTop computes Top from k logits, logit(j) for class j, in float64.
func SoftmaxTop(logit func(j int) float32, k int) Top {
	t := Top{Second: -1}
	best := logit(0)
	for j := 1; j < k; j++ {
		if x := logit(j); x > best {
			t.Label, best = j, x
		}
	}
	var second float32
	sum := 0.0
	for j := 0; j < k; j++ {
		x := logit(j)
		sum += math.Exp(float64(x) - float64(best))
		if j != t.Label && (t.Second < 0 || x > second) {
			t.Second, second = j, x
		}
	}
	t.P1 = 1 / sum
	if t.Second >= 0 {
		t.P2 = math.Exp(float64(second)-float64(best)) / sum
	} else {
		t.Second = 0
	}
	return t
}

// PackConf packs p1 and p2 into a WindowOutput.Conf word as WGSL's pack2x16unorm does.
func PackConf(p1, p2 float64) uint32 {
	u := func(x float64) uint32 { return uint32(math.Round(math.Max(0, math.Min(1, x)) * 65535)) }
	return u(p1) | u(p2)<<16
}

// SoftmaxP1 is p1 for every voxel of logits [k][nv] (a Tensor's channel-major layout).
func SoftmaxP1(logits []float32, k int) []float32 {
	nv := len(logits) / k
	p1 := make([]float32, nv)
	const chunk = 4096
	parallelFor((nv+chunk-1)/chunk, func(c int) {
		for i := c * chunk; i < min(nv, (c+1)*chunk); i++ {
			p1[i] = float32(SoftmaxTop(func(j int) float32 { return logits[j*nv+i] }, k).P1)
		}
	})
	return p1
}
