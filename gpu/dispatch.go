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
// browser's GPU watchdog, and wgpu-native's 5 s poll trap). The batch size adapts to the
// device's measured speed so fast GPUs are not slowed by many waits.
type Runner struct {
	ctx *Context
	// BatchSeconds is the target duration of one submission.
	BatchSeconds float64
	budget       float64 // FLOPs per batch, adapted
	// Ahead is how many submitted batches may still be running when Run returns. With 0, Run
	// waits for its work. With 1 the host prepares the next batch (a window's input, its bind
	// groups) while the GPU runs the previous one instead of both taking turns; queue order
	// keeps uploads made meanwhile behind the work already submitted.
	Ahead    int
	inflight []*batch
	lastDone time.Time
	// Timing, when set, times every dispatch on the GPU (Run then waits for each batch).
	Timing *Timing
	// Progress, when set, is called as batches finish with the number of dispatches done.
	Progress func(done, total int)
}

// batch is one submission still being waited for.
type batch struct {
	done       bool
	start      time.Time
	flops      float64
	end, total int // dispatches done when it finishes, of total (for Progress)
}

// NewRunner starts with a budget that takes lavapipe about a quarter of a second.
func (c *Context) NewRunner() *Runner {
	return &Runner{ctx: c, BatchSeconds: 0.25, budget: 2e9}
}

// Run records and submits ds in order; it returns once at most Ahead batches are unfinished.
func (r *Runner) Run(ds []Dispatch) error {
	for i := 0; i < len(ds); {
		j, flops := i, 0.0
		// a layer may be split over batches on slow devices, never merged past the budget
		for j < len(ds) && (j == i || flops+ds[j].FLOPs <= r.budget) && (r.Timing == nil || j-i < maxTimedDispatches) {
			flops += ds[j].FLOPs
			j++
		}
		b := &batch{start: time.Now(), flops: flops, end: j, total: len(ds)}
		if err := r.submit(ds[i:j]); err != nil {
			return err
		}
		if r.Timing != nil {
			if err := r.ctx.Wait(); err != nil {
				return err
			}
			wall := time.Since(b.start).Seconds()
			if err := r.Timing.collect(ds[i:j], wall); err != nil {
				return err
			}
			r.adapt(flops, wall)
			if r.Progress != nil {
				r.Progress(j, len(ds))
			}
			i = j
			continue
		}
		// fires once everything submitted so far, this batch included, is done
		if err := onWorkDone(r.ctx.Queue, func() { b.done = true }); err != nil {
			return err
		}
		r.inflight = append(r.inflight, b)
		for len(r.inflight) > r.Ahead {
			if err := r.retire(); err != nil {
				return err
			}
		}
		i = j
	}
	return nil
}

// Drain waits for every batch this runner submitted. Callers with Ahead > 0 drain before
// reading results on the host or returning.
func (r *Runner) Drain() error {
	for len(r.inflight) > 0 {
		if err := r.retire(); err != nil {
			return err
		}
	}
	return nil
}

// retire waits for the oldest batch and learns the device's speed from it. A batch that
// queued behind another is timed from the other's end, so the rate is not underestimated much.
func (r *Runner) retire() error {
	b := r.inflight[0]
	r.ctx.pollUntil(&b.done)
	r.inflight = r.inflight[1:]
	now := time.Now()
	start := b.start
	if r.lastDone.After(start) {
		start = r.lastDone
	}
	r.lastDone = now
	r.adapt(b.flops, now.Sub(start).Seconds())
	if r.Progress != nil {
		r.Progress(b.end, b.total)
	}
	return r.ctx.pendingError()
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
	if r.Timing != nil {
		if err := r.Timing.record(enc, ds); err != nil {
			enc.Release()
			return err
		}
	} else {
		pass := enc.BeginComputePass(nil)
		for _, d := range ds {
			pass.SetPipeline(d.P.P)
			pass.SetBindGroup(0, d.Group, nil)
			pass.DispatchWorkgroups(d.X, d.Y, d.Z)
		}
		pass.End()
		pass.Release()
	}
	cmd, err := enc.Finish(nil)
	enc.Release()
	if err != nil {
		return fmt.Errorf("gpu: finishing commands: %w", err)
	}
	r.ctx.Queue.Submit(cmd)
	cmd.Release()
	return nil
}
