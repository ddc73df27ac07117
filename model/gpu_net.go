package model

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/cogentcore/webgpu/wgpu"

	"ctseg/gpu"
	"ctseg/shaders"
)

// GPUOptions choose how the network runs on the GPU.
type GPUOptions struct {
	// F16 stores activations as f16 (pack2x16float) with f32 arithmetic.
	F16 bool
	// DispatchFLOPs caps the work of one dispatch, so a submission can be split finely enough
	// for slow adapters (lavapipe, SwiftShader). 0: the device's Limits.DispatchFLOPs.
	DispatchFLOPs float64
	// ConvTiles overrides the blocking of the tiled 3x3x3 convolutions (DefaultConvTile) by
	// layer width, key 0 standing for every width; for tuning (`ctseg bench --tiles`, see
	// ParseConvTiles). A layer with fewer output channels than a tile's MN takes MN = its
	// channels.
	ConvTiles map[int]shaders.ConvTile
	// Untiled keeps every convolution on the register-only kernel (for comparisons).
	Untiled bool
}

// gpuTensor is an activation on the GPU: [C][D][H][W], f32 or channel-pair-packed f16.
type gpuTensor struct {
	C, D, H, W int
	F16        bool
	buf        *gpu.Buffer
	retained   bool // a skip connection: not released by the block that reads it
}

func (t *gpuTensor) bytes() uint64 {
	n := uint64(t.C * t.D * t.H * t.W)
	if t.F16 {
		return 2 * n
	}
	return 4 * n
}

// GPUNet is the network planned for one window size on one device: pipelines compiled,
// weights uploaded and buffers assigned once, then replayed for every window.
type GPUNet struct {
	ctx        *gpu.Context // nil when planning only (see PlanGPU)
	limits     gpu.Limits
	net        *Net
	opt        GPUOptions
	D, H, W    int
	Input      *gpu.Buffer // f32 [1][D][H][W]
	feat       *gpuTensor  // conv_final's input (before its GroupNorm)
	featNorm   *gpu.Buffer // conv_final's GroupNorm as per-channel scale/shift
	Dispatches []gpu.Dispatch
	// Timing, when set, times every dispatch of SlidingWindow on the GPU (for benchmarks: it
	// waits after each window to read the timestamps).
	Timing *gpu.Timing

	convWidth  map[string]int // tiled 3x3x3 layers: label -> input width (for tuning per width)
	probes     []probePoint   // where each block's output is complete (Probe)
	pool       []*gpu.Buffer  // activation buffers, reused across layers
	free       []*gpu.Buffer
	owned      []*gpu.Buffer // weights, norms, uniforms, scratch
	partials   *gpu.Buffer
	PlanBytes  uint64 // bytes of every buffer the plan created
	MaxBinding uint64 // the largest single binding of the plan
}

// NewGPUNet plans the network for windows of d x h x w voxels.
func NewGPUNet(ctx *gpu.Context, net *Net, d, h, w int, opt GPUOptions) (*GPUNet, error) {
	return newGPUNet(ctx, ctx.Limits, net, d, h, w, opt)
}

// newGPUNet builds the plan; with a nil ctx it only sizes it (PlanGPU).
func newGPUNet(ctx *gpu.Context, limits gpu.Limits, net *Net, d, h, w int, opt GPUOptions) (*GPUNet, error) {
	if d%8 != 0 || h%8 != 0 || w%8 != 0 || d <= 0 || h <= 0 || w <= 0 {
		return nil, fmt.Errorf("gpu: window %dx%dx%d: every size must be a positive multiple of 8", d, h, w)
	}
	if opt.DispatchFLOPs <= 0 {
		opt.DispatchFLOPs = limits.DispatchFLOPs
	}
	g := &GPUNet{ctx: ctx, limits: limits, net: net, opt: opt, D: d, H: h, W: w}
	if err := g.build(); err != nil {
		g.Release()
		return nil, err
	}
	return g, nil
}

// Release frees every buffer of the plan.
// DefaultConvTile is the tiled 3x3x3 convolution's blocking for a layer w voxels wide on a
// device: per width, since each width of SegResNet has its own channel count and so its own
// best tile (`ctseg bench --tiles` reports the fastest per layer). CPU adapters (lavapipe,
// SwiftShader): 8 consecutive x-voxels, measured 2.3x faster than the GPU tile on lavapipe.
// GPUs: 2 interleaved x-voxels by 8 channels, 4 staged channels, the H200's fastest whole-window
// choice (BENCHMARKS.md).
func DefaultConvTile(l gpu.Limits, w int) shaders.ConvTile {
	if l.DispatchFLOPs > 0 {
		return shaders.ConvTile{MX: 8, MN: 8, CK: 4, Contig: true}
	}
	return shaders.ConvTile{MX: 2, MN: 8, CK: 4}
}

// ParseConvTiles reads a tile for every layer ("8x8x4c") or tiles per layer width joined by
// "+" ("96=8x8x4c+12=2x8x4/tn16"; other widths keep the default), for GPUOptions.ConvTiles.
func ParseConvTiles(s string) (map[int]shaders.ConvTile, error) {
	out := map[int]shaders.ConvTile{}
	if !strings.Contains(s, "=") {
		t, err := shaders.ParseConvTile(s)
		if err != nil {
			return nil, err
		}
		out[0] = t
		return out, nil
	}
	for _, part := range strings.Split(s, "+") {
		ws, ts, ok := strings.Cut(part, "=")
		w, err := strconv.Atoi(ws)
		if !ok || err != nil || w <= 0 {
			return nil, fmt.Errorf("tiles %q: want TILE or WIDTH=TILE+WIDTH=TILE...", s)
		}
		if _, dup := out[w]; dup {
			return nil, fmt.Errorf("tiles %q: width %d given twice", s, w)
		}
		t, err := shaders.ParseConvTile(ts)
		if err != nil {
			return nil, err
		}
		out[w] = t
	}
	return out, nil
}

// FormatConvTiles is the text form ParseConvTiles reads.
func FormatConvTiles(tiles map[int]shaders.ConvTile) string {
	var parts []string
	for _, w := range slices.Sorted(maps.Keys(tiles)) {
		if w == 0 {
			parts = append(parts, tiles[w].String())
		} else {
			parts = append(parts, fmt.Sprintf("%d=%s", w, tiles[w]))
		}
	}
	return strings.Join(parts, "+")
}

// F16 says whether activations are stored as f16.
func (g *GPUNet) F16() bool { return g.opt.F16 }

func (g *GPUNet) Release() {
	for _, b := range g.pool {
		b.Release()
	}
	for _, b := range g.owned {
		b.Release()
	}
	g.pool, g.owned, g.free = nil, nil, nil
	if g.Input != nil {
		g.Input.Release()
		g.Input = nil
	}
}

func (g *GPUNet) track(b *gpu.Buffer, bind uint64) {
	g.PlanBytes += b.Size
	if bind > g.MaxBinding {
		g.MaxBinding = bind
	}
}

// alloc takes the smallest free activation buffer that fits, or creates one.
func (g *GPUNet) alloc(c, d, h, w int, f16 bool) (*gpuTensor, error) {
	t := &gpuTensor{C: c, D: d, H: h, W: w, F16: f16}
	need := t.bytes()
	sort.Slice(g.free, func(i, j int) bool { return g.free[i].Size < g.free[j].Size })
	for i, b := range g.free {
		if b.Size >= need {
			t.buf = b
			g.free = append(g.free[:i], g.free[i+1:]...)
			return t, nil
		}
	}
	b, err := g.newBuffer(fmt.Sprintf("act%d", len(g.pool)), need)
	if err != nil {
		return nil, err
	}
	g.pool = append(g.pool, b)
	g.track(b, need)
	t.buf = b
	return t, nil
}

func (g *GPUNet) release(t *gpuTensor) {
	if t != nil && !t.retained {
		g.free = append(g.free, t.buf)
	}
}

// newBuffer creates a storage buffer, or in a plan only records its size (the same rounding
// as gpu.Context.NewBuffer, so plans and runs agree to the byte).
func (g *GPUNet) newBuffer(label string, size uint64) (*gpu.Buffer, error) {
	if g.ctx == nil {
		size = (size + 3) &^ 3
		if size == 0 {
			size = 4
		}
		if size > g.limits.MaxBufferSize {
			return nil, fmt.Errorf("gpu: buffer %s needs %d bytes, over the device's maxBufferSize %d", label, size, g.limits.MaxBufferSize)
		}
		return &gpu.Buffer{Size: size}, nil
	}
	return g.ctx.NewBuffer(label, size)
}

func (g *GPUNet) ownedBuffer(label string, data []byte) (*gpu.Buffer, error) {
	b, err := g.newBuffer(label, uint64(len(data)))
	if err != nil {
		return nil, err
	}
	g.owned = append(g.owned, b)
	g.track(b, b.Size)
	if g.ctx != nil {
		if err := g.ctx.Write(b, 0, data); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// compile compiles a spec's pipeline (nothing in a plan).
func (g *GPUNet) compile(s shaders.Spec) (*gpu.Pipeline, error) {
	if g.ctx == nil {
		_, err := s.Source() // still validates the shapes
		return nil, err
	}
	return shaders.Compile(g.ctx, s)
}

func (g *GPUNet) bindGroup(p *gpu.Pipeline, bs ...gpu.Binding) (*wgpu.BindGroup, error) {
	for _, b := range bs {
		if b.Buf != nil && b.Size > g.MaxBinding {
			g.MaxBinding = b.Size
		}
	}
	if g.ctx == nil {
		return nil, nil
	}
	return g.ctx.BindGroup(p, bs...)
}

func (g *GPUNet) uniform(label string, words ...uint32) (*gpu.Buffer, error) {
	data := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(data[4*i:], w)
	}
	var b *gpu.Buffer
	var err error
	if g.ctx == nil {
		b = &gpu.Buffer{Size: uint64((len(data) + 15) &^ 15)}
	} else if b, err = g.ctx.NewUniform(label, data); err != nil {
		return nil, err
	}
	g.owned = append(g.owned, b)
	g.track(b, 0)
	return b, nil
}

// floatsN encodes n floats of v; a plan's shape-only network has no values, so its buffers
// are sized from n alone.
func floatsN(v []float32, n int) []byte {
	if len(v) < n {
		return make([]byte, 4*n)
	}
	return gpu.Float32Bytes(v[:n])
}

func (g *GPUNet) build() error {
	in, err := g.newBuffer("input", uint64(4*g.D*g.H*g.W))
	if err != nil {
		return err
	}
	g.Input = in
	g.track(in, in.Size)
	x := &gpuTensor{C: 1, D: g.D, H: g.H, W: g.W, buf: in, retained: true}
	n := g.net
	cur, err := g.conv(x, &n.Init, nil, nil)
	if err != nil {
		return err
	}
	g.mark("convInit", cur, false)
	top := len(n.Down) - 1
	skips := make([]*gpuTensor, len(n.Down))
	for i, lvl := range n.Down {
		if lvl.Down != nil {
			if cur, err = g.conv(skips[i-1], lvl.Down, nil, nil); err != nil {
				return err
			}
		}
		for bi := range lvl.Blocks {
			if cur, err = g.block(cur, &lvl.Blocks[bi]); err != nil {
				return err
			}
		}
		g.mark(fmt.Sprintf("down_layers.%d", i), cur, false)
		if i < top {
			cur.retained = true
			skips[i] = cur
		}
	}
	for i, lvl := range n.Up {
		r, err := g.conv(cur, &lvl.Reduce, nil, nil)
		if err != nil {
			return err
		}
		g.mark(fmt.Sprintf("up_samples.%d", i), r, true)
		g.release(cur)
		skip := skips[top-1-i]
		if cur, err = g.upsampleAdd(r, skip); err != nil {
			return err
		}
		g.release(r)
		skip.retained = false
		g.release(skip)
		for bi := range lvl.Blocks {
			if cur, err = g.block(cur, &lvl.Blocks[bi]); err != nil {
				return err
			}
		}
		g.mark(fmt.Sprintf("up_layers.%d", i), cur, false)
	}
	g.feat = cur
	if g.featNorm, err = g.groupNorm(cur, &n.FinalNorm); err != nil {
		return err
	}
	return nil
}

// block records a pre-activation ResBlock; both GroupNorm+ReLU steps are fused into the
// convolutions' loads and the residual add into conv2's store.
func (g *GPUNet) block(x *gpuTensor, b *ResBlock) (*gpuTensor, error) {
	n1, err := g.groupNorm(x, &b.Norm1)
	if err != nil {
		return nil, err
	}
	t, err := g.conv(x, &b.Conv1, n1, nil)
	if err != nil {
		return nil, err
	}
	n2, err := g.groupNorm(t, &b.Norm2)
	if err != nil {
		return nil, err
	}
	o, err := g.conv(t, &b.Conv2, n2, x)
	if err != nil {
		return nil, err
	}
	g.release(t)
	g.release(x)
	return o, nil
}

func (g *GPUNet) conv(x *gpuTensor, c *Conv, norm *gpu.Buffer, residual *gpuTensor) (*gpuTensor, error) {
	spec := &shaders.Conv3D{
		Cin: c.In, Cout: c.Out, D: x.D, H: x.H, W: x.W, K: c.K, Stride: c.Stride,
		InF16: x.F16, OutF16: g.opt.F16, NormIn: norm != nil, Residual: residual != nil, Bias: c.B != nil,
	}
	if spec.CanTile() && !g.opt.Untiled {
		spec.Tiled = true
		spec.MaxShared = int(g.limits.MaxWorkgroupStorageSize)
		spec.MaxThreads = int(g.limits.MaxInvocationsPerWorkgroup)
		if g.convWidth == nil {
			g.convWidth = map[string]int{}
		}
		g.convWidth[c.Name] = x.W
		spec.Tile = DefaultConvTile(g.limits, x.W)
		if t, ok := g.opt.ConvTiles[x.W]; ok {
			spec.Tile = t
		} else if t, ok := g.opt.ConvTiles[0]; ok {
			spec.Tile = t
		}
		if tn := min(c.Out, cmp.Or(spec.Tile.TN, 32)); spec.Tile.MN > tn {
			spec.Tile.MN = tn // small networks (tests) have fewer channels than a tile
		}
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	// A whole layer in one dispatch keeps a real GPU full (a slab of a few slices is only a
	// few hundred workgroups, and consecutive dispatches on one buffer serialise); CPU
	// adapters get slabs so no single dispatch runs for seconds.
	spec.SlabDepth = 0
	if g.opt.DispatchFLOPs > 0 {
		spec.SlabDepth = max(1, int(g.opt.DispatchFLOPs/spec.FLOPsPerSlice()))
	}
	do, ho, wo := spec.Out()
	out, err := g.alloc(c.Out, do, ho, wo, g.opt.F16)
	if err != nil {
		return nil, err
	}
	p, err := g.compile(spec)
	if err != nil {
		return nil, err
	}
	var wb *gpu.Buffer
	if g.ctx == nil {
		wb, err = g.newBuffer(c.Name+".weight", spec.PackedBytes())
		if err == nil {
			g.owned = append(g.owned, wb)
			g.track(wb, wb.Size)
		}
	} else {
		var packed []byte
		if packed, err = spec.PackWeights(c.W); err == nil {
			wb, err = g.ownedBuffer(c.Name+".weight", packed)
		}
	}
	if err != nil {
		return nil, err
	}
	binds := []gpu.Binding{g.bind(x), gpu.Whole(wb), g.bind(out), {}}
	if norm != nil {
		binds = append(binds, gpu.Whole(norm))
	}
	if residual != nil {
		binds = append(binds, g.bind(residual))
	}
	if c.B != nil {
		bb, err := g.ownedBuffer(c.Name+".bias", floatsN(c.B, c.Out))
		if err != nil {
			return nil, err
		}
		binds = append(binds, gpu.Whole(bb))
	}
	grids, z0s := spec.Slabs()
	for i, grid := range grids {
		u, err := g.uniform(c.Name+".z0", z0s[i])
		if err != nil {
			return nil, err
		}
		binds[3] = gpu.Whole(u)
		bg, err := g.bindGroup(p, binds...)
		if err != nil {
			return nil, err
		}
		g.Dispatches = append(g.Dispatches, gpu.Dispatch{
			Label: c.Name, Kind: spec.Kind(), P: p, Group: bg, X: grid[0], Y: grid[1], Z: grid[2],
			FLOPs: spec.FLOPsPerSlice() * float64(grid[1]),
		})
	}
	return out, nil
}

// bind binds exactly a tensor's bytes (its buffer may be larger).
func (g *GPUNet) bind(t *gpuTensor) gpu.Binding {
	if t.bytes() > g.MaxBinding {
		g.MaxBinding = t.bytes()
	}
	return gpu.Binding{Buf: t.buf, Size: t.bytes()}
}

func (g *GPUNet) groupNorm(x *gpuTensor, n *Norm) (*gpu.Buffer, error) {
	spec := &shaders.GroupNormStats{C: x.C, N: x.D * x.H * x.W, Groups: n.Groups, F16: x.F16, Eps: GroupNormEps}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	if g.partials == nil || g.partials.Size < spec.PartialsBytes() {
		// one scratch for all layers' partials: dispatches run in order
		size := spec.PartialsBytes()
		if size < 16*8*256 {
			size = 16 * 8 * 256
		}
		b, err := g.newBuffer("groupnorm-partials", size)
		if err != nil {
			return nil, err
		}
		g.owned = append(g.owned, b)
		g.track(b, b.Size)
		g.partials = b
	}
	nb, err := g.newBuffer(n.Name+".scale-shift", spec.NormBytes())
	if err != nil {
		return nil, err
	}
	g.owned = append(g.owned, nb)
	g.track(nb, nb.Size)
	gb, err := g.ownedBuffer(n.Name+".weight", floatsN(n.Gamma, n.C))
	if err != nil {
		return nil, err
	}
	bb, err := g.ownedBuffer(n.Name+".bias", floatsN(n.Beta, n.C))
	if err != nil {
		return nil, err
	}
	p1, err := g.compile(spec)
	if err != nil {
		return nil, err
	}
	fin := shaders.GroupNormFinalize{GroupNormStats: spec}
	p2, err := g.compile(fin)
	if err != nil {
		return nil, err
	}
	part := gpu.Binding{Buf: g.partials, Size: spec.PartialsBytes()}
	bg1, err := g.bindGroup(p1, g.bind(x), part)
	if err != nil {
		return nil, err
	}
	bg2, err := g.bindGroup(p2, part, gpu.Whole(gb), gpu.Whole(bb), gpu.Whole(nb))
	if err != nil {
		return nil, err
	}
	x1, y1, z1 := spec.Grid()
	x2, y2, z2 := fin.Grid()
	g.Dispatches = append(g.Dispatches,
		gpu.Dispatch{Label: n.Name, Kind: "groupnorm", P: p1, Group: bg1, X: x1, Y: y1, Z: z1, FLOPs: spec.FLOPs()},
		gpu.Dispatch{Label: n.Name, Kind: "groupnorm", P: p2, Group: bg2, X: x2, Y: y2, Z: z2})
	return nb, nil
}

func (g *GPUNet) upsampleAdd(low, skip *gpuTensor) (*gpuTensor, error) {
	spec := &shaders.UpsampleAdd{C: low.C, D: low.D, H: low.H, W: low.W, F16: g.opt.F16}
	if skip.C != low.C || skip.D != 2*low.D || skip.H != 2*low.H || skip.W != 2*low.W || skip.F16 != low.F16 {
		return nil, fmt.Errorf("gpu: upsample of %dx%dx%dx%d does not match skip %dx%dx%dx%d", low.C, low.D, low.H, low.W, skip.C, skip.D, skip.H, skip.W)
	}
	out, err := g.alloc(low.C, skip.D, skip.H, skip.W, g.opt.F16)
	if err != nil {
		return nil, err
	}
	p, err := g.compile(spec)
	if err != nil {
		return nil, err
	}
	bg, err := g.bindGroup(p, g.bind(low), g.bind(skip), g.bind(out))
	if err != nil {
		return nil, err
	}
	x, y, z := spec.Grid()
	g.Dispatches = append(g.Dispatches, gpu.Dispatch{Label: "upsample", Kind: "upsample", P: p, Group: bg, X: x, Y: y, Z: z, FLOPs: spec.FLOPs()})
	return out, nil
}

// FLOPs of one window (network only).
func (g *GPUNet) FLOPs() float64 {
	s := 0.0
	for _, d := range g.Dispatches {
		s += d.FLOPs
	}
	return s
}
