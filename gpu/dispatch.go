package gpu

import (
	"fmt"
	"time"

	"github.com/cogentcore/webgpu/wgpu"
)

// Dispatch is one compute dispatch, prepared once (pipeline, bind group, grid) and replayed.
type Dispatch struct {
	Label   string
	Kind    string // layer kind for reports: "conv3x3", "conv3x3s2", "conv1x1", "groupnorm", ...
	P       *Pipeline
	Group   *wgpu.BindGroup
	X, Y, Z uint32
	FLOPs   float64 // useful floating-point operations, for GFLOP/s and submit batching
}

// Runner submits dispatches in batches small enough that no submission runs for long (a
// browser's GPU watchdog, and wgpu-native's 5 s poll trap), waiting for each batch. The batch
// size adapts to the device's measured speed so fast GPUs are not slowed by many waits.
type Runner struct {
	ctx *Context
	// BatchSeconds is the target duration of one submission.
	BatchSeconds float64
	budget       float64 // FLOPs per batch, adapted
	// Progress, when set, is called after every batch with the number of dispatches done.
	Progress func(done, total int)
}

// NewRunner starts with a budget that takes lavapipe about a quarter of a second.
func (c *Context) NewRunner() *Runner {
	return &Runner{ctx: c, BatchSeconds: 0.25, budget: 2e9}
}

// Run records and submits ds in order.
func (r *Runner) Run(ds []Dispatch) error {
	for i := 0; i < len(ds); {
		j, flops := i, 0.0
		// a layer may be split over batches on slow devices, never merged past the budget
		for j < len(ds) && (j == i || flops+ds[j].FLOPs <= r.budget) {
			flops += ds[j].FLOPs
			j++
		}
		start := time.Now()
		if err := r.submit(ds[i:j]); err != nil {
			return err
		}
		if err := r.ctx.Wait(); err != nil {
			return err
		}
		r.adapt(flops, time.Since(start).Seconds())
		if r.Progress != nil {
			r.Progress(j, len(ds))
		}
		i = j
	}
	return nil
}

func (r *Runner) adapt(flops, secs float64) {
	if flops < r.budget/4 || secs <= 0 {
		return // too small a sample to learn from
	}
	rate := flops / secs
	next := rate * r.BatchSeconds
	// grow at most 4x per batch so one lucky batch cannot make the next one run for seconds
	if next > 4*r.budget {
		next = 4 * r.budget
	}
	if next < 1e8 {
		next = 1e8
	}
	r.budget = next
}

func (r *Runner) submit(ds []Dispatch) error {
	enc, err := r.ctx.Device.CreateCommandEncoder(nil)
	if err != nil {
		return fmt.Errorf("gpu: command encoder: %w", err)
	}
	pass := enc.BeginComputePass(nil)
	for _, d := range ds {
		pass.SetPipeline(d.P.P)
		pass.SetBindGroup(0, d.Group, nil)
		pass.DispatchWorkgroups(d.X, d.Y, d.Z)
	}
	pass.End()
	pass.Release()
	cmd, err := enc.Finish(nil)
	enc.Release()
	if err != nil {
		return fmt.Errorf("gpu: finishing commands: %w", err)
	}
	r.ctx.Queue.Submit(cmd)
	cmd.Release()
	return nil
}
