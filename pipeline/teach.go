package pipeline

import (
	"fmt"
	"math"

	"ctseg/model"
)

// What the Teach view asks of a prepared CT: what the network computes in the window around a
// voxel, how the windows covering it voted, and what a cube of another tissue changes. Voxels
// are indices of the input CT (as the page's views have them); they are taken to the
// preprocessed grid as the inversion takes labels back.

// Probe is every block's plane through a voxel, in the window that weighs most there.
type Probe struct {
	Size   [3]int // the preprocessed grid
	Voxel  [3]int // the voxel on it
	Start  [3]int // the window's start (padded volume)
	Local  [3]int // the voxel in the window
	ROI    [3]int // the window's size
	Blocks []model.ProbeBlock
}

// gpuNet is opt.Net, or a network built for the call (release it with the returned function).
func (p *Prepared) gpuNet(net *model.Net, opt Options) (*model.GPUNet, func(), error) {
	if !p.Fits(opt) {
		return nil, nil, fmt.Errorf("internal error: the CT was prepared for other options")
	}
	if opt.GPU == nil {
		return nil, nil, fmt.Errorf("the probe runs on the GPU")
	}
	if opt.Net != nil {
		if opt.Net.F16() != opt.F16 {
			return nil, nil, fmt.Errorf("internal error: the prepared GPU network does not match the options")
		}
		return opt.Net, func() {}, nil
	}
	g, err := NewGPUNet(net, opt)
	if err != nil {
		return nil, nil, err
	}
	return g, g.Release, nil
}

// Fits tells whether p was prepared for opt's spacing and window (Run, Probe, Votes and
// Occlude need them equal).
func (p *Prepared) Fits(opt Options) bool {
	return p.opt.Spacing == opt.Spacing && p.opt.window() == opt.window()
}

// Voxel is the preprocessed voxel of an input voxel.
func (p *Prepared) Voxel(ijk [3]int) ([3]int, error) { return p.inv.ToPreprocessed(ijk) }

// Probe runs the window of the prepared CT that weighs most at input voxel ijk and returns
// every block's output on the plane through it (model.GPUNet.Probe).
func (p *Prepared) Probe(net *model.Net, opt Options, ijk [3]int) (*Probe, error) {
	v, err := p.Voxel(ijk)
	if err != nil {
		return nil, err
	}
	st, local, err := p.plan.WindowAt(v)
	if err != nil {
		return nil, err
	}
	g, release, err := p.gpuNet(net, opt)
	if err != nil {
		return nil, err
	}
	defer release()
	blocks, err := g.Probe(p.plan.Window(p.vol, st), local[2])
	if err != nil {
		return nil, err
	}
	return &Probe{Size: p.plan.Size, Voxel: v, Start: st, Local: local, ROI: p.plan.ROI, Blocks: blocks}, nil
}

// Votes runs every window covering input voxel ijk and returns how each voted (its logits
// there, its weight) and their blend.
func (p *Prepared) Votes(net *model.Net, opt Options, ijk [3]int) ([]model.Vote, []float64, error) {
	v, err := p.Voxel(ijk)
	if err != nil {
		return nil, nil, err
	}
	g, release, err := p.gpuNet(net, opt)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	votes, err := g.Votes(p.vol, p.plan, v)
	if err != nil {
		return nil, nil, err
	}
	return votes, model.Blend(votes), nil
}

// Occlusion is what a cube of another tissue did to a segmentation.
type Occlusion struct {
	Box           [2][3]int // the cube on the preprocessed grid, [lo, hi)
	Windows       int       // windows of the whole run
	Touched       int       // windows the cube is in
	Rerun         int       // windows re-run: those that share voxels with the touched ones
	Changed       int       // input voxels whose label changed
	Labels        []uint8   // the new label map on the input grid
	Before, After []int     // voxels per class on the input grid
	// PreLabels is the new label map on the network's grid ([D][H][W]), prev's outside
	// [Lo, Hi), the touched windows' union, where nothing can have changed.
	PreLabels []uint8
	Lo, Hi    [3]int
}

// Occlude puts a cube of sizeMM millimetres of the given HU around input voxel ijk into the
// prepared CT's network input, through the CT's own normalisation (so only the windows it
// touches see another input), and runs again the windows whose results can change: those
// overlapping the touched windows' union (every window covering a voxel there). prev must be
// Run's result for p with opt (its PreLabels kept). The labels outside the touched windows
// stay prev's; inside they are the new run's, equal to a whole new run's.
func (p *Prepared) Occlude(net *model.Net, opt Options, prev *Result, ijk [3]int, sizeMM float64, hu float32) (*Occlusion, error) {
	if prev == nil || prev.PreLabels == nil {
		return nil, fmt.Errorf("occlusion: segment the CT first")
	}
	now := made{net: net, f16: opt.F16 && opt.GPU != nil, window: opt.window()}
	if len(prev.PreLabels) != p.vol.Voxels() || prev.Spacing != opt.Spacing || prev.made != now {
		return nil, fmt.Errorf("occlusion: the segmentation shown was made with other settings or weights; segment the CT again first")
	}
	if math.IsNaN(float64(hu)) || math.IsInf(float64(hu), 0) {
		return nil, fmt.Errorf("occlusion: %v HU", hu)
	}
	if !(sizeMM > 0) || sizeMM > 500 {
		return nil, fmt.Errorf("occlusion: a cube of %v mm", sizeMM)
	}
	c, err := p.Voxel(ijk)
	if err != nil {
		return nil, err
	}
	size := p.plan.Size
	half := sizeMM / opt.Spacing / 2
	var box [2][3]int
	for a := range 3 {
		box[0][a] = max(0, int(math.Ceil(float64(c[a])-half)))
		box[1][a] = min(size[a], int(math.Floor(float64(c[a])+half))+1)
	}
	vol := &model.Tensor{C: 1, D: size[0], H: size[1], W: size[2], Data: append([]float32(nil), p.vol.Data...)}
	val := p.inv.NormalizedHU(hu)
	for d := box[0][0]; d < box[1][0]; d++ {
		for h := box[0][1]; h < box[1][1]; h++ {
			for w := box[0][2]; w < box[1][2]; w++ {
				vol.Data[(d*size[1]+h)*size[2]+w] = val
			}
		}
	}
	touched := p.plan.Restrict(box[0], box[1])
	// the touched windows' union, on the image
	var lo, hi [3]int
	for a := range 3 {
		lo[a] = touched.Starts[a][0] - p.plan.PadBefore[a]
		hi[a] = touched.Starts[a][len(touched.Starts[a])-1] - p.plan.PadBefore[a] + p.plan.ROI[a]
		lo[a], hi[a] = max(lo[a], 0), min(hi[a], size[a])
	}
	rerun := p.plan.Restrict(lo, hi)
	g, release, err := p.gpuNet(net, opt)
	if err != nil {
		return nil, err
	}
	defer release()
	labels := make([]uint8, vol.Voxels())
	if err := g.SlidingWindow(vol, rerun, model.WindowOutput{Labels: labels}, nil); err != nil {
		return nil, err
	}
	merged := append([]uint8(nil), prev.PreLabels...)
	for d := lo[0]; d < hi[0]; d++ {
		for h := lo[1]; h < hi[1]; h++ {
			i := (d*size[1]+h)*size[2] + lo[2]
			copy(merged[i:i+hi[2]-lo[2]], labels[i:i+hi[2]-lo[2]])
		}
	}
	o := &Occlusion{Box: box, Windows: p.plan.NumWindows(), Touched: touched.NumWindows(), Rerun: rerun.NumWindows(),
		PreLabels: merged, Lo: lo, Hi: hi}
	if o.Labels, err = p.invert(merged); err != nil {
		return nil, err
	}
	o.Before, o.After = make([]int, 256), make([]int, 256)
	for i, l := range o.Labels {
		o.Before[prev.Labels[i]]++
		o.After[l]++
		if l != prev.Labels[i] {
			o.Changed++
		}
	}
	return o, nil
}
