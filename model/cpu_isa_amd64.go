package model

import "golang.org/x/sys/cpu"

func archISAs() []*cpuISA {
	var l []*cpuISA
	// x/sys/cpu reports AVX-512 and AVX only where the OS saves their registers too. Both
	// levels take GroupNorm's AVX2+FMA passes (bound by memory, not by the width), so the
	// AVX-512 level needs those too: a VM may report AVX-512F and hide AVX2 or FMA.
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		l = append(l, &cpuISA{name: "avx512", lanes: 16, noc: 8,
			kernels: []convKernel{convAVX512_1, convAVX512_2, convAVX512_3}, normSums: normSumsAVX2, normReLU: normReLUAVX2})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		l = append(l, &cpuISA{name: "avx2", lanes: 8, noc: 4,
			kernels: []convKernel{convAVX2_1, convAVX2_2, convAVX2_3}, normSums: normSumsAVX2, normReLU: normReLUAVX2})
	}
	return l
}
