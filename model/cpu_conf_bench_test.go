package model

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkConfChunk: the CPU head's confidence (confChunk) per voxel, 105 classes of random
// logits: what the confidence adds to the head, apart from the network.
func BenchmarkConfChunk(b *testing.B) {
	cs, k := 1024, 105
	r := rand.New(rand.NewPCG(1, 2))
	logits := make([]float32, cs*k)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 3)
	}
	best := make([]float32, cs)
	labels := make([]uint8, cs)
	for v := range cs {
		best[v] = logits[v]
		for o := 1; o < k; o++ {
			if logits[o*cs+v] > best[v] {
				best[v], labels[v] = logits[o*cs+v], uint8(o)
			}
		}
	}
	conf, second := make([]uint32, cs), make([]uint8, cs)
	sum, sec := make([]float32, cs), make([]float32, cs)
	for b.Loop() {
		confChunk(logits, cs, k, cs, best, labels, conf, second, sum, sec)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(cs), "ns/voxel")
}
