package model

import (
	"math/rand/v2"
	"testing"
)

// forwardFLOPs96 is the bundle note's cost of one 96^3 forward of the full network
// (2 x 247.2 G multiply-adds).
const forwardFLOPs96 = 494.4e9

// BenchmarkForwardFull96 is one bundle-sized window: F=32, K=105, random weights, 96^3, on
// the selected CPU kernels (CTSEG_CPU=generic: the pure-Go reference). The first iteration
// also packs the weights. Run with -benchtime=1x or 3x: one iteration takes seconds (tens
// for the reference). PyTorch's figures on the same machine are in BENCHMARKS.md.
func BenchmarkForwardFull96(b *testing.B) {
	n := randomNet(b, 32, 105, 1)
	x := randTensor(rand.New(rand.NewPCG(1, 96)), 1, 96, 96, 96, 0)
	b.ResetTimer()
	for range b.N {
		if _, err := n.Forward(x); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(forwardFLOPs96*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/window")
}

// BenchmarkConv3x3 is the dominant layer shape: 32 -> 32 channels, 3x3x3, at 48^3, on the
// pure-Go reference (BenchmarkCPUConvLayers times the kernels).
func BenchmarkConv3x3(b *testing.B) {
	const c, s = 32, 48
	rng := rand.New(rand.NewPCG(2, 48))
	conv := &Conv{Name: "bench", In: c, Out: c, K: 3, Stride: 1, W: randSlice(rng, c*c*27, 0.05, 0)}
	x := randTensor(rng, c, s, s, s, 0)
	b.ResetTimer()
	for range b.N {
		if Conv3D(x, conv) == nil {
			b.Fatal("conv failed")
		}
	}
	flops := 2.0 * c * c * 27 * s * s * s
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
