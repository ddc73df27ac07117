package model

import (
	"ctseg/gpu"
	"ctseg/weights"
)

// GPUPlan is what a GPU sliding-window run will use, computed without a device by the same
// code that sizes the real run (so a run's measured peak equals PeakBytes).
type GPUPlan struct {
	Size, ROI      [3]int
	Windows        int
	NetworkBytes   uint64  // the network's buffers: weights, activations, norms, uniforms
	WindowBytes    uint64  // accumulator ring, importance map, cover table, dispatch parameters, head weights and output chunk
	TransientBytes uint64  // the most held briefly on top: one head chunk's readback
	PeakBytes      uint64  // the sum: the run's peak GPU memory
	MaxBinding     uint64  // the largest single binding
	RingSlices     int     // slices of blended features held at once
	RingAxis       int     // the axis they are slices of (the volume's longest)
	WindowFLOPs    float64 // one window of the network
	TotalFLOPs     float64 // every window, blending and the head
}

// PlanGPU plans a run of the network cfg over plan on a device with these limits, reading back
// read for every voxel.
func PlanGPU(cfg weights.Config, plan *WindowPlan, limits gpu.Limits, opt GPUOptions, read Readback) (*GPUPlan, error) {
	net, err := NetShape(cfg)
	if err != nil {
		return nil, err
	}
	g, err := newGPUNet(nil, limits, net, plan.ROI[0], plan.ROI[1], plan.ROI[2], opt)
	if err != nil {
		return nil, err
	}
	l, err := newWindowLayout(cfg, plan, limits, opt.F16, read)
	if err != nil {
		return nil, err
	}
	p := &GPUPlan{Size: plan.Size, ROI: plan.ROI, Windows: plan.NumWindows(), RingSlices: l.ring, RingAxis: l.axis}
	p.NetworkBytes = g.PlanBytes
	p.WindowBytes = l.passBytes(plan.ROI, cfg)
	p.TransientBytes = l.transientBytes()
	p.PeakBytes = p.NetworkBytes + p.WindowBytes + p.TransientBytes
	p.MaxBinding = max(g.MaxBinding, uint64(l.segSlots)*l.slotBytes, l.outBytes(l.headNZ))
	p.WindowFLOPs = g.FLOPs()
	voxels := float64(plan.Size[0] * plan.Size[1] * plan.Size[2])
	blend := 4 * float64(cfg.InitFilters*plan.ROI[0]*plan.ROI[1]*plan.ROI[2])
	head := 2 * float64(cfg.InitFilters*cfg.OutChannels) * voxels
	p.TotalFLOPs = float64(p.Windows)*(p.WindowFLOPs+blend) + head
	return p, nil
}
