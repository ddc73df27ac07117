//go:build unix

package model

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user and system time: on a shared machine, work per CPU-second
// says more about a kernel than wall time, which counts the other programs' share too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCPUConvLayers times every 3x3x3 convolution shape of the bundle's network at a 96³
// window on the selected CPU kernels (CTSEG_CPU picks the level): GFLOP/s of wall time and
// GFLOP per CPU-second.
//
//	go test -run XXX -bench CPUConvLayers -benchtime 3x ./model/
func BenchmarkCPUConvLayers(b *testing.B) {
	isa := activeISA()
	if isa == nil {
		b.Skip("no CPU kernels selected (CTSEG_CPU=generic or none for this CPU): BenchmarkForwardFull96 times the reference")
	}
	for _, tc := range []struct{ in, out, size, stride int }{
		{32, 32, 96, 1}, {32, 64, 96, 2}, {64, 64, 48, 1}, {64, 128, 48, 2},
		{128, 128, 24, 1}, {128, 256, 24, 2}, {256, 256, 12, 1},
	} {
		rng := rand.New(rand.NewPCG(2, uint64(tc.in)))
		conv := &Conv{Name: "bench", In: tc.in, Out: tc.out, K: 3, Stride: tc.stride, W: randSlice(rng, tc.in*tc.out*27, 0.05, 0)}
		f := &fastNet{isa: isa}
		pc := packConv(conv, isa)
		in := newPbuf(tc.in, tc.size, tc.size, tc.size, false)
		in.fromTensor(randTensor(rng, tc.in, tc.size, tc.size, tc.size, 0))
		os := convOutSize(tc.size, tc.stride)
		out := newPbuf(tc.out, os, os, os, false)
		flops := convFLOPs(conv, os*os*os)
		b.Run(fmt.Sprintf("%s/%d-%d_%d_s%d", isa.name, tc.in, tc.out, tc.size, tc.stride), func(b *testing.B) {
			c0 := cpuTime()
			for range b.N {
				f.convPadded(out, in, pc, false)
			}
			ct := cpuTime() - c0
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(flops*float64(b.N)/ct.Seconds()/1e9, "GFLOP/cpu-s")
		})
	}
}
