package weights

import (
	"fmt"
	"math"
	"strings"
)

// Bounds on what InferConfig accepts. They are far above the bundle (4 levels, at most 4
// blocks, 256 channels at the bottom) and exist so a hostile file cannot make ExpectedShapes
// describe an absurd network.
const (
	maxLevels   = 8
	maxBlocks   = 64
	maxChannels = 1 << 16
)

// BundleConfig is the configuration of the wholeBody_ct_segmentation bundle.
func BundleConfig() Config {
	return Config{InitFilters: 32, InChannels: 1, OutChannels: 105, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}
}

// String is a one-line description, e.g.
// "SegResNet F=32 K=105 blocks_down=[1 2 2 4] blocks_up=[1 1 1]".
func (c Config) String() string {
	return fmt.Sprintf("SegResNet F=%d K=%d blocks_down=%v blocks_up=%v", c.InitFilters, c.OutChannels, c.BlocksDown, c.BlocksUp)
}

// ParamCount is the number of weights a network of this config holds (18,799,401 for the
// bundle). It is 0 for an invalid config.
func (c Config) ParamCount() int {
	if c.Validate() != nil {
		return 0
	}
	n := 0
	for _, s := range specs(c) {
		n += numel(s.shape)
	}
	return n
}

// Validate checks the config describes a network this project can run: one input channel,
// a GroupNorm-compatible width, and a decoder one level shorter than the encoder.
func (c Config) Validate() error {
	switch {
	case c.InChannels != 1:
		return fmt.Errorf("in_channels is %d; the bundle takes one CT channel", c.InChannels)
	case c.InitFilters <= 0 || c.InitFilters%8 != 0:
		return fmt.Errorf("init_filters %d is not a positive multiple of 8 (groupnorm uses 8 groups)", c.InitFilters)
	case c.OutChannels <= 0 || c.OutChannels > maxChannels:
		return fmt.Errorf("out_channels %d is out of range", c.OutChannels)
	case len(c.BlocksDown) == 0 || len(c.BlocksDown) > maxLevels:
		return fmt.Errorf("%d encoder levels; expected 1 to %d", len(c.BlocksDown), maxLevels)
	case len(c.BlocksUp) != len(c.BlocksDown)-1:
		return fmt.Errorf("%d decoder levels for %d encoder levels; expected one fewer", len(c.BlocksUp), len(c.BlocksDown))
	case c.InitFilters<<(len(c.BlocksDown)-1) > maxChannels:
		return fmt.Errorf("init_filters %d with %d levels is too wide", c.InitFilters, len(c.BlocksDown))
	}
	for _, b := range append(append([]int(nil), c.BlocksDown...), c.BlocksUp...) {
		if b < 0 || b > maxBlocks {
			return fmt.Errorf("block count %d out of range 0..%d", b, maxBlocks)
		}
	}
	return nil
}

// tensorRole says how Random initialises a tensor.
type tensorRole int

const (
	roleConv tensorRole = iota
	roleNormWeight
	roleNormBias
	roleConvBias
)

type spec struct {
	name  string
	shape []int
	role  tensorRole
}

// specs lists the state-dict entries of a valid config in the order MONAI's
// SegResNet.state_dict() yields them (module registration order: convInit, down_layers,
// up_layers, up_samples, conv_final; inside a ResBlock norm1, norm2, conv1, conv2).
func specs(c Config) []spec {
	F := c.InitFilters
	var out []spec
	conv := func(name string, o, i, k int) {
		out = append(out, spec{name, []int{o, i, k, k, k}, roleConv})
	}
	norm := func(prefix string, ch int) {
		out = append(out, spec{prefix + ".weight", []int{ch}, roleNormWeight}, spec{prefix + ".bias", []int{ch}, roleNormBias})
	}
	block := func(prefix string, ch int) {
		norm(prefix+".norm1", ch)
		norm(prefix+".norm2", ch)
		conv(prefix+".conv1.conv.weight", ch, ch, 3)
		conv(prefix+".conv2.conv.weight", ch, ch, 3)
	}
	conv("convInit.conv.weight", F, c.InChannels, 3)
	for i, n := range c.BlocksDown {
		ch := F << i
		if i > 0 { // level 0 starts with an Identity, which has no weights
			conv(fmt.Sprintf("down_layers.%d.0.conv.weight", i), ch, ch/2, 3)
		}
		for j := 1; j <= n; j++ {
			block(fmt.Sprintf("down_layers.%d.%d", i, j), ch)
		}
	}
	nUp := len(c.BlocksUp)
	for i, n := range c.BlocksUp {
		for j := 0; j < n; j++ {
			block(fmt.Sprintf("up_layers.%d.%d", i, j), F<<(nUp-1-i))
		}
	}
	for i := range c.BlocksUp {
		ch := F << (nUp - 1 - i)
		conv(fmt.Sprintf("up_samples.%d.0.conv.weight", i), ch, 2*ch, 1)
	}
	norm("conv_final.0", F)
	conv("conv_final.2.conv.weight", c.OutChannels, F, 1)
	out = append(out, spec{"conv_final.2.conv.bias", []int{c.OutChannels}, roleConvBias})
	return out
}

// ExpectedShapes lists the tensors (names and shapes, Data nil) a state dict of this config
// holds, in MONAI's order. The config must be valid (see Validate); otherwise it returns nil.
func ExpectedShapes(cfg Config) []*Tensor {
	if cfg.Validate() != nil {
		return nil
	}
	ss := specs(cfg)
	out := make([]*Tensor, len(ss))
	for i, s := range ss {
		out[i] = &Tensor{Name: s.name, Shape: s.shape}
	}
	return out
}

// InferConfig derives the network configuration from a state dict and checks the state dict
// is exactly that network: every expected tensor present with its shape, nothing else, every
// value finite. Everything downstream (CPU reference, GPU executor) relies on this check.
func InferConfig(sd *StateDict) (Config, error) {
	cfg, err := inferConfig(sd)
	if err != nil {
		return Config{}, fmt.Errorf("segresnet weights: %w", err)
	}
	return cfg, nil
}

func inferConfig(sd *StateDict) (Config, error) {
	if sd == nil || len(sd.Tensors) == 0 {
		return Config{}, fmt.Errorf("state dict is empty")
	}
	in := sd.Get("convInit.conv.weight")
	if in == nil || len(in.Shape) != 5 {
		return Config{}, fmt.Errorf("no 5-d tensor convInit.conv.weight (not a segresnet state dict?)")
	}
	fin := sd.Get("conv_final.2.conv.weight")
	if fin == nil || len(fin.Shape) != 5 {
		return Config{}, fmt.Errorf("no 5-d tensor conv_final.2.conv.weight (not a segresnet state dict with use_conv_final?)")
	}
	cfg := Config{InitFilters: in.Shape[0], InChannels: in.Shape[1], OutChannels: fin.Shape[0]}
	// Level and block counts come from the key names: down_layers.i.j (j >= 1 are blocks) and
	// up_layers.i.j (j >= 0). Indices beyond the limits are left for the unexpected-key check.
	levels, down, up := 0, make([]int, maxLevels), make([]int, maxLevels)
	for _, t := range sd.Tensors {
		if i, j, ok := layerIndex(t.Name, "down_layers."); ok {
			levels = max(levels, i+1)
			down[i] = max(down[i], j)
		} else if i, j, ok := layerIndex(t.Name, "up_layers."); ok {
			up[i] = max(up[i], j+1)
		}
	}
	levels = max(levels, 1)
	cfg.BlocksDown = down[:levels:levels]
	cfg.BlocksUp = up[: levels-1 : levels-1]
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	if err := checkTensors(sd, cfg); err != nil {
		return Config{}, fmt.Errorf("%w (for %s)", err, cfg)
	}
	if err := checkFinite(sd); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// layerIndex parses "<prefix>i.j.<rest>" with small canonical decimal i and j.
func layerIndex(name, prefix string) (int, int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, 0, false
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) != 3 {
		return 0, 0, false
	}
	i, ok1 := smallIndex(parts[0], maxLevels-1)
	j, ok2 := smallIndex(parts[1], maxBlocks)
	return i, j, ok1 && ok2
}

func smallIndex(s string, limit int) (int, bool) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= limit
}

// checkTensors compares the state dict with the expected list: missing names, then
// unexpected names, then shapes (the most telling error first).
func checkTensors(sd *StateDict, cfg Config) error {
	exp := specs(cfg)
	want := make(map[string]bool, len(exp))
	var missing, unexpected []string
	for _, s := range exp {
		want[s.name] = true
		if sd.Get(s.name) == nil {
			missing = append(missing, s.name)
		}
	}
	for _, t := range sd.Tensors {
		if !want[t.Name] {
			unexpected = append(unexpected, t.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: %s", plural(len(missing), "tensor"), firstFew(missing))
	}
	if len(unexpected) > 0 {
		return fmt.Errorf("unexpected %s: %s", plural(len(unexpected), "tensor"), firstFew(unexpected))
	}
	if len(sd.Tensors) != len(exp) {
		return fmt.Errorf("state dict repeats a tensor name")
	}
	for _, s := range exp {
		t := sd.Get(s.name)
		if !equalInts(t.Shape, s.shape) {
			return fmt.Errorf("tensor %s has shape %v, expected %v", s.name, t.Shape, s.shape)
		}
		if len(t.Data) != numel(s.shape) {
			return fmt.Errorf("tensor %s holds %d values, its shape %v needs %d", s.name, len(t.Data), s.shape, numel(s.shape))
		}
	}
	return nil
}

// checkFinite refuses NaN and Inf: a non-finite weight poisons every output voxel, and it is
// cheaper to name the tensor here than to hunt for it in a NaN segmentation.
func checkFinite(sd *StateDict) error {
	for _, t := range sd.Tensors {
		for i, v := range t.Data {
			if math.Float32bits(v)&0x7f800000 == 0x7f800000 {
				what := "NaN"
				if math.IsInf(float64(v), 1) {
					what = "+Inf"
				} else if math.IsInf(float64(v), -1) {
					what = "-Inf"
				}
				return fmt.Errorf("tensor %s holds %s (element %d)", t.Name, what, i)
			}
		}
	}
	return nil
}

func firstFew(names []string) string {
	const n = 4
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
