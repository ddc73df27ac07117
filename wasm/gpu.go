//go:build js

package main

import (
	"errors"
	"syscall/js"

	"github.com/cogentcore/webgpu/wgpu"

	"ctseg/gpu"
)

// newContext wraps the GPUDevice that worker.js created. The js backend of wgpu v0.23.0
// ignores RequiredLimits and reports no errors itself, so the worker requests the device with
// the adapter's limits and queues its uncapturederror events and device loss; takeError (a
// JS function returning the oldest queued message or null) is how they reach Go.
func newContext(jsDev, o js.Value) (*gpu.Context, func() error) {
	lim := o.Get("limits")
	u64 := func(k string, def uint64) uint64 {
		if v := lim.Get(k); v.Type() == js.TypeNumber {
			return uint64(v.Float())
		}
		return def
	}
	d := gpu.DefaultLimits()
	limits := gpu.Limits{
		MaxStorageBufferBindingSize: u64("maxStorageBufferBindingSize", d.MaxStorageBufferBindingSize),
		MaxBufferSize:               u64("maxBufferSize", d.MaxBufferSize),
		MaxStorageBuffersPerStage:   uint32(u64("maxStorageBuffersPerShaderStage", uint64(d.MaxStorageBuffersPerStage))),
		MaxWorkgroupStorageSize:     uint32(u64("maxComputeWorkgroupStorageSize", uint64(d.MaxWorkgroupStorageSize))),
		MaxInvocationsPerWorkgroup:  uint32(u64("maxComputeInvocationsPerWorkgroup", uint64(d.MaxInvocationsPerWorkgroup))),
		MaxWorkgroupsPerDimension:   uint32(u64("maxComputeWorkgroupsPerDimension", uint64(d.MaxWorkgroupsPerDimension))),
	}
	if o.Get("software").Truthy() {
		// A CPU adapter (SwiftShader): layers go in slabs so no dispatch runs for seconds.
		limits.DispatchFLOPs = gpu.CPUDispatchFLOPs
	}
	take := o.Get("takeError")
	takeErr := func() error {
		if take.Type() != js.TypeFunction {
			return nil
		}
		if v := take.Invoke(); v.Type() == js.TypeString {
			return errors.New(v.String())
		}
		return nil
	}
	dev := wgpu.NewDevice(jsDev)
	ctx := gpu.New(&dev, limits, o.Get("adapter").String())
	ctx.SetErrorSource(takeErr)
	return ctx, takeErr
}
