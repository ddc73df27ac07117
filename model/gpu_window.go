package model

import (
	"encoding/binary"
	"fmt"
	"math"

	"ctseg/gpu"
	"ctseg/shaders"
)

// SliceSink receives finished z-slices of the blended result, in increasing z, exactly once
// each: labels ([nz][H][W] class indices) or logits ([K][nz][H][W]).
type SliceSink struct {
	Labels func(z0, nz int, labels []uint8) error
	Logits func(z0, nz int, logits []float32) error
}

// GPUWindowProgress reports windows done out of total.
type GPUWindowProgress func(done, total int)

// RingDepth is the number of z-slices the accumulator holds for a plan: a window row spans
// at most ROI slices, and everything before the current row is already finished.
func RingDepth(plan *WindowPlan) int { return min(plan.ROI[0], plan.Size[0]) }

// SlidingWindow runs MONAI's sliding-window inference over vol (one channel, [D][H][W]) with
// the GPU network, whose window size must be plan.ROI. Memory stays bounded whatever the
// volume: the network's buffers, a ring of RingDepth(plan) z-slices of F blended feature
// channels (never K logits), and one head output chunk; finished slices go to sink as soon as
// no later window can touch them.
func (g *GPUNet) SlidingWindow(vol *Tensor, plan *WindowPlan, sink SliceSink, progress GPUWindowProgress) error {
	if vol.C != 1 || vol.D != plan.Size[0] || vol.H != plan.Size[1] || vol.W != plan.Size[2] {
		return fmt.Errorf("gpu: volume %dx%dx%dx%d does not match the window plan", vol.C, vol.D, vol.H, vol.W)
	}
	if plan.ROI != [3]int{g.D, g.H, g.W} {
		return fmt.Errorf("gpu: window %v differs from the planned network %dx%dx%d", plan.ROI, g.D, g.H, g.W)
	}
	w, err := newWindowPass(g, plan, sink.Labels != nil)
	if err != nil {
		return err
	}
	defer w.release()
	return w.run(vol, sink, progress)
}

// windowPass holds the per-volume GPU state of one sliding-window run.
type windowPass struct {
	g        *GPUNet
	plan     *WindowPlan
	argmax   bool
	acc      shaders.Accumulator
	ring     int // slots
	segSlots int // slots per segment buffer
	segs     []*gpu.Buffer
	gmap     *gpu.Buffer
	headW    *gpu.Buffer
	headB    *gpu.Buffer
	headOut  *gpu.Buffer
	headNZ   int // slices per head chunk
	blend    *shaders.Blend
	blendP   *gpu.Pipeline
	zeroP    map[int]*gpu.Pipeline
	tmp      []*gpu.Buffer // uniforms made per row, released after it
	runner   *gpu.Runner
	peak     uint64
}

func newWindowPass(g *GPUNet, plan *WindowPlan, argmax bool) (*windowPass, error) {
	ctx := g.ctx
	n := g.net
	w := &windowPass{g: g, plan: plan, argmax: argmax, zeroP: map[int]*gpu.Pipeline{}, runner: ctx.NewRunner()}
	w.acc = shaders.Accumulator{C: n.Cfg.InitFilters, HV: plan.Size[1], WV: plan.Size[2]}
	w.ring = RingDepth(plan)
	slotBytes := uint64(4 * w.acc.SlotFloats())
	limit := min(ctx.Limits.MaxStorageBufferBindingSize, ctx.Limits.MaxBufferSize)
	w.segSlots = int(limit / slotBytes)
	if w.segSlots < 1 {
		return nil, fmt.Errorf("gpu: one slice of %dx%d voxels needs %d bytes of accumulator, over this device's binding limit %d", plan.Size[1], plan.Size[2], slotBytes, limit)
	}
	w.segSlots = min(w.segSlots, w.ring)
	fail := func(err error) (*windowPass, error) { w.release(); return nil, err }
	for s := 0; s < w.ring; s += w.segSlots {
		b, err := ctx.NewBuffer("accumulator", uint64(min(w.segSlots, w.ring-s))*slotBytes)
		if err != nil {
			return fail(err)
		}
		w.segs = append(w.segs, b)
	}
	var err error
	if w.gmap, err = ctx.NewBuffer("importance", uint64(4*g.D*g.H*g.W)); err != nil {
		return fail(err)
	}
	if err := ctx.Write(w.gmap, 0, floatBytes(plan.ImportanceMap())); err != nil {
		return fail(err)
	}
	// head weights [K][C] straight from PyTorch's [K][C][1][1][1]
	if w.headW, err = ctx.NewBuffer("head.weight", uint64(4*len(n.Final.W))); err != nil {
		return fail(err)
	}
	if err := ctx.Write(w.headW, 0, floatBytes(n.Final.W)); err != nil {
		return fail(err)
	}
	if w.headB, err = ctx.NewBuffer("head.bias", uint64(4*len(n.Final.B))); err != nil {
		return fail(err)
	}
	if err := ctx.Write(w.headB, 0, floatBytes(n.Final.B)); err != nil {
		return fail(err)
	}
	perSlice := uint64(4 * plan.Size[1] * plan.Size[2])
	if !argmax {
		perSlice *= uint64(n.Cfg.OutChannels)
	}
	w.headNZ = int(min(limit, 64<<20) / perSlice) // chunks of at most 64 MiB of output
	if w.headNZ < 1 {
		return fail(fmt.Errorf("gpu: one slice of logits (%d bytes) is over this device's binding limit", perSlice))
	}
	w.headNZ = min(w.headNZ, w.ring)
	if w.headOut, err = ctx.NewBuffer("head.out", uint64(w.headNZ)*perSlice); err != nil {
		return fail(err)
	}
	w.blend = &shaders.Blend{Acc: w.acc, RD: g.D, RH: g.H, RW: g.W, F16: g.opt.F16}
	if w.blendP, err = shaders.Compile(ctx, w.blend); err != nil {
		return fail(err)
	}
	return w, nil
}

func (w *windowPass) release() {
	for _, b := range w.segs {
		b.Release()
	}
	for _, b := range w.tmp {
		b.Release()
	}
	w.gmap.Release()
	w.headW.Release()
	w.headB.Release()
	w.headOut.Release()
	w.segs, w.tmp = nil, nil
}

// run is a slot run: consecutive z (volume coordinates) in consecutive slots of one segment.
type run struct{ z0, nz, seg, slot int }

// runs splits [z0, z1) at ring wrap-around and segment boundaries, and into pieces of at most
// maxNZ slices.
func (w *windowPass) runs(z0, z1, maxNZ int) []run {
	var out []run
	for z := z0; z < z1; {
		slot := z % w.ring
		seg, local := slot/w.segSlots, slot%w.segSlots
		n := min(z1-z, w.ring-slot, w.segSlots-local, maxNZ)
		out = append(out, run{z0: z, nz: n, seg: seg, slot: local})
		z += n
	}
	return out
}

func (w *windowPass) slotBinding(r run) gpu.Binding {
	sb := uint64(4 * w.acc.SlotFloats())
	return gpu.Binding{Buf: w.segs[r.seg], Offset: uint64(r.slot) * sb, Size: uint64(r.nz) * sb}
}

func (w *windowPass) uniform(words ...uint32) (*gpu.Buffer, error) {
	data := make([]byte, 4*len(words))
	for i, v := range words {
		binary.LittleEndian.PutUint32(data[4*i:], v)
	}
	b, err := w.g.ctx.NewUniform("window-params", data)
	if err == nil {
		w.tmp = append(w.tmp, b)
	}
	return b, err
}

func (w *windowPass) zero(r run) (gpu.Dispatch, error) {
	n := r.nz * w.acc.SlotFloats()
	p, ok := w.zeroP[n]
	spec := &shaders.Zero{N: n}
	if !ok {
		var err error
		if p, err = shaders.Compile(w.g.ctx, spec); err != nil {
			return gpu.Dispatch{}, err
		}
		w.zeroP[n] = p
	}
	bg, err := w.g.ctx.BindGroup(p, w.slotBinding(r))
	if err != nil {
		return gpu.Dispatch{}, err
	}
	x, y, _ := spec.Grid()
	return gpu.Dispatch{Label: "zero", Kind: "blend", P: p, Group: bg, X: x, Y: y, Z: 1}, nil
}

func (w *windowPass) run(vol *Tensor, sink SliceSink, progress GPUWindowProgress) error {
	plan, g := w.plan, w.g
	pad := plan.PadBefore
	D := plan.Size[0]
	zRange := func(sz int) (int, int) { return max(sz-pad[0], 0), min(sz-pad[0]+plan.ROI[0], D) }
	windows := plan.Windows()
	done, entered, finished := 0, 0, 0
	inBuf := make([]float32, g.D*g.H*g.W)
	for ri, sz := range plan.Starts[0] {
		z0, z1 := zRange(sz)
		var ds []gpu.Dispatch
		for _, r := range w.runs(entered, z1, w.ring) { // slices entering the ring start at zero
			d, err := w.zero(r)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		entered = max(entered, z1)
		if err := w.runner.Run(ds); err != nil {
			return err
		}
		for _, st := range windows {
			if st[0] != sz {
				continue
			}
			extractWindow(vol, st, pad, plan.ROI, inBuf)
			if err := g.ctx.Write(g.Input, 0, floatBytes(inBuf)); err != nil {
				return err
			}
			ds := append([]gpu.Dispatch(nil), g.Dispatches...)
			oy, ox := st[1]-pad[1], st[2]-pad[2]
			for _, r := range w.runs(z0, z1, w.ring) {
				u, err := w.uniform(uint32(r.z0-(sz-pad[0])), uint32(r.nz), uint32(int32(oy)), uint32(int32(ox)))
				if err != nil {
					return err
				}
				bg, err := g.ctx.BindGroup(w.blendP, g.bind(g.feat), gpu.Whole(g.featNorm), gpu.Whole(w.gmap), w.slotBinding(r), gpu.Whole(u))
				if err != nil {
					return err
				}
				x, y, z := w.blend.Grid(r.nz)
				ds = append(ds, gpu.Dispatch{Label: "blend", Kind: "blend", P: w.blendP, Group: bg, X: x, Y: y, Z: z, FLOPs: w.blend.FLOPs(r.nz)})
			}
			if err := w.runner.Run(ds); err != nil {
				return err
			}
			done++
			if progress != nil {
				progress(done, len(windows))
			}
		}
		for _, b := range w.tmp {
			b.Release()
		}
		w.tmp = nil
		// slices before the next row's first slice are final
		next := D
		if ri+1 < len(plan.Starts[0]) {
			next, _ = zRange(plan.Starts[0][ri+1])
		}
		if err := w.finish(finished, next, sink); err != nil {
			return err
		}
		finished = max(finished, next)
	}
	if finished < D {
		return fmt.Errorf("gpu: internal error: slices %d..%d never finished", finished, D)
	}
	return nil
}

// finish runs the head over [z0, z1) and hands the results to the sink.
func (w *windowPass) finish(z0, z1 int, sink SliceSink) error {
	ctx := w.g.ctx
	K := w.g.net.Cfg.OutChannels
	hw := w.acc.HV * w.acc.WV
	for _, r := range w.runs(z0, z1, w.headNZ) {
		spec := &shaders.Head{Acc: w.acc, K: K, NZ: r.nz, Argmax: w.argmax}
		p, err := shaders.Compile(ctx, spec)
		if err != nil {
			return err
		}
		out := gpu.Binding{Buf: w.headOut, Size: spec.OutBytes()}
		bg, err := ctx.BindGroup(p, w.slotBinding(r), gpu.Whole(w.headW), gpu.Whole(w.headB), out)
		if err != nil {
			return err
		}
		x, y, z := spec.Grid()
		if err := w.runner.Run([]gpu.Dispatch{{Label: "head", Kind: "head", P: p, Group: bg, X: x, Y: y, Z: z, FLOPs: spec.FLOPs()}}); err != nil {
			return err
		}
		raw, err := ctx.Read(w.headOut, 0, spec.OutBytes())
		if err != nil {
			return err
		}
		if w.argmax {
			labels := make([]uint8, r.nz*hw)
			for i := range labels {
				labels[i] = uint8(binary.LittleEndian.Uint32(raw[4*i:]))
			}
			if err := sink.Labels(r.z0, r.nz, labels); err != nil {
				return err
			}
		} else {
			logits := make([]float32, K*r.nz*hw)
			for i := range logits {
				logits[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
			if err := sink.Logits(r.z0, r.nz, logits); err != nil {
				return err
			}
		}
	}
	return nil
}

// extractWindow copies the window at padded start st out of vol, replicating edge voxels where
// the window reaches into the padding (MONAI's padding_mode "replicate").
func extractWindow(vol *Tensor, st, pad, roi [3]int, dst []float32) {
	clamp := func(v, n int) int { return min(max(v, 0), n-1) }
	i := 0
	for z := 0; z < roi[0]; z++ {
		sz := clamp(st[0]-pad[0]+z, vol.D)
		for y := 0; y < roi[1]; y++ {
			sy := clamp(st[1]-pad[1]+y, vol.H)
			row := vol.Data[(sz*vol.H+sy)*vol.W : (sz*vol.H+sy+1)*vol.W]
			for x := 0; x < roi[2]; x++ {
				dst[i] = row[clamp(st[2]-pad[2]+x, vol.W)]
				i++
			}
		}
	}
}
