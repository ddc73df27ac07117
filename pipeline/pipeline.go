// Package pipeline turns a CT volume into the bundle's label map, the whole way: preprocessing
// (orientation, spacing, intensity), sliding-window inference on the GPU (or the CPU
// reference), argmax, and the inversion back onto the input grid. The command line and the
// browser both call Segment; neither knows how the other reaches the GPU.
package pipeline

import (
	"time"

	"ctseg/gpu"
	"ctseg/model"
	"ctseg/shaders"
)

// Options of a run.
// MaxPageConfidenceVoxels bounds the CT whose confidence maps (p1, p2, the runner-up: three
// bytes a voxel, and five a voxel of the network's grid during the run) the page keeps, within
// wasm32's memory; ctseg app serves the maps only up to it too, as the page would drop them.
const MaxPageConfidenceVoxels = 160 << 20

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
	// ConvTiles are the convolution tiles tuned for this GPU (`ctseg tune`); nil: defaults.
	// They change speed only, never results.
	ConvTiles map[int]shaders.ConvTile
	// Net, when set, is the GPU network already built on GPU for Window's ROI and F16 (see
	// NewGPUNet): a caller builds it (pipelines compiled, weights uploaded) while it reads the
	// CT, instead of after. Segment uses it and leaves releasing it to the caller.
	Net *model.GPUNet
	// Confidence also computes, in the same pass as the labels, each voxel's p1 (Result.P1);
	// RunnerUp (with Confidence) its p2 and runner-up too (Result.P2, Second: 2 more bytes per
	// voxel of the CT, which the page's hesitation view needs and files do not).
	Confidence, RunnerUp bool
	// KeepPreLabels keeps the labels on the network's grid too (Result.PreLabels).
	KeepPreLabels bool
}

// NewGPUNet builds the network Segment runs for opt (opt.GPU, opt.Window, opt.F16), for
// Options.Net.
func NewGPUNet(net *model.Net, opt Options) (*model.GPUNet, error) {
	r := opt.window().ROI
	return model.NewGPUNet(opt.GPU, net, r[0], r[1], r[2], opt.gpuOptions())
}

func (o Options) gpuOptions() model.GPUOptions {
	return model.GPUOptions{F16: o.F16, ConvTiles: o.ConvTiles}
}

// Stage is the wall time of one step of a run, for --verbose reports and benchmarks.
type Stage struct {
	Name    string
	Seconds float64
}

// stages times consecutive steps.
type stages struct {
	list []Stage
	last time.Time
}

func newStages() *stages { return &stages{last: time.Now()} }

// done closes the step that ran since the previous one.
func (s *stages) done(name string) {
	now := time.Now()
	s.list = append(s.list, Stage{name, now.Sub(s.last).Seconds()})
	s.last = now
}
