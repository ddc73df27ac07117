//go:build !amd64 && !arm64

package model

// archISAs: no vector kernels for this architecture (wasm among them); the reference runs.
func archISAs() []*cpuISA { return nil }
