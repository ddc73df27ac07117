package model

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// The CPU path runs on vector kernels where the processor has them (cpu_kernels_*.s, chosen
// at run time from what golang.org/x/sys/cpu reports) and on the pure-Go reference of
// cpu_ops.go everywhere else. The reference stays the definition: every kernel is tested
// against it, and CTSEG_CPU=generic forces it.

//go:generate sh -c "cd _asm && go run . -out ../cpu_kernels_amd64.s -stubs ../cpu_kernels_amd64.go -pkg model -arm64 ../cpu_kernels_arm64.s"

// convKernel computes one block of isa.noc output channels × nv vectors of isa.lanes
// consecutive positions:
//
//	for ic in [0, nic): for t in [0, ntaps):
//	    p = in + ic*inStride + taps[t]          (bytes)
//	    acc[o][v] += w[(ic*ntaps + t)*noc + o] * p[v*lanes : (v+1)*lanes]
//
// acc starts from zero, or from out when accumulate is set, and is stored to
// out + o*outStride (bytes). nic and ntaps are at least 1; every address it reads or
// writes must lie in allocated memory (the callers' buffers keep slack for that).
type convKernel func(out *float32, outStride uintptr, in *float32, inStride uintptr, taps *int64, ntaps int, nic int, w *float32, accumulate bool)

// cpuISA is one set of vector kernels.
type cpuISA struct {
	name  string // as CTSEG_CPU names it: avx512, avx2, neon
	lanes int    // float32 per vector
	noc   int    // output channels per block
	// kernels[nv-1] computes nv vectors of positions; the last is the widest block.
	kernels []convKernel
	// GroupNorm's two passes over n values, n a multiple of 8 (nil: Go loops): the sums of
	// x-shift and of its square in float64, and dst = max(0, src*scale + shift).
	normSums func(x *float32, n int, shift float64) (s, q float64)
	normReLU func(dst, src *float32, n int, scale, shift float32)
}

// sums returns the sum of v[i]-shift and of its square, in float64.
func (k *cpuISA) sums(v []float32, shift float64) (s, q float64) {
	n := 0
	if k.normSums != nil && len(v) >= 8 {
		n = len(v) &^ 7
		s, q = k.normSums(&v[0], n, shift)
	}
	for _, x := range v[n:] {
		d := float64(x) - shift
		s += d
		q += d * d
	}
	return s, q
}

// scaleReLU sets dst[i] = max(0, src[i]*scale + shift); dst may be src.
func (k *cpuISA) scaleReLU(dst, src []float32, scale, shift float32) {
	src = src[:len(dst)]
	n := 0
	if k.normReLU != nil && len(dst) >= 8 {
		n = len(dst) &^ 7
		k.normReLU(&dst[0], &src[0], n, scale, shift)
	}
	if k.normReLU == nil {
		for i := n; i < len(dst); i++ {
			dst[i] = max(src[i]*scale+shift, 0)
		}
		return
	}
	// the tail as the kernel computes it, one fused multiply-add, so that a value does not
	// depend on whether it fell in a kernel's run (a padded plane) or a tail (a short row)
	for i := n; i < len(dst); i++ {
		dst[i] = max(fmaf(src[i], scale, shift), 0)
	}
}

// block is the number of positions of the widest kernel.
func (k *cpuISA) block() int { return k.lanes * len(k.kernels) }

// cpuISAs lists the kernels this build has that this processor runs, best first: archISAs
// of the architecture's file (cpu_isa_amd64.go, cpu_isa_arm64.go, cpu_isa_other.go).
var cpuISAs = archISAs()

var cpuSel struct {
	sync.Mutex
	isa *cpuISA // nil: the pure-Go reference
	err error   // CTSEG_CPU named kernels this machine lacks
}

func init() {
	cpuSel.isa, cpuSel.err = pickISA(os.Getenv("CTSEG_CPU"))
}

// pickISA resolves a CTSEG_CPU value: "" the best available, "generic" the reference, or
// the name of one level ("avx512", "avx2", "neon").
func pickISA(want string) (*cpuISA, error) {
	want = strings.ToLower(strings.TrimSpace(want))
	switch want {
	case "":
		if len(cpuISAs) == 0 {
			return nil, nil
		}
		return cpuISAs[0], nil
	case "generic":
		return nil, nil
	}
	for _, k := range cpuISAs {
		if k.name == want {
			return k, nil
		}
	}
	return nil, fmt.Errorf("CTSEG_CPU=%s: this machine's CPU kernels are %s", want, strings.Join(CPUKernelLevels(), ", "))
}

// CPUKernelLevels names the kernel levels this machine can run, best first, ending with
// "generic" (the pure-Go reference).
func CPUKernelLevels() []string {
	var out []string
	for _, k := range cpuISAs {
		out = append(out, k.name)
	}
	return append(out, "generic")
}

// CPUKernels names the kernels the CPU path uses ("avx512", "avx2", "neon" or "generic"), or
// returns the error of a CTSEG_CPU value that this machine cannot honour.
func CPUKernels() (string, error) {
	cpuSel.Lock()
	defer cpuSel.Unlock()
	if cpuSel.err != nil {
		return "", cpuSel.err
	}
	if cpuSel.isa == nil {
		return "generic", nil
	}
	return cpuSel.isa.name, nil
}

// SetCPUKernels selects the CPU kernels by level name (as CTSEG_CPU does) and returns the
// previous name; benchmarks and tests use it to compare levels in one process.
func SetCPUKernels(name string) (string, error) {
	k, err := pickISA(name)
	if err != nil {
		return "", err
	}
	cpuSel.Lock()
	defer cpuSel.Unlock()
	prev := "generic"
	if cpuSel.isa != nil {
		prev = cpuSel.isa.name
	}
	cpuSel.isa, cpuSel.err = k, nil
	return prev, nil
}

// activeISA is the selected kernels, nil for the reference (also when CTSEG_CPU was bad:
// the CLI reports that error before it runs anything).
func activeISA() *cpuISA {
	cpuSel.Lock()
	defer cpuSel.Unlock()
	return cpuSel.isa
}
