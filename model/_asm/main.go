// Command _asm writes model/cpu_kernels_amd64.s and its Go declarations
// (cpu_kernels_amd64.go) with avo (github.com/mmcloughlin/avo): the amd64 convolution kernels
// of the CPU fast path, one per ISA level and block width, and GroupNorm's two passes; and,
// as plain text since avo has no arm64, the NEON convolution kernels, cpu_kernels_arm64.s
// (arm64.go). It lives in its own module so that the project's go.mod does not carry avo;
// the generated files are committed (make vet checks them) and the build never runs this.
//
//	cd model && go generate   (runs: cd _asm && go run . -out ../cpu_kernels_amd64.s -stubs ../cpu_kernels_amd64.go -pkg model -arm64 ../cpu_kernels_arm64.s)
//
// Every kernel computes one block of NOC output channels × NV vectors of consecutive voxel
// positions (see convKernel in model/cpu_isa.go for the contract):
//
//	for ic in [0, nic): for t in [0, ntaps):
//	    p = in + ic*inStride + taps[t]
//	    acc[o][v] += w[(ic*ntaps + t)*NOC + o] * p[v*lanes : (v+1)*lanes]
//
// with acc starting from zero, or from out when accumulate is set, and stored to
// out + o*outStride. The input vectors of a tap stay in registers for all NOC output
// channels, and each weight is broadcast once for its NV vectors: per (ic, tap) NV vector
// loads and NOC broadcasts feed NOC×NV fused multiply-adds.
package main

import (
	"flag"
	"fmt"
	"log"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// isa describes one instruction set: its vector registers, lanes, and the block it computes.
type isa struct {
	name  string
	regs  []reg.VecPhysical
	bytes int // vector size in bytes
	noc   int // output channels per block
	nvMax int // vectors of positions per block, the widest kernel
	zero  func(r reg.VecPhysical)
	temps int // broadcast registers, rotated so consecutive broadcasts do not wait on each other
}

func main() {
	arm64 := flag.String("arm64", "", "also write the arm64 NEON kernels to this file")
	flag.Parse()
	zmm := []reg.VecPhysical{reg.Z0, reg.Z1, reg.Z2, reg.Z3, reg.Z4, reg.Z5, reg.Z6, reg.Z7, reg.Z8, reg.Z9,
		reg.Z10, reg.Z11, reg.Z12, reg.Z13, reg.Z14, reg.Z15, reg.Z16, reg.Z17, reg.Z18, reg.Z19, reg.Z20,
		reg.Z21, reg.Z22, reg.Z23, reg.Z24, reg.Z25, reg.Z26, reg.Z27, reg.Z28, reg.Z29, reg.Z30, reg.Z31}
	ymm := []reg.VecPhysical{reg.Y0, reg.Y1, reg.Y2, reg.Y3, reg.Y4, reg.Y5, reg.Y6, reg.Y7, reg.Y8, reg.Y9,
		reg.Y10, reg.Y11, reg.Y12, reg.Y13, reg.Y14, reg.Y15}
	isas := []isa{
		// AVX-512: 32 registers hold 8 channels × 3 vectors of 16 (24 accumulators), the
		// 3 input vectors and 4 broadcast registers. VPXORD, not VXORPS: the latter needs DQ.
		{name: "AVX512", regs: zmm, bytes: 64, noc: 8, nvMax: 3, temps: 4, zero: func(r reg.VecPhysical) { VPXORD(r, r, r) }},
		// AVX2+FMA: 16 registers hold 4 channels × 3 vectors of 8, the inputs and one broadcast.
		{name: "AVX2", regs: ymm, bytes: 32, noc: 4, nvMax: 3, temps: 1, zero: func(r reg.VecPhysical) { VXORPS(r, r, r) }},
	}
	for _, s := range isas {
		for nv := 1; nv <= s.nvMax; nv++ {
			kernel(s, nv)
		}
	}
	normSums()
	normReLU()
	Generate()
	if *arm64 != "" {
		if err := writeARM64(*arm64); err != nil {
			log.Fatal(err)
		}
	}
}

func kernel(s isa, nv int) {
	name := fmt.Sprintf("conv%s_%d", s.name, nv)
	TEXT(name, NOSPLIT, "func(out *float32, outStride uintptr, in *float32, inStride uintptr, taps *int64, ntaps int, nic int, w *float32, accumulate bool)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s computes %d output channels × %d vectors of %d positions (see convKernel).", name, s.noc, nv, s.bytes/4))
	acc := func(o, v int) reg.VecPhysical { return s.regs[o*nv+v] }
	inReg := func(v int) reg.VecPhysical { return s.regs[s.noc*nv+v] }
	temp := func(i int) reg.VecPhysical { return s.regs[s.noc*nv+nv+i%s.temps] }
	if s.noc*nv+nv+s.temps > len(s.regs) {
		panic(name + ": not enough vector registers")
	}

	out := Load(Param("out"), GP64())
	outStride := Load(Param("outStride"), GP64())
	accumulate := Load(Param("accumulate"), GP8())

	Comment("The accumulators start from out (accumulate) or from zero.")
	p := GP64()
	TESTB(accumulate, accumulate)
	JZ(LabelRef(name + "_zero"))
	MOVQ(out, p)
	for o := range s.noc {
		for v := range nv {
			VMOVUPS(Mem{Base: p, Disp: v * s.bytes}, acc(o, v))
		}
		if o+1 < s.noc {
			ADDQ(outStride, p)
		}
	}
	JMP(LabelRef(name + "_start"))
	Label(name + "_zero")
	for o := range s.noc {
		for v := range nv {
			s.zero(acc(o, v))
		}
	}

	Label(name + "_start")
	in := Load(Param("in"), GP64())
	inStride := Load(Param("inStride"), GP64())
	w := Load(Param("w"), GP64())
	nic := Load(Param("nic"), GP64())
	taps := GP64()
	nt := GP64()
	Label(name + "_ic")
	Load(Param("taps"), taps)
	Load(Param("ntaps"), nt)
	Label(name + "_tap")
	MOVQ(Mem{Base: taps}, p)
	ADDQ(in, p)
	for v := range nv {
		VMOVUPS(Mem{Base: p, Disp: v * s.bytes}, inReg(v))
	}
	for o := range s.noc {
		b := temp(o)
		VBROADCASTSS(Mem{Base: w, Disp: 4 * o}, b)
		for v := range nv {
			VFMADD231PS(inReg(v), b, acc(o, v))
		}
	}
	ADDQ(Imm(uint64(4*s.noc)), w)
	ADDQ(Imm(8), taps)
	DECQ(nt)
	JNZ(LabelRef(name + "_tap"))
	ADDQ(inStride, in)
	DECQ(nic)
	JNZ(LabelRef(name + "_ic"))

	Comment("Store the block.")
	for o := range s.noc {
		for v := range nv {
			VMOVUPS(acc(o, v), Mem{Base: out, Disp: v * s.bytes})
		}
		if o+1 < s.noc {
			ADDQ(outStride, out)
		}
	}
	VZEROUPPER()
	RET()
}

// normSums is GroupNorm's statistics pass over one channel: the sum and the sum of squares of
// x - shift, in float64 (the reference's precision), n a multiple of 8. AVX2 suffices: the
// pass is bound by memory, not by the vector width.
func normSums() {
	TEXT("normSumsAVX2", NOSPLIT, "func(x *float32, n int, shift float64) (s, q float64)")
	Pragma("noescape")
	Doc("normSumsAVX2 returns the sum of x[i]-shift and of (x[i]-shift)^2 over n (a multiple of 8) values, in float64.")
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	sh := Load(Param("shift"), reg.X9) // physical: the allocator knows nothing of Y0-Y8 below
	shift, a, b := reg.Y8, reg.Y4, reg.Y5
	VBROADCASTSD(sh, shift)
	for _, r := range []reg.VecPhysical{reg.Y0, reg.Y1, reg.Y2, reg.Y3} {
		VXORPD(r, r, r)
	}
	TESTQ(n, n)
	JZ(LabelRef("normSums_done"))
	Label("normSums_loop")
	VCVTPS2PD(Mem{Base: x}, a)
	VCVTPS2PD(Mem{Base: x, Disp: 16}, b)
	VSUBPD(shift, a, a)
	VSUBPD(shift, b, b)
	VADDPD(a, reg.Y0, reg.Y0)
	VADDPD(b, reg.Y1, reg.Y1)
	VFMADD231PD(a, a, reg.Y2)
	VFMADD231PD(b, b, reg.Y3)
	ADDQ(Imm(32), x)
	SUBQ(Imm(8), n)
	JNZ(LabelRef("normSums_loop"))
	Label("normSums_done")
	hsum := func(lo, hi reg.VecPhysical, t reg.VecPhysical) {
		VADDPD(hi, lo, lo)
		VEXTRACTF128(Imm(1), lo, t.AsX())
		VADDPD(t.AsX(), lo.AsX(), lo.AsX())
		VHADDPD(lo.AsX(), lo.AsX(), lo.AsX())
	}
	hsum(reg.Y0, reg.Y1, reg.Y6)
	hsum(reg.Y2, reg.Y3, reg.Y7)
	Store(reg.X0, ReturnIndex(0))
	Store(reg.X2, ReturnIndex(1))
	VZEROUPPER()
	RET()
}

// normReLU is GroupNorm's second pass with the ReLU: dst = max(0, src*scale + shift) over n
// (a multiple of 8) values, dst may be src. max's operands are ordered so that a NaN passes
// through, as Go's max lets it.
func normReLU() {
	TEXT("normReLUAVX2", NOSPLIT, "func(dst, src *float32, n int, scale, shift float32)")
	Pragma("noescape")
	Doc("normReLUAVX2 sets dst[i] = max(0, src[i]*scale + shift) for n (a multiple of 8) values.")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	n := Load(Param("n"), GP64())
	sc := Load(Param("scale"), reg.X11)
	sh := Load(Param("shift"), reg.X12)
	vsc, vsh, zero := reg.Y8, reg.Y9, reg.Y10
	VBROADCASTSS(sc, vsc)
	VBROADCASTSS(sh, vsh)
	VXORPS(zero, zero, zero)
	step := func(regs []reg.VecPhysical) {
		for i, r := range regs {
			VMOVUPS(Mem{Base: src, Disp: 32 * i}, r)
		}
		for _, r := range regs {
			VFMADD213PS(vsh, vsc, r)
		}
		for _, r := range regs {
			VMAXPS(r, zero, r)
		}
		for i, r := range regs {
			VMOVUPS(r, Mem{Base: dst, Disp: 32 * i})
		}
		ADDQ(Imm(uint64(32*len(regs))), src)
		ADDQ(Imm(uint64(32*len(regs))), dst)
		SUBQ(Imm(uint64(8*len(regs))), n)
	}
	Label("normReLU_wide")
	CMPQ(n, Imm(32))
	JL(LabelRef("normReLU_narrow"))
	step([]reg.VecPhysical{reg.Y0, reg.Y1, reg.Y2, reg.Y3})
	JMP(LabelRef("normReLU_wide"))
	Label("normReLU_narrow")
	TESTQ(n, n)
	JZ(LabelRef("normReLU_done"))
	step([]reg.VecPhysical{reg.Y0})
	JMP(LabelRef("normReLU_narrow"))
	Label("normReLU_done")
	VZEROUPPER()
	RET()
}
