package model

import (
	"fmt"

	"ctseg/weights"
)

// BlockInfo describes one block of the network as MONAI names its modules, for the page's
// network diagram and the probe: what it computes, how many channels at which resolution, its
// parameters, its cost and the receptive field of one of its output voxels.
type BlockInfo struct {
	Name     string `json:"name"`     // MONAI's module path: convInit, down_layers.0, up_samples.1, conv_final
	Kind     string `json:"kind"`     // what it does, in words
	Channels int    `json:"channels"` // output channels
	Size     [3]int `json:"size"`     // output size for the given input (window) size
	Params   int    `json:"params"`
	// FLOPs of its convolutions for one input of that size (a multiply-add counts 2); the
	// GroupNorms, ReLUs and additions add well under 1 % (../shared/notes/monai-bundle.md).
	FLOPs float64 `json:"flops"`
	// RF is the receptive field of one output voxel through the convolutions and upsamplings,
	// in input voxels along each axis (GroupNorm's statistics, over the whole input, aside).
	RF int `json:"rf"`
}

// Blocks lists the network's blocks in the order they run, for an input of size in (a 96³
// window for the bundle): convInit, down_layers.0..N-1 (an encoder level: its stride-2
// convolution, if any, then its ResBlocks), up_samples.i (the 1x1x1 convolution and the
// trilinear upsampling, before the skip is added) and up_layers.i (its ResBlocks, after the
// skip was added), and conv_final (GroupNorm, ReLU, the 1x1x1 convolution to the classes).
func Blocks(cfg weights.Config, in [3]int) ([]BlockInfo, error) {
	n, err := NetShape(cfg)
	if err != nil {
		return nil, err
	}
	for a, s := range in {
		if s <= 0 || s%(1<<(len(n.Down)-1)) != 0 {
			return nil, fmt.Errorf("input size %v: axis %d must be a positive multiple of %d", in, a, 1<<(len(n.Down)-1))
		}
	}
	var out []BlockInfo
	size := in
	rf, jump := 1, 1 // receptive field and the distance in input voxels between neighbours
	conv := func(c *Conv, b *BlockInfo) {
		if c.Stride > 1 {
			for a := range size {
				size[a] /= c.Stride
			}
		}
		b.Params += c.In * c.Out * c.K * c.K * c.K
		if c == &n.Final { // the only convolution with a bias (NetShape holds no tensors to tell)
			b.Params += c.Out
		}
		b.FLOPs += 2 * float64(c.In*c.Out*c.K*c.K*c.K) * float64(size[0]*size[1]*size[2])
		rf += (c.K - 1) * jump
		jump *= c.Stride
	}
	norm := func(m *Norm, b *BlockInfo) { b.Params += 2 * m.C }
	blocks := func(bs []ResBlock, b *BlockInfo) {
		for i := range bs {
			norm(&bs[i].Norm1, b)
			conv(&bs[i].Conv1, b)
			norm(&bs[i].Norm2, b)
			conv(&bs[i].Conv2, b)
		}
	}
	finish := func(b BlockInfo, channels int) {
		b.Channels, b.Size, b.RF = channels, size, rf
		out = append(out, b)
	}

	b := BlockInfo{Name: "convInit", Kind: "3x3x3 convolution"}
	conv(&n.Init, &b)
	finish(b, n.Init.Out)
	type level struct {
		size     [3]int
		rf, jump int
	}
	var skips []level
	for i, lvl := range n.Down {
		b := BlockInfo{Name: fmt.Sprintf("down_layers.%d", i), Kind: fmt.Sprintf("%d ResBlocks", len(lvl.Blocks))}
		c := n.Init.Out
		if lvl.Down != nil {
			b.Kind = "stride-2 convolution, " + b.Kind
			conv(lvl.Down, &b)
			c = lvl.Down.Out
		}
		blocks(lvl.Blocks, &b)
		finish(b, c)
		skips = append(skips, level{size, rf, jump})
	}
	for i, lvl := range n.Up {
		b := BlockInfo{Name: fmt.Sprintf("up_samples.%d", i), Kind: "1x1x1 convolution, trilinear x2 upsampling"}
		conv(&lvl.Reduce, &b)
		for a := range size {
			size[a] *= 2
		}
		// Each upsampled voxel interpolates two coarse voxels per axis; the skip added next
		// sees less of the input than the coarse path.
		rf += jump
		jump /= 2
		finish(b, lvl.Reduce.Out)
		skip := skips[len(skips)-2-i]
		rf = max(rf, skip.rf)
		b = BlockInfo{Name: fmt.Sprintf("up_layers.%d", i), Kind: fmt.Sprintf("skip added, %d ResBlock(s)", len(lvl.Blocks))}
		blocks(lvl.Blocks, &b)
		finish(b, lvl.Reduce.Out)
	}
	b = BlockInfo{Name: "conv_final", Kind: "GroupNorm, ReLU, 1x1x1 convolution to the classes"}
	norm(&n.FinalNorm, &b)
	conv(&n.Final, &b)
	finish(b, n.Final.Out)
	return out, nil
}
