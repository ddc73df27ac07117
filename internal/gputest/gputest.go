//go:build !js

// Package gputest opens the native GPU device for tests. A missing adapter fails the test: GPU
// tests never skip (CI runs them on lavapipe, and a skip would hide a broken setup).
package gputest

import (
	"os"
	"sync"
	"testing"

	"ctseg/gpu"
	"ctseg/native"
)

var (
	once sync.Once
	ctx  *gpu.Context
	err  error
)

// Context returns one shared device for the test binary. CTSEG_TEST_DEFAULT_LIMITS=1 asks
// for WebGPU's default limits only, to check the plans fit what a browser gives.
func Context(t testing.TB) *gpu.Context {
	t.Helper()
	once.Do(func() {
		ctx, err = native.Open(native.DeviceOptions{DefaultLimits: os.Getenv("CTSEG_TEST_DEFAULT_LIMITS") == "1", Timestamps: true})
	})
	if err != nil {
		t.Fatalf("GPU test cannot run: %v", err)
	}
	return ctx
}
