// Package pipeline turns a CT volume into the bundle's label map, the whole way: preprocessing
// (orientation, spacing, intensity), sliding-window inference on the GPU (or the CPU
// reference), argmax, and the inversion back onto the input grid. The command line and the
// browser both call Segment; neither knows how the other reaches the GPU.
package pipeline

import (
	"ctseg/gpu"
	"ctseg/model"
)

// Options of a run.
type Options struct {
	// Spacing is the model's voxel size in mm: 1.5 (model.pt) or 3.0 (model_lowres.pt).
	Spacing float64
	// GPU runs the network on this device; nil runs the CPU reference.
	GPU *gpu.Context
	// F16 stores GPU activations as f16.
	F16 bool
	// Window is the sliding-window configuration (zero value: the bundle's 96^3, overlap
	// 0.25, gaussian).
	Window model.WindowOptions
	// Progress, when set, is called after every window.
	Progress func(done, total int)
	// Cancelled, when set, is polled between windows; a true result stops the run with
	// ErrCancelled.
	Cancelled func() bool
}
