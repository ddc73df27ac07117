package model

import (
	"encoding/binary"
	"fmt"
	"math"

	"ctseg/gpu"
	"ctseg/shaders"
	"ctseg/weights"
)

// WindowOutput receives the blended result of SlidingWindow: Labels, the class of every voxel
// [D][H][W], or Logits [K][D][H][W] (for golden comparisons). Exactly one is set, sized for
// the plan's volume. With Labels, Conf and Second (both set, or neither) also receive the
// model's confidence in each voxel's label: p1 and p2, the softmax probabilities of the chosen
// class and of the runner-up, as unorm16 each in one word (UnpackConf), and the runner-up
// class; computed in the same pass as the labels from the same blended scores.
type WindowOutput struct {
	Labels []uint8
	Logits []float32
	Conf   []uint32
	Second []uint8
}

// UnpackConf returns p1 and p2 of a word of WindowOutput.Conf (WGSL's pack2x16unorm).
func UnpackConf(w uint32) (p1, p2 float32) {
	return float32(w&0xffff) / 65535, float32(w>>16) / 65535
}

// Readback is what a sliding-window pass reads back for every voxel.
type Readback int

const (
	ReadLogits     Readback = iota // the K blended logits
	ReadLabels                     // the argmax
	ReadConfidence                 // the argmax, p1, p2 and the runner-up
)

func (o WindowOutput) readback() Readback {
	switch {
	case o.Logits != nil:
		return ReadLogits
	case o.Conf != nil:
		return ReadConfidence
	}
	return ReadLabels
}

// GPUWindowProgress reports windows done (submitted, the last perhaps still running) out of
// total after each window; an error stops the run (a user's Cancel) and is returned by
// SlidingWindow.
type GPUWindowProgress func(done, total int) error

// RingAxis is the axis the accumulator ring runs along: the volume's longest, so that the
// plane of the two others, which every slot holds whole, is the smallest.
func RingAxis(plan *WindowPlan) int {
	a := 0
	for i := 1; i < 3; i++ {
		if plan.Size[i] > plan.Size[a] {
			a = i
		}
	}
	return a
}

// RingDepth is the number of slices the accumulator holds for a plan: a row of windows spans
// at most ROI slices along the ring's axis, and everything before the row is finished.
func RingDepth(plan *WindowPlan) int {
	a := RingAxis(plan)
	return min(plan.ROI[a], plan.Size[a])
}

// SlidingWindow runs MONAI's sliding-window inference over vol (one channel, [D][H][W]) with
// the GPU network, whose window size must be plan.ROI. Memory stays bounded whatever the
// volume: the network's buffers, a ring of RingDepth(plan) slices of F blended feature
// channels (never K logits), and one head output chunk; slices are finished (head, argmax,
// read back) as soon as no later window can touch them, and land in out while the GPU runs
// the next row's first window.
func (g *GPUNet) SlidingWindow(vol *Tensor, plan *WindowPlan, out WindowOutput, progress GPUWindowProgress) error {
	if vol.C != 1 || vol.D != plan.Size[0] || vol.H != plan.Size[1] || vol.W != plan.Size[2] {
		return fmt.Errorf("gpu: volume %dx%dx%dx%d does not match the window plan", vol.C, vol.D, vol.H, vol.W)
	}
	if plan.ROI != [3]int{g.D, g.H, g.W} {
		return fmt.Errorf("gpu: window %v differs from the planned network %dx%dx%d", plan.ROI, g.D, g.H, g.W)
	}
	n := vol.Voxels()
	switch {
	case (out.Labels == nil) == (out.Logits == nil):
		return fmt.Errorf("gpu: sliding window needs exactly one of labels and logits")
	case out.Labels != nil && len(out.Labels) != n:
		return fmt.Errorf("gpu: %d labels for %d voxels", len(out.Labels), n)
	case out.Logits != nil && len(out.Logits) != n*g.net.Cfg.OutChannels:
		return fmt.Errorf("gpu: %d logits for %d voxels of %d classes", len(out.Logits), n, g.net.Cfg.OutChannels)
	case (out.Conf == nil) != (out.Second == nil) || out.Conf != nil && out.Labels == nil:
		return fmt.Errorf("gpu: the confidence needs the labels, p1 and p2 and the runner-up")
	case out.Conf != nil && (len(out.Conf) != n || len(out.Second) != n):
		return fmt.Errorf("gpu: %d and %d confidence values for %d voxels", len(out.Conf), len(out.Second), n)
	}
	w, err := newWindowPass(g, plan, out.readback())
	if err != nil {
		return err
	}
	defer w.release()
	return w.run(vol, out, progress)
}

// windowLayout is the sizing of a sliding-window pass: the accumulator ring, its split into
// buffers, the head's output chunks. It depends only on shapes and limits, so the planner
// (PlanGPU, `ctseg segment --dry-run`) and the real run use the same numbers.
type windowLayout struct {
	plan      *WindowPlan
	axis      int // the ring's axis
	pb, pc    int // the plane's axes
	acc       shaders.Accumulator
	ring      int // slots
	segSlots  int // slots per segment buffer
	slotBytes uint64
	headNZ    int // slices per head chunk
	read      Readback
	classes   int
}

func newWindowLayout(cfg weights.Config, plan *WindowPlan, limits gpu.Limits, f16 bool, read Readback) (*windowLayout, error) {
	l := &windowLayout{plan: plan, axis: RingAxis(plan)}
	l.pb, l.pc = shaders.PlaneAxes(l.axis)
	l.acc = shaders.Accumulator{C: cfg.InitFilters, HV: plan.Size[l.pb], WV: plan.Size[l.pc], F16: f16}
	l.ring = RingDepth(plan)
	l.slotBytes = uint64(4 * l.acc.SlotWords())
	limit := min(limits.MaxStorageBufferBindingSize, limits.MaxBufferSize)
	l.segSlots = int(limit / l.slotBytes)
	if l.segSlots < 1 {
		return nil, fmt.Errorf("gpu: one slice of %dx%d voxels needs %d bytes of accumulator, over this device's binding limit %d", l.acc.HV, l.acc.WV, l.slotBytes, limit)
	}
	l.segSlots = min(l.segSlots, l.ring)
	l.read, l.classes = read, cfg.OutChannels
	perSlice := l.outBytes(1)
	// chunks of at most 64 MiB of output; with the confidence (six bytes a voxel) at most 8 MiB,
	// so that the chunk and its readback staging stay about the labels' size (more, smaller
	// head dispatches; the same work)
	chunk := uint64(64 << 20)
	if read == ReadConfidence {
		chunk = 8 << 20
	}
	l.headNZ = int(min(limit, chunk) / perSlice)
	if l.headNZ < 1 {
		return nil, fmt.Errorf("gpu: one slice of logits (%d bytes) is over this device's binding limit", perSlice)
	}
	l.headNZ = min(l.headNZ, l.ring)
	if n := uint64(paramStride * l.paramSlots()); n > limits.MaxBufferSize {
		return nil, fmt.Errorf("gpu: %d window dispatches need %d bytes of parameters, over this device's maxBufferSize %d: use less overlap", l.paramSlots(), n, limits.MaxBufferSize)
	}
	return l, nil
}

// outBytes is the head's output for nz slices: byte labels (in whole words, with the
// confidence words and runner-up bytes after them) or logits.
func (l *windowLayout) outBytes(nz int) uint64 {
	return shaders.HeadOutBytes(nz*l.acc.HV*l.acc.WV, l.classes, l.read != ReadLogits, l.read == ReadConfidence)
}

// segBytes lists the accumulator buffers' sizes.
func (l *windowLayout) segBytes() []uint64 {
	var out []uint64
	for s := 0; s < l.ring; s += l.segSlots {
		out = append(out, uint64(min(l.segSlots, l.ring-s))*l.slotBytes)
	}
	return out
}

// run is a slot run: consecutive z (volume coordinates) in consecutive slots of one segment.
type run struct{ z0, nz, seg, slot int }

// runs splits [z0, z1) at ring wrap-around and segment boundaries, and into pieces of at most
// maxNZ slices.
func (l *windowLayout) runs(z0, z1, maxNZ int) []run {
	var out []run
	for z := z0; z < z1; {
		slot := z % l.ring
		seg, local := slot/l.segSlots, slot%l.segSlots
		n := min(z1-z, l.ring-slot, l.segSlots-local, maxNZ)
		out = append(out, run{z0: z, nz: n, seg: seg, slot: local})
		z += n
	}
	return out
}

// rowZ is the range of slices along the ring's axis that the row of windows starting at s
// covers.
func (l *windowLayout) rowZ(s int) (int, int) {
	p, a := l.plan, l.axis
	return max(s-p.PadBefore[a], 0), min(s-p.PadBefore[a]+p.ROI[a], p.Size[a])
}

// finishedBefore is the first slice the next row touches (the volume's end after the last).
func (l *windowLayout) finishedBefore(ri int) int {
	if starts := l.plan.Starts[l.axis]; ri+1 < len(starts) {
		z, _ := l.rowZ(starts[ri+1])
		return z
	}
	return l.plan.Size[l.axis]
}

// headRuns are the head chunks run after row ri: the slices from the row's own first one (the
// previous row's finishedBefore) to the next row's first one, split at ring wrap-around,
// segments and the chunk size.
func (l *windowLayout) headRuns(ri int) []run {
	from := 0
	if ri > 0 {
		from = l.finishedBefore(ri - 1)
	}
	return l.runs(from, l.finishedBefore(ri), l.headNZ)
}

// paramStride is the distance between two dispatches' parameters in their uniform buffer:
// WebGPU's uniform offset alignment at its largest (every device allows it).
const paramStride = 256

// paramSlots is the number of blend and head dispatches of the whole pass: each has its own
// slot of parameters, written once, so no upload ever waits for a dispatch that still reads a
// slot.
func (l *windowLayout) paramSlots() int {
	n := 0
	for ri, s := range l.plan.Starts[l.axis] { // the same walk as windowPass.run
		z0, z1 := l.rowZ(s)
		n += len(l.plan.Starts[l.pb]) * len(l.plan.Starts[l.pc]) * len(l.runs(z0, z1, l.ring))
		n += len(l.headRuns(ri))
	}
	return n
}

// cover builds the head's cover table (shaders.Cover): for the ring's axis and the plane's
// two, which window starts cover each voxel coordinate, in ascending order, and each start's
// offset from volume to window coordinates.
func (l *windowLayout) cover() ([]uint32, shaders.Cover) {
	var words []uint32
	var c shaders.Cover
	for i, a := range [3]int{l.axis, l.pb, l.pc} {
		p := l.plan
		starts := p.Starts[a]
		c.Pairs[i] = len(words)
		for g := 0; g < p.Size[a]; g++ {
			x := g + p.PadBefore[a] // in the padded volume, where starts are
			first, n := -1, 0
			for j, s := range starts {
				if s <= x && x < s+p.ROI[a] {
					if first < 0 {
						first = j
					}
					n++
				}
			}
			words = append(words, uint32(first), uint32(n))
		}
		c.Bases[i] = len(words)
		for _, s := range starts {
			words = append(words, uint32(int32(p.PadBefore[a]-s)))
		}
	}
	return words, c
}

// coverBytes is the size of the cover table.
func (l *windowLayout) coverBytes() uint64 {
	p := l.plan
	n := 0
	for a := range 3 {
		n += 2*p.Size[a] + len(p.Starts[a])
	}
	return uint64(4 * n)
}

// passBytes is the memory the pass holds for its whole run, and transientBytes the most it
// adds at once on top (one head chunk's readback staging).
func (l *windowLayout) passBytes(roi [3]int, cfg weights.Config) uint64 {
	total := uint64(paramStride*l.paramSlots()) + l.coverBytes() // parameters, cover table
	for _, b := range l.segBytes() {
		total += b
	}
	total += 4 * uint64(roi[0]*roi[1]*roi[2]) // importance map
	hw, hb := shaders.HeadParamBytes(cfg.InitFilters, cfg.OutChannels)
	return total + hw + hb + l.outBytes(l.headNZ) // head weights, bias, output chunk
}

func (l *windowLayout) transientBytes() uint64 {
	var most uint64
	for ri := range l.plan.Starts[l.axis] { // the same walk as windowPass.run
		for _, r := range l.headRuns(ri) {
			most = max(most, l.outBytes(r.nz))
		}
	}
	return most
}

// windowPass holds the per-volume GPU state of one sliding-window run.
type windowPass struct {
	*windowLayout
	g       *GPUNet
	segs    []*gpu.Buffer
	gmap    *gpu.Buffer
	headW   *gpu.Buffer
	headB   *gpu.Buffer
	headOut *gpu.Buffer
	params  *gpu.Buffer // every blend and head dispatch's parameters, a slot each (paramSlots)
	nparam  int         // slots used so far
	cover   *gpu.Buffer // the head's cover table
	blend   *shaders.Blend
	blendP  *gpu.Pipeline
	head    *shaders.Head // for the whole pass but NZ
	headP   *gpu.Pipeline
	zeroP   *gpu.Pipeline
	runner  *gpu.Runner
	// pending is the last head chunk of the rows finished so far, still being read back: it
	// is collected once the next row's first window is queued, so the GPU computes that
	// window while the host waits for the transfer and scatters the labels.
	pending *headRead
}

// headRead is a head chunk's output on its way to the host.
type headRead struct {
	rb *gpu.Readback
	r  run
}

func newWindowPass(g *GPUNet, plan *WindowPlan, read Readback) (*windowPass, error) {
	ctx := g.ctx
	n := g.net
	l, err := newWindowLayout(n.Cfg, plan, ctx.Limits, g.opt.F16, read)
	if err != nil {
		return nil, err
	}
	w := &windowPass{windowLayout: l, g: g, runner: ctx.NewRunner()}
	w.runner.Ahead = 1 // extract and upload the next window while the GPU runs this one
	w.runner.Timing = g.Timing
	fail := func(err error) (*windowPass, error) { w.release(); return nil, err }
	for _, size := range l.segBytes() {
		b, err := ctx.NewBuffer("accumulator", size)
		if err != nil {
			return fail(err)
		}
		w.segs = append(w.segs, b)
	}
	upload := func(label string, v []float32) (*gpu.Buffer, error) {
		b, err := ctx.NewBuffer(label, uint64(4*len(v)))
		if err == nil {
			err = ctx.Write(b, 0, gpu.Float32Bytes(v))
		}
		return b, err
	}
	if w.gmap, err = upload("importance", plan.ImportanceMap()); err != nil {
		return fail(err)
	}
	// head weights [K][C] straight from PyTorch's [K][C][1][1][1], and bias
	headUpload := upload
	if shaders.HeadUniform(n.Cfg.InitFilters, n.Cfg.OutChannels) {
		headUpload = func(label string, v []float32) (*gpu.Buffer, error) {
			return ctx.NewUniform(label, gpu.Float32Bytes(v))
		}
	}
	if w.headW, err = headUpload("head.weight", n.Final.W); err != nil {
		return fail(err)
	}
	if w.headB, err = headUpload("head.bias", n.Final.B); err != nil {
		return fail(err)
	}
	if w.headOut, err = ctx.NewBuffer("head.out", w.outBytes(w.headNZ)); err != nil {
		return fail(err)
	}
	if w.params, err = ctx.NewUniform("window-params", make([]byte, paramStride*l.paramSlots())); err != nil {
		return fail(err)
	}
	words, cov := l.cover()
	if w.cover, err = ctx.NewBuffer("cover", uint64(4*len(words))); err != nil {
		return fail(err)
	}
	if err = ctx.Write(w.cover, 0, gpu.Uint32Bytes(words)); err != nil {
		return fail(err)
	}
	w.blend = &shaders.Blend{Acc: w.acc, RD: g.D, RH: g.H, RW: g.W, Axis: w.axis, F16: g.opt.F16}
	if w.blendP, err = shaders.Compile(ctx, w.blend); err != nil {
		return fail(err)
	}
	if w.zeroP, err = shaders.Compile(ctx, &shaders.Zero{}); err != nil {
		return fail(err)
	}
	w.head = &shaders.Head{Acc: w.acc, K: n.Cfg.OutChannels, Argmax: read != ReadLogits, Confidence: read == ReadConfidence, ROI: plan.ROI, Axis: w.axis, Cover: cov}
	if w.headP, err = shaders.Compile(ctx, w.head); err != nil {
		return fail(err)
	}
	return w, nil
}

func (w *windowPass) release() {
	// nothing in flight may still use what is destroyed below (an error is already being
	// returned, or was checked): the runner's batches, then a readback submitted after them
	w.runner.Drain()
	if w.pending != nil {
		w.pending.rb.Wait()
		w.pending = nil
	}
	for _, b := range w.segs {
		b.Release()
	}
	w.gmap.Release()
	w.headW.Release()
	w.headB.Release()
	w.headOut.Release()
	w.params.Release()
	w.cover.Release()
	w.segs = nil
}

func (w *windowPass) slotBinding(r run) gpu.Binding {
	sb := uint64(4 * w.acc.SlotWords())
	return gpu.Binding{Buf: w.segs[r.seg], Offset: uint64(r.slot) * sb, Size: uint64(r.nz) * sb}
}

// param uploads one blend or head dispatch's parameters into the next free slot and returns
// its binding. Uploads are queued in order with the dispatches, and no slot is written twice.
func (w *windowPass) param(words ...uint32) (gpu.Binding, error) {
	if uint64(w.nparam) >= w.params.Size/paramStride {
		return gpu.Binding{}, fmt.Errorf("gpu: internal error: more dispatches than the %d planned parameter slots", w.params.Size/paramStride)
	}
	data := gpu.Uint32Bytes(words)
	off := uint64(w.nparam * paramStride)
	w.nparam++
	if err := w.g.ctx.Write(w.params, off, data); err != nil {
		return gpu.Binding{}, err
	}
	return gpu.Binding{Buf: w.params, Offset: off, Size: uint64(len(data))}, nil
}

func (w *windowPass) zero(r run) (gpu.Dispatch, error) {
	spec := &shaders.Zero{N: r.nz * w.acc.SlotWords()}
	bg, err := w.g.ctx.BindGroup(w.zeroP, w.slotBinding(r))
	if err != nil {
		return gpu.Dispatch{}, err
	}
	x, y, _ := spec.Grid()
	return gpu.Dispatch{Label: "zero", Kind: "zero", P: w.zeroP, Group: bg, X: x, Y: y, Z: 1}, nil
}

func (w *windowPass) run(vol *Tensor, out WindowOutput, progress GPUWindowProgress) error {
	plan, g, a := w.plan, w.g, w.axis
	pad := plan.PadBefore
	windows := plan.Windows()
	done, entered, finished := 0, 0, 0
	inBuf := make([]float32, g.D*g.H*g.W)
	inBytes := make([]byte, 4*len(inBuf)) // one upload buffer: 3.5 MB a 96^3 window otherwise
	for ri, s := range plan.Starts[a] {
		z0, z1 := w.rowZ(s)
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
			if st[a] != s {
				continue
			}
			extractWindow(vol, st, pad, plan.ROI, inBuf)
			gpu.PutFloat32s(inBytes, inBuf)
			if err := g.ctx.Write(g.Input, 0, inBytes); err != nil {
				return err
			}
			ds := append([]gpu.Dispatch(nil), g.Dispatches...)
			ob, oc := st[w.pb]-pad[w.pb], st[w.pc]-pad[w.pc]
			for _, r := range w.runs(z0, z1, w.ring) {
				u, err := w.param(uint32(r.z0-(s-pad[a])), uint32(r.nz), uint32(int32(ob)), uint32(int32(oc)))
				if err != nil {
					return err
				}
				bg, err := g.ctx.BindGroup(w.blendP, g.bind(g.feat), gpu.Whole(g.featNorm), gpu.Whole(w.gmap), w.slotBinding(r), u)
				if err != nil {
					return err
				}
				x, y, z := w.blend.Grid(r.nz)
				ds = append(ds, gpu.Dispatch{Label: "blend", Kind: "blend", P: w.blendP, Group: bg, X: x, Y: y, Z: z, FLOPs: w.blend.FLOPs(r.nz)})
			}
			if err := w.runner.Run(ds); err != nil {
				return err
			}
			if err := w.collect(out); err != nil {
				return err
			}
			done++
			if progress != nil {
				if err := progress(done, len(windows)); err != nil {
					return err
				}
			}
		}
		// slices before the next row's first slice are final
		if err := w.finish(w.headRuns(ri), out); err != nil {
			return err
		}
		finished = w.finishedBefore(ri)
	}
	if err := w.collect(out); err != nil {
		return err
	}
	if finished < plan.Size[a] {
		return fmt.Errorf("gpu: internal error: slices %d..%d never finished", finished, plan.Size[a])
	}
	return w.runner.Drain()
}

// finish runs the head over the runs of the ring's axis and starts reading the
// results back; collect scatters them into out. Each chunk but the last is collected while
// the GPU runs the next chunk's head; the last is left pending for the next row (or the end
// of the pass). One readback at a time keeps the staging memory to one chunk.
func (w *windowPass) finish(runs []run, out WindowOutput) error {
	ctx := w.g.ctx
	for _, r := range runs {
		spec := *w.head
		spec.NZ = r.nz
		u, err := w.param(shaders.HeadParams(r.z0, r.nz*w.acc.HV*w.acc.WV)...)
		if err != nil {
			return err
		}
		ob := gpu.Binding{Buf: w.headOut, Size: spec.OutBytes()}
		bg, err := ctx.BindGroup(w.headP, w.slotBinding(r), gpu.Whole(w.headW), gpu.Whole(w.headB), ob, gpu.Whole(w.gmap), gpu.Whole(w.cover), u)
		if err != nil {
			return err
		}
		x, y, z := spec.Grid()
		if err := w.runner.Run([]gpu.Dispatch{{Label: "head", Kind: "head", P: w.headP, Group: bg, X: x, Y: y, Z: z, FLOPs: spec.FLOPs()}}); err != nil {
			return err
		}
		if err := w.collect(out); err != nil { // the previous chunk, whose copy is queued before this head
			return err
		}
		rb, err := ctx.ReadAsync(w.headOut, 0, spec.OutBytes())
		if err != nil {
			return err
		}
		w.pending = &headRead{rb: rb, r: r}
	}
	return nil
}

// collect waits for the pending head chunk, if any, and scatters it into out's [D][H][W] (or
// [K][D][H][W]) layout.
func (w *windowPass) collect(out WindowOutput) error {
	if w.pending == nil {
		return nil
	}
	r := w.pending.r
	raw, err := w.pending.rb.Wait()
	w.pending = nil
	if err != nil {
		return err
	}
	size := w.plan.Size
	strides := [3]int{size[1] * size[2], size[2], 1}
	sa, sb, sc := strides[w.axis], strides[w.pb], strides[w.pc]
	// the chunk's results are [(K)][slice][plane b][plane c]
	if w.read != ReadLogits {
		scatterLabels(out.Labels, raw, r.nz, w.acc.HV, w.acc.WV, r.z0*sa, sa, sb, sc)
		if w.read == ReadConfidence {
			nv := r.nz * w.acc.HV * w.acc.WV
			lb := (nv + 3) / 4 * 4
			scatterWords(out.Conf, raw[lb:lb+4*nv], r.nz, w.acc.HV, w.acc.WV, r.z0*sa, sa, sb, sc)
			scatterLabels(out.Second, raw[lb+4*nv:], r.nz, w.acc.HV, w.acc.WV, r.z0*sa, sa, sb, sc)
		}
		return nil
	}
	nv := size[0] * size[1] * size[2]
	runVoxels := r.nz * w.acc.HV * w.acc.WV
	for k := 0; k < w.g.net.Cfg.OutChannels; k++ {
		plane := out.Logits[k*nv : (k+1)*nv]
		i := 4 * k * runVoxels
		for ia := 0; ia < r.nz; ia++ {
			for ib := 0; ib < w.acc.HV; ib++ {
				dst := (r.z0+ia)*sa + ib*sb
				for ic := 0; ic < w.acc.WV; ic++ {
					plane[dst+ic*sc] = math.Float32frombits(binary.LittleEndian.Uint32(raw[i:]))
					i += 4
				}
			}
		}
	}
	return nil
}

// scatterLabels copies src, [na][nb][nc] bytes, into dst at base + ia*sa + ib*sb + ic*sc.
// Where the plane's rows are the volume's rows (sc == 1) each is one copy. Otherwise (the ring
// along the volume's rows) the loops read src in order of its rows with ib outermost, so the
// writes of one ib stay within one plane of the volume. For a chunk of 66 slices of
// 287x287x397 on the CI machine (BenchmarkScatterLabels): 0.5 ms instead of 8.7 voxel by voxel
// with the ring along the first axis, 7.1 instead of 12.5 along the rows; a blocked transpose
// did no better there, since every write lands in its own row either way.
func scatterLabels(dst, src []byte, na, nb, nc, base, sa, sb, sc int) {
	plane := nb * nc
	for ib := 0; ib < nb; ib++ {
		for ia := 0; ia < na; ia++ {
			d := base + ia*sa + ib*sb
			s := src[ia*plane+ib*nc : ia*plane+(ib+1)*nc]
			if sc == 1 {
				copy(dst[d:d+nc], s)
				continue
			}
			for ic, v := range s {
				dst[d+ic*sc] = v
			}
		}
	}
}

// scatterWords is scatterLabels for little-endian 32-bit words.
func scatterWords(dst []uint32, src []byte, na, nb, nc, base, sa, sb, sc int) {
	i := 0
	for ia := 0; ia < na; ia++ {
		for ib := 0; ib < nb; ib++ {
			d := base + ia*sa + ib*sb
			for ic := 0; ic < nc; ic++ {
				dst[d+ic*sc] = binary.LittleEndian.Uint32(src[4*i:])
				i++
			}
		}
	}
}

// extractWindow copies the window at padded start st out of vol, replicating edge voxels where
// the window reaches into the padding (MONAI's padding_mode "replicate"). Rows are copied whole
// where they lie inside the volume: this runs on the host once per window while the GPU waits
// or works ahead, and a per-voxel clamp made it cost about as much as a quarter of a window on
// a fast GPU.
func extractWindow(vol *Tensor, st, pad, roi [3]int, dst []float32) {
	clamp := func(v, n int) int { return min(max(v, 0), n-1) }
	x0 := st[2] - pad[2]                 // first source column
	lo := min(max(-x0, 0), roi[2])       // columns before the volume
	hi := max(min(vol.W-x0, roi[2]), lo) // columns inside end here
	i := 0
	for z := 0; z < roi[0]; z++ {
		sz := clamp(st[0]-pad[0]+z, vol.D)
		for y := 0; y < roi[1]; y++ {
			sy := clamp(st[1]-pad[1]+y, vol.H)
			row := vol.Data[(sz*vol.H+sy)*vol.W : (sz*vol.H+sy+1)*vol.W]
			out := dst[i : i+roi[2]]
			for x := 0; x < lo; x++ {
				out[x] = row[0]
			}
			if hi > lo {
				copy(out[lo:hi], row[x0+lo:])
			}
			for x := hi; x < roi[2]; x++ {
				out[x] = row[vol.W-1]
			}
			i += roi[2]
		}
	}
}
