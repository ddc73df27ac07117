package model_test

import (
	"math/rand/v2"
	"testing"

	"ctseg/internal/gputest"
	"ctseg/model"
	"ctseg/weights"
)

// The Teach view's costs, side by side with what they add to (BENCHMARKS.md, "Teach"):
//
//	go test ./model -run '^$' -bench 'Confidence|GPUProbe' -benchtime 3x
//
// on the bundle's network shape (random weights: the cost does not depend on them) with 64³
// windows over a 112³ input (8 windows), which keep a run on lavapipe short; the head's share
// of a window's work is nearly the same at 96³.

// benchNet is the bundle's network (105 classes) with random weights, on the GPU for 64³
// windows, and a 112³ random input: 8 windows.
func benchNet(b *testing.B, f16 bool) (*model.GPUNet, *model.Tensor, *model.WindowPlan) {
	b.Helper()
	ctx := gputest.Context(b)
	n, err := model.NewNet(weights.Random(weights.BundleConfig(), 7))
	if err != nil {
		b.Fatal(err)
	}
	opt := model.DefaultWindowOptions()
	opt.ROI = [3]int{64, 64, 64}
	vol := randomInput(112)
	plan, err := model.PlanWindows(vol.D, vol.H, vol.W, opt)
	if err != nil {
		b.Fatal(err)
	}
	g, err := model.NewGPUNet(ctx, n, 64, 64, 64, model.GPUOptions{F16: f16})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(g.Release)
	return g, vol, plan
}

// BenchmarkGPUConfidence: a whole sliding-window run with labels only, and with the confidence
// (p1, p2, runner-up) computed in the same pass and read back.
func BenchmarkGPUConfidence(b *testing.B) {
	g, vol, plan := benchNet(b, true)
	for _, c := range outputs(vol.Voxels()) {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := g.SlidingWindow(vol, plan, c.out, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(plan.NumWindows()), "windows")
		})
	}
}

// BenchmarkGPUProbe: one plain window (a sliding-window run over a volume of the window's
// size: the network, the head, the labels read back) and the probe of the same window (every
// block's plane copied out and read back, the head's plane on the host).
func BenchmarkGPUProbe(b *testing.B) {
	g, vol, plan := benchNet(b, true)
	st := plan.Windows()[0]
	win := plan.Window(vol, st)
	one := &model.Tensor{C: 1, D: 64, H: 64, W: 64, Data: win}
	opt := model.DefaultWindowOptions()
	opt.ROI = plan.ROI
	onePlan, err := model.PlanWindows(64, 64, 64, opt)
	if err != nil {
		b.Fatal(err)
	}
	labels := make([]uint8, one.Voxels())
	b.Run("window", func(b *testing.B) {
		for b.Loop() {
			if err := g.SlidingWindow(one, onePlan, model.WindowOutput{Labels: labels}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("probe", func(b *testing.B) {
		for b.Loop() {
			if _, err := g.Probe(win, 32); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCPUConfidence: the CPU path's sliding window with labels only and with the
// confidence (SlidingWindowOutput), on the same network and input as the GPU's.
func BenchmarkCPUConfidence(b *testing.B) {
	n, err := model.NewNet(weights.Random(weights.BundleConfig(), 7))
	if err != nil {
		b.Fatal(err)
	}
	vol := randomInput(112)
	opt := model.DefaultWindowOptions()
	opt.ROI = [3]int{64, 64, 64}
	for _, c := range outputs(vol.Voxels()) {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := n.SlidingWindowOutput(vol, opt, c.out, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// outputs are a run's outputs with labels only and with the confidence too, for nv voxels.
func outputs(nv int) []struct {
	name string
	out  model.WindowOutput
} {
	return []struct {
		name string
		out  model.WindowOutput
	}{
		{"labels", model.WindowOutput{Labels: make([]uint8, nv)}},
		{"confidence", model.WindowOutput{Labels: make([]uint8, nv), Conf: make([]uint32, nv), Second: make([]uint8, nv)}},
	}
}

// randomInput is a normal random n³ input.
func randomInput(n int) *model.Tensor {
	vol := &model.Tensor{C: 1, D: n, H: n, W: n, Data: make([]float32, n*n*n)}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range vol.Data {
		vol.Data[i] = float32(r.NormFloat64())
	}
	return vol
}
