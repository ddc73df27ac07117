// Package model holds the SegResNet of the MONAI wholeBody_ct_segmentation bundle: its layer
// graph built from a state dict, the CPU reference forward pass, and sliding-window inference.
// The GPU executor walks the same Net, so both paths agree on one description of the network.
package model

import (
	"fmt"
	"sync"

	"ctseg/weights"
)

// GroupNormEps is MONAI's GroupNorm epsilon (torch default).
const GroupNormEps = 1e-5

// GroupNormGroups is the bundle's number of GroupNorm groups.
const GroupNormGroups = 8

// Conv is a 3-D convolution without dilation. W is [Out][In][K][K][K] (PyTorch order); zero
// padding (K-1)/2; B is nil when the layer has no bias (every conv but the final one).
type Conv struct {
	Name               string
	In, Out, K, Stride int
	W, B               []float32
}

// Norm is a GroupNorm with affine parameters (eps GroupNormEps).
type Norm struct {
	Name        string
	C, Groups   int
	Gamma, Beta []float32
}

// ResBlock is MONAI's pre-activation block: conv2(relu(norm2(conv1(relu(norm1(x)))))) + x.
type ResBlock struct {
	Norm1 Norm
	Conv1 Conv
	Norm2 Norm
	Conv2 Conv
}

// DownLevel is one encoder level: an optional stride-2 conv (nil at level 0), then blocks.
type DownLevel struct {
	Down   *Conv
	Blocks []ResBlock
}

// UpLevel is one decoder level: a 1x1x1 channel-halving conv, trilinear x2 upsampling
// (align_corners=False), the skip add, then blocks.
type UpLevel struct {
	Reduce Conv
	Blocks []ResBlock
}

// Net is the whole network.
type Net struct {
	Cfg       weights.Config
	Init      Conv
	Down      []DownLevel
	Up        []UpLevel
	FinalNorm Norm
	Final     Conv // 1x1x1, F -> K, with bias

	// The weights packed for the CPU kernels, made on first use (fast): a Net's weights must
	// not change once it has run.
	fastMu  sync.Mutex
	fastNet *fastNet
}

// NewNet validates the state dict (weights.InferConfig) and maps its tensors onto the graph.
func NewNet(sd *weights.StateDict) (*Net, error) {
	cfg, err := weights.InferConfig(sd)
	if err != nil {
		return nil, err
	}
	return buildNet(cfg, &netBuilder{sd: sd})
}

func buildNet(cfg weights.Config, b *netBuilder) (*Net, error) {
	F := cfg.InitFilters
	n := &Net{Cfg: cfg}
	n.Init = b.conv("convInit.conv", cfg.InChannels, F, 3, 1, false)
	for i, nb := range cfg.BlocksDown {
		c := F << i
		lvl := DownLevel{}
		if i > 0 {
			d := b.conv(fmt.Sprintf("down_layers.%d.0.conv", i), c/2, c, 3, 2, false)
			lvl.Down = &d
		}
		for j := 1; j <= nb; j++ {
			lvl.Blocks = append(lvl.Blocks, b.block(fmt.Sprintf("down_layers.%d.%d", i, j), c))
		}
		n.Down = append(n.Down, lvl)
	}
	top := len(cfg.BlocksDown) - 1
	for i, nb := range cfg.BlocksUp {
		c := F << (top - 1 - i)
		lvl := UpLevel{Reduce: b.conv(fmt.Sprintf("up_samples.%d.0.conv", i), 2*c, c, 1, 1, false)}
		for j := 0; j < nb; j++ {
			lvl.Blocks = append(lvl.Blocks, b.block(fmt.Sprintf("up_layers.%d.%d", i, j), c))
		}
		n.Up = append(n.Up, lvl)
	}
	n.FinalNorm = b.norm("conv_final.0", F)
	n.Final = b.conv("conv_final.2.conv", F, cfg.OutChannels, 1, 1, true)
	if b.err != nil {
		return nil, b.err
	}
	return n, nil
}

// NetShape is the network of a configuration without weights (nil slices): enough to plan
// buffers and FLOPs before any weights are loaded.
func NetShape(cfg weights.Config) (*Net, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return buildNet(cfg, &netBuilder{})
}

// netBuilder looks tensors up by name (nothing when sd is nil, for NetShape); InferConfig has already checked names and shapes, so
// a miss here is a bug, reported as an error rather than a panic.
type netBuilder struct {
	sd  *weights.StateDict
	err error
}

func (b *netBuilder) get(name string, size int) []float32 {
	if b.sd == nil {
		return nil
	}
	t := b.sd.Get(name)
	if t == nil || len(t.Data) != size {
		if b.err == nil {
			b.err = fmt.Errorf("weights: tensor %s missing or of the wrong size", name)
		}
		return make([]float32, size)
	}
	return t.Data
}

func (b *netBuilder) conv(name string, in, out, k, stride int, bias bool) Conv {
	c := Conv{Name: name, In: in, Out: out, K: k, Stride: stride}
	c.W = b.get(name+".weight", out*in*k*k*k)
	if bias {
		c.B = b.get(name+".bias", out)
	}
	return c
}

func (b *netBuilder) norm(name string, c int) Norm {
	return Norm{Name: name, C: c, Groups: GroupNormGroups, Gamma: b.get(name+".weight", c), Beta: b.get(name+".bias", c)}
}

func (b *netBuilder) block(prefix string, c int) ResBlock {
	return ResBlock{
		Norm1: b.norm(prefix+".norm1", c),
		Conv1: b.conv(prefix+".conv1.conv", c, c, 3, 1, false),
		Norm2: b.norm(prefix+".norm2", c),
		Conv2: b.conv(prefix+".conv2.conv", c, c, 3, 1, false),
	}
}

// Tensor is a dense activation [C][D][H][W], W fastest (PyTorch NCDHW with N = 1).
type Tensor struct {
	C, D, H, W int
	Data       []float32
}

// NewTensor allocates a zeroed tensor.
func NewTensor(c, d, h, w int) *Tensor {
	return &Tensor{C: c, D: d, H: h, W: w, Data: make([]float32, c*d*h*w)}
}

// Voxels is D*H*W.
func (t *Tensor) Voxels() int { return t.D * t.H * t.W }
