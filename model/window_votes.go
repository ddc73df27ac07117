package model

import "fmt"

// Vote is one window's say at a voxel: the window (its start in the padded volume), its
// importance weight at the voxel, and its logits there.
type Vote struct {
	Start  [3]int
	Weight float32
	Logits []float32
}

// Covering returns the windows of the plan that cover voxel v (of the image, not the padded
// volume), in the plan's order, with v's position in each.
func (p *WindowPlan) Covering(v [3]int) (starts, locals [][3]int) {
	for _, st := range p.Windows() {
		var local [3]int
		in := true
		for a := range 3 {
			local[a] = v[a] + p.PadBefore[a] - st[a]
			in = in && local[a] >= 0 && local[a] < p.ROI[a]
		}
		if in {
			starts, locals = append(starts, st), append(locals, local)
		}
	}
	return starts, locals
}

// WindowAt is the window covering v that weighs most there (the highest importance at v's
// place in it; the first of equals), and v's position in it.
func (p *WindowPlan) WindowAt(v [3]int) (start, local [3]int, err error) {
	starts, locals := p.Covering(v)
	if len(starts) == 0 {
		return start, local, fmt.Errorf("voxel %v is outside the %v volume", v, p.Size)
	}
	imp := p.ImportanceMap()
	r := p.ROI
	best := float32(-1)
	for i, l := range locals {
		if w := imp[(l[0]*r[1]+l[1])*r[2]+l[2]]; w > best {
			best, start, local = w, starts[i], l
		}
	}
	return start, local, nil
}

// Window returns the input of the window at start (a start of the plan): vol's voxels, the
// padding replicated, [D][H][W] of the plan's ROI.
func (p *WindowPlan) Window(vol *Tensor, start [3]int) []float32 {
	out := make([]float32, p.ROI[0]*p.ROI[1]*p.ROI[2])
	extractWindow(vol, start, p.PadBefore, p.ROI, out)
	return out
}

// Restrict returns a plan that runs only the windows overlapping the box [lo, hi) of the
// image on every axis: what a change of the input inside the box can reach. A sliding-window
// run with it gives the full plan's result only where every window covering a voxel is kept:
// on the kept windows that overlap the box, not elsewhere (a voxel no kept window covers gets
// a zero weight sum). Occlusion runs the windows overlapping the touched windows' union and
// keeps only that union (pipeline.Prepared.Occlude).
func (p *WindowPlan) Restrict(lo, hi [3]int) *WindowPlan {
	q := *p
	for a := range 3 {
		q.Starts[a] = nil
		for _, s := range p.Starts[a] {
			w0 := s - p.PadBefore[a]
			if w0 < hi[a] && w0+p.ROI[a] > lo[a] {
				q.Starts[a] = append(q.Starts[a], s)
			}
		}
	}
	return &q
}

// Votes runs every window of plan that covers voxel v of vol through the GPU network and
// returns each one's logits at v (the probe's conv_final) and its importance weight there:
// how each window voted and weighed in. Their weighted mean is the blended logits (Blend).
func (g *GPUNet) Votes(vol *Tensor, plan *WindowPlan, v [3]int) ([]Vote, error) {
	starts, locals := plan.Covering(v)
	if len(starts) == 0 {
		return nil, fmt.Errorf("voxel %v is outside the %v volume", v, plan.Size)
	}
	imp := plan.ImportanceMap()
	r := plan.ROI
	var votes []Vote
	for i, st := range starts {
		l := locals[i]
		blocks, err := g.Probe(plan.Window(vol, st), l[2])
		if err != nil {
			return nil, err
		}
		head := blocks[len(blocks)-1]
		logits := make([]float32, head.C)
		for k := range logits {
			logits[k] = head.Data[(k*head.D+l[0])*head.H+l[1]]
		}
		votes = append(votes, Vote{Start: st, Weight: imp[(l[0]*r[1]+l[1])*r[2]+l[2]], Logits: logits})
	}
	return votes, nil
}

// Blend is the votes' weighted mean: the blended logits at their voxel (in float64; the
// sliding window's own sum differs by float32 rounding).
func Blend(votes []Vote) []float64 {
	if len(votes) == 0 {
		return nil
	}
	out := make([]float64, len(votes[0].Logits))
	ws := 0.0
	for _, v := range votes {
		ws += float64(v.Weight)
		for k, x := range v.Logits {
			out[k] += float64(v.Weight) * float64(x)
		}
	}
	for k := range out {
		out[k] /= ws
	}
	return out
}
