package model

import (
	"slices"
	"testing"
)

// TestNEONPresent: ASIMD is part of every ARMv8-A core, so on arm64 the NEON level must be
// there; without it the arm64 runs of the kernel tests (make test-arm64, under qemu) would
// test nothing and pass.
func TestNEONPresent(t *testing.T) {
	if l := CPUKernelLevels(); !slices.Contains(l, "neon") {
		t.Fatalf("kernel levels %v: no neon on arm64", l)
	}
}
