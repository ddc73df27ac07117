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

func (c *Conv3D) Validate() error {
	c.defaults()
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
	return Render("conv3d.wgsl", p)
}

// Slabs returns the dispatch grids, one per slab of output z-slices: (x, slab depth, blocks)
// and the z0 each slab starts at.
func (c *Conv3D) Slabs() (grids [][3]uint32, z0s []uint32) {
	c.defaults()
	do, ho, wo := c.Out()
	gx := ceilDiv(ceilDiv(wo, c.XB)*ho, convWG)
	sd := c.SlabDepth
	if sd <= 0 || sd > do {
		sd = do
	}
	for z := 0; z < do; z += sd {
		n := sd
		if z+n > do {
			n = do - z
		}
		grids = append(grids, [3]uint32{uint32(gx), uint32(n), uint32(c.Cout / c.OCB)})
		z0s = append(z0s, uint32(z))
	}
	return grids, z0s
}

// FLOPs per output z-slice (2 per multiply-add).
func (c *Conv3D) FLOPsPerSlice() float64 {
	_, ho, wo := c.Out()
	return 2 * float64(c.Cin) * float64(c.Cout) * float64(c.K*c.K*c.K) * float64(ho*wo)
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
