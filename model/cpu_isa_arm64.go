package model

import "golang.org/x/sys/cpu"

func archISAs() []*cpuISA {
	if !cpu.ARM64.HasASIMD {
		return nil
	}
	return []*cpuISA{{name: "neon", lanes: 4, noc: 8, kernels: []convKernel{convNEON_1, convNEON_2, convNEON_3}}}
}

// The NEON kernels of cpu_kernels_arm64.s (see convKernel).

//go:noescape
func convNEON_1(out *float32, outStride uintptr, in *float32, inStride uintptr, taps *int64, ntaps int, nic int, w *float32, accumulate bool)

//go:noescape
func convNEON_2(out *float32, outStride uintptr, in *float32, inStride uintptr, taps *int64, ntaps int, nic int, w *float32, accumulate bool)

//go:noescape
func convNEON_3(out *float32, outStride uintptr, in *float32, inStride uintptr, taps *int64, ntaps int, nic int, w *float32, accumulate bool)
