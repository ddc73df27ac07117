package shaders

import (
	"encoding/binary"
	"fmt"
	"math"

	"ctseg/gpu"
)

// Conv3D specialises conv3d.wgsl. Activations are [C][D][H][W]; in f16 storage channel pairs
// are interleaved in one u32 (pack2x16float), so every f16 tensor has an even channel count.
type Conv3D struct {
	Cin, Cout int
	D, H, W   int // input size
	K, Stride int // kernel 1 or 3; stride 1 or 2
	InF16     bool
	OutF16    bool
	NormIn    bool // apply relu(scale*x+shift) per input channel while loading (fused GroupNorm)
	Residual  bool // add a tensor shaped like the output
	Bias      bool
	XB, OCB   int // tile: x-voxels and output channels per invocation (0: defaults)
	SlabDepth int // output z-slices per dispatch (0: all)
	// Tiled selects conv3d_tiled.wgsl (3x3x3 stride 1, even Cin): input and weights staged
	// in workgroup memory. MaxShared is the device's workgroup storage in bytes (0: WebGPU's
	// default 16 KiB), MaxThreads its invocations per workgroup (0: 256).
	Tiled                 bool
	MaxShared, MaxThreads int
	// Tile is the tiled kernel's blocking (zero fields: defaults). Contiguous tiles give each
	// invocation MX consecutive x-voxels read as vec4s from a row padded to a multiple of 4:
	// MX+2 staged inputs serve 3*MX taps, where the interleaved default loads one input per
	// tap, so fewer workgroup-memory loads per FMA.
	Tile ConvTile
	tile *convTile
}

// convTile is the tiled kernel's geometry, derived once from the shape and limits.
type convTile struct {
	TY, TX, MX, SX, MN, TN, CK, Threads int
	Contig                              bool
	HXP                                 int // staged row length: TX+2, padded to a multiple of 4 when Contig
}

// Workgroup size of the conv kernels: 64 invocations, a multiple of every GPU's SIMD width.
const convWG = 64

func (c *Conv3D) defaults() {
	if c.XB == 0 {
		c.XB = 4
	}
	if c.OCB == 0 {
		c.OCB = 8
		for c.Cout%c.OCB != 0 {
			c.OCB /= 2
		}
	}
}

// Out is the output size: ceil(n / stride) with padding (K-1)/2 (PyTorch's formula for these
// kernels).
func (c *Conv3D) Out() (d, h, w int) {
	s := c.Stride
	return ceilDiv(c.D, s), ceilDiv(c.H, s), ceilDiv(c.W, s)
}

// CanTile reports whether the tiled kernel applies to this layer.
func (c *Conv3D) CanTile() bool {
	return c.K == 3 && c.Stride == 1 && c.Cin%2 == 0
}

// tiling chooses the tiled kernel's geometry: a 32-wide row tile (narrower for narrow
// volumes), MX x-voxels by MN output channels per invocation, up to 32 (Tile.TN) output
// channels per workgroup, as many rows as the invocation limit allows (up to Tile.TY), and the
// largest input-channel chunk that fits workgroup memory.
func (c *Conv3D) tiling() (*convTile, error) {
	if c.tile != nil {
		return c.tile, nil
	}
	if err := c.Tile.check(); err != nil {
		return nil, fmt.Errorf("conv: %w", err)
	}
	// 2 x 8 measured fastest of the register tiles on an H200 (BENCHMARKS.md)
	t := &convTile{MX: 2, MN: 8}
	if c.Tile.MX > 0 {
		t.MX = c.Tile.MX
	}
	if c.Tile.MN > 0 {
		t.MN = c.Tile.MN
	}
	maxThreads := c.MaxThreads
	if maxThreads <= 0 {
		maxThreads = 256
	}
	maxThreads = min(maxThreads, 256)
	maxShared := c.MaxShared
	if maxShared <= 0 {
		maxShared = 16 << 10
	}
	t.TN = 32
	if c.Tile.TN > 0 {
		t.TN = c.Tile.TN
	}
	t.TN = min(c.Cout, t.TN)
	for c.Cout%t.TN != 0 {
		t.TN -= 4
	}
	if t.MN%4 != 0 || t.TN%t.MN != 0 {
		return nil, fmt.Errorf("conv: %d channels per invocation do not divide the block of %d", t.MN, t.TN)
	}
	t.SX = ceilDiv(min(c.W, 32), t.MX)
	t.TX = t.SX * t.MX
	t.HXP = t.TX + 2
	if c.Tile.Contig {
		if t.MX%4 != 0 {
			return nil, fmt.Errorf("conv: contiguous tiles need a multiple of 4 x-voxels per invocation, not %d", t.MX)
		}
		t.Contig, t.HXP = true, (t.TX+2+3)/4*4
	}
	cgs := t.TN / t.MN
	t.TY = max(1, min(c.H, maxThreads/(t.SX*cgs)))
	if c.Tile.TY > 0 {
		t.TY = min(t.TY, c.Tile.TY)
	}
	perChannel := func(ty int) int { return 4 * (3*(ty+2)*t.HXP + 27*t.TN) }
	for t.TY > 1 && 2*perChannel(t.TY) > maxShared { // at least a channel pair must fit
		t.TY--
	}
	t.Threads = t.TY * t.SX * cgs
	if t.Threads > maxThreads || t.Threads == 0 {
		return nil, fmt.Errorf("conv: tile of %d invocations over the limit %d", t.Threads, maxThreads)
	}
	perCh := perChannel(t.TY)
	// 4 staged channels measured fastest on an H200 (smaller workgroup memory, more resident
	// workgroups); BENCHMARKS.md has the sweep.
	maxCK := 4
	if c.Tile.CK > 0 {
		maxCK = c.Tile.CK
	}
	for ck := min(c.Cin, maxCK); ck >= 2; ck -= 2 {
		if c.Cin%ck == 0 && ck*perCh <= maxShared {
			t.CK = ck
			break
		}
	}
	if t.CK == 0 {
		return nil, fmt.Errorf("conv: a 2-channel tile needs %d bytes of workgroup memory, over %d", 2*perCh, maxShared)
	}
	c.tile = t
	return t, nil
}

func (c *Conv3D) Validate() error {
	c.defaults()
	if c.Tiled {
		if !c.CanTile() {
			return fmt.Errorf("conv: the tiled kernel needs 3x3x3, stride 1 and an even channel count")
		}
		if _, err := c.tiling(); err != nil {
			return err
		}
	}
	switch {
	case c.K != 1 && c.K != 3:
		return fmt.Errorf("conv: kernel %d unsupported", c.K)
	case c.Stride != 1 && c.Stride != 2:
		return fmt.Errorf("conv: stride %d unsupported", c.Stride)
	case c.Cout%4 != 0 || c.Cout%c.OCB != 0 || c.OCB%4 != 0:
		return fmt.Errorf("conv: %d output channels must be a multiple of 4 and of the block %d", c.Cout, c.OCB)
	case c.Cin != 1 && c.Cin%2 != 0:
		return fmt.Errorf("conv: %d input channels must be 1 or even", c.Cin)
	case c.InF16 && c.Cin == 1:
		return fmt.Errorf("conv: a 1-channel input is kept in f32")
	case c.NormIn && c.Cin == 1:
		return fmt.Errorf("conv: fused norm needs channel pairs")
	}
	return nil
}

func (c *Conv3D) Kind() string {
	if c.K == 1 {
		return "conv1x1"
	}
	if c.Tiled {
		return "conv3x3"
	}
	if c.Stride == 2 {
		return "conv3x3s2"
	}
	return "conv3x3"
}

func (c *Conv3D) Name() string {
	return fmt.Sprintf("%s %d->%d %dx%dx%d", c.Kind(), c.Cin, c.Cout, c.D, c.H, c.W)
}

func (c *Conv3D) Bindings() []gpu.Access {
	b := []gpu.Access{gpu.ReadOnly, gpu.ReadOnly, gpu.ReadWrite, gpu.Uniform}
	if c.NormIn {
		b = append(b, gpu.ReadOnly)
	}
	if c.Residual {
		b = append(b, gpu.ReadOnly)
	}
	if c.Bias {
		b = append(b, gpu.ReadOnly)
	}
	return b
}

func (c *Conv3D) Source() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	do, ho, wo := c.Out()
	p := map[string]any{
		"Cin": c.Cin, "Cout": c.Cout, "D": c.D, "H": c.H, "W": c.W, "Do": do, "Ho": ho, "Wo": wo,
		"K": c.K, "S": c.Stride, "P": (c.K - 1) / 2, "Taps": c.K * c.K * c.K,
		"CinP": (c.Cin + 1) / 2, "SingleIn": c.Cin == 1,
		"XB": c.XB, "OCB": c.OCB, "OCQ": c.Cout / 4, "OCBQ": c.OCB / 4, "Acc": c.XB * c.OCB / 4,
		"NXC": ceilDiv(wo, c.XB), "Span": (c.XB-1)*c.Stride + c.K,
		"PlaneIn": c.D * c.H * c.W, "PlaneOut": do * ho * wo,
		"InF16": c.InF16, "OutF16": c.OutF16, "NormIn": c.NormIn, "Residual": c.Residual, "Bias": c.Bias,
		"WG": convWG,
	}
	if c.Tiled {
		t, _ := c.tiling()
		p["TY"], p["TX"], p["MX"], p["SX"], p["CK"] = t.TY, t.TX, t.MX, t.SX, t.CK
		p["MN"], p["TN"], p["TNQ"], p["MNQ"], p["NVG"], p["Threads"] = t.MN, t.TN, t.TN/4, t.MN/4, t.TY*t.SX, t.Threads
		p["NChunk"], p["Plane"], p["TilesX"] = c.Cin/t.CK, c.D*c.H*c.W, ceilDiv(c.W, t.TX)
		p["Acc"] = t.MX * t.MN / 4
		p["SIn"], p["SW"] = t.CK*3*(t.TY+2)*t.HXP, t.CK*27*t.TN/4
		p["Contig"], p["HXP"], p["Prefetch"] = t.Contig, t.HXP, c.Tile.Prefetch
		nin, nwt := 3*(t.TY+2)*t.HXP*t.CK/2, t.CK*27*t.TN/4
		p["NPF"], p["NWF"] = ceilDiv(nin, t.Threads), ceilDiv(nwt, t.Threads)
		if t.Contig {
			// the MX+2 inputs of a row, as (vec4 load, component) pairs
			type xv struct {
				I, V int
				C    string
			}
			var xs []xv
			for i := 0; i < t.MX+2; i++ {
				xs = append(xs, xv{i, i / 4, "xyzw"[i%4 : i%4+1]})
			}
			p["XV"], p["NV4"], p["SIn"] = xs, ceilDiv(t.MX+2, 4), t.CK*3*(t.TY+2)*t.HXP/4
		}
		return Render("conv3d_tiled.wgsl", p)
	}
	return Render("conv3d.wgsl", p)
}

// Slabs returns the dispatch grids, one per slab of output z-slices: (x, slab depth, blocks)
// and the z0 each slab starts at.
func (c *Conv3D) Slabs() (grids [][3]uint32, z0s []uint32) {
	c.defaults()
	do, ho, wo := c.Out()
	gx := ceilDiv(ceilDiv(wo, c.XB)*ho, convWG)
	blocks := c.Cout / c.OCB
	if c.Tiled {
		if t, err := c.tiling(); err == nil {
			gx = ceilDiv(ho, t.TY) * ceilDiv(wo, t.TX)
			blocks = c.Cout / t.TN
		}
	}
	sd := c.SlabDepth
	if sd <= 0 || sd > do {
		sd = do
	}
	for z := 0; z < do; z += sd {
		n := sd
		if z+n > do {
			n = do - z
		}
		grids = append(grids, [3]uint32{uint32(gx), uint32(n), uint32(blocks)})
		z0s = append(z0s, uint32(z))
	}
	return grids, z0s
}

// FLOPs per output z-slice (2 per multiply-add).
func (c *Conv3D) FLOPsPerSlice() float64 {
	_, ho, wo := c.Out()
	return 2 * float64(c.Cin) * float64(c.Cout) * float64(c.K*c.K*c.K) * float64(ho*wo)
}

// PackedBytes is the size of PackWeights' result.
func (c *Conv3D) PackedBytes() uint64 {
	return uint64((c.Cin+1)/2*c.K*c.K*c.K*2*c.Cout) * 4
}

// PackWeights lays PyTorch weights [Cout][Cin][K][K][K] out as the shader reads them:
// [Cin pair][tap][pair half][Cout] (vec4 groups of 4 output channels), zero for the missing
// channel of a 1-channel input.
func (c *Conv3D) PackWeights(w []float32) ([]byte, error) {
	taps := c.K * c.K * c.K
	if len(w) != c.Cout*c.Cin*taps {
		return nil, fmt.Errorf("conv %s: %d weights, want %d", c.Name(), len(w), c.Cout*c.Cin*taps)
	}
	cinp := (c.Cin + 1) / 2
	out := make([]byte, cinp*taps*2*c.Cout*4)
	for ic := 0; ic < c.Cin; ic++ {
		for t := 0; t < taps; t++ {
			for oc := 0; oc < c.Cout; oc++ {
				i := ((ic/2*taps+t)*2+ic%2)*c.Cout + oc
				binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(w[(oc*c.Cin+ic)*taps+t]))
			}
		}
	}
	return out, nil
}
