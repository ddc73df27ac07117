//go:build !js

package cli

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/stretchr/testify/assert"
)

// TestBatchDeviceFailureKinds: which errors of a case's run are the device's (the batch stops,
// exit 1, the case not done) and which the case's own (it fails alone, exit 2).
func TestBatchDeviceFailureKinds(t *testing.T) {
	device := []error{
		// what package gpu and the binding say, as package model passes them on
		fmt.Errorf("gpu: upload: %w", errors.New("wgpu.(*Queue).WriteBuffer(): Parent device is lost")),
		fmt.Errorf("gpu: creating buffer logits (4194304 bytes): %w", errors.New("wgpu.(*Device).CreateBuffer(): Not enough memory left")),
		errors.New("gpu: readback failed: the buffer could not be mapped"),
		fmt.Errorf("gpu: map for readback: %w", errors.New("gpu: the buffer cannot be mapped (validation error)")),
		errors.New("gpu: out of host memory for a callback"),
		fmt.Errorf("window 3: %w", &wgpu.Error{Type: wgpu.ErrorTypeOutOfMemory, Message: "allocation"}),
		errors.New("vulkan: ERROR_DEVICE_LOST"),
		errors.New("Device lost: the GPU was reset"),
	}
	for _, err := range device {
		assert.NotNil(t, asDeviceFailure(err, true), "%v: the device's", err)
		assert.Nil(t, asDeviceFailure(err, false), "%v: on the CPU no error is the device's", err)
	}
	data := []error{
		errors.New("gpu: one slice of 600x600 voxels needs 268435456 bytes of accumulator, over this device's binding limit 134217728"),
		errors.New("spacing 2 mm: the bundle's models use 1.5 or 3"),
		errors.New("internal error: 10 values for the [4 4 4] grid"),
		errors.New("read NIfTI sub-03.nii.gz: gzip: invalid header"),
	}
	for _, err := range data {
		assert.Nil(t, asDeviceFailure(err, true), "%v: the case's own", err)
	}
	panicked := &deviceFailure{errors.New("internal error while the network ran: boom")}
	assert.Same(t, panicked, asDeviceFailure(fmt.Errorf("x: %w", panicked), false), "a panic is the machine's on any device")
}
