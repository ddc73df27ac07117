package model

import (
	"fmt"
	"strings"
)

// Probe is the CPU reference of GPUNet.Probe with plane < 0: every block's whole output for the
// input x (one window), in Blocks' order, from Trace. up_samples.i is the upsampling before the
// skip's addition (its 1x1x1 convolution recomputed from the level's input and upsampled with
// a zero skip); conv_final the logits.
func (n *Net) Probe(x *Tensor) ([]ProbeBlock, error) {
	outs := map[string]*Tensor{}
	last := map[string]string{} // block -> the last layer of it Trace names
	feat, err := n.Trace(x, func(layer string, t *Tensor) {
		block := layer
		if strings.HasPrefix(layer, "down_layers.") || strings.HasPrefix(layer, "up_layers.") {
			block = layer[:strings.LastIndex(layer, ".")]
		}
		outs[layer], last[block] = t, layer
	})
	if err != nil {
		return nil, err
	}
	logits, err := n.head(feat)
	if err != nil {
		return nil, err
	}
	var blocks []ProbeBlock
	add := func(name string, t *Tensor) {
		blocks = append(blocks, ProbeBlock{Name: name, C: t.C, D: t.D, H: t.H, W: t.W, Plane: -1, Data: t.Data})
	}
	add("convInit", outs["convInit"])
	for i := range n.Down {
		add(fmt.Sprintf("down_layers.%d", i), outs[last[fmt.Sprintf("down_layers.%d", i)]])
	}
	prev := outs[last[fmt.Sprintf("down_layers.%d", len(n.Down)-1)]]
	for i := range n.Up {
		r, err := conv3D(prev, &n.Up[i].Reduce, nil)
		if err != nil {
			return nil, err
		}
		up, err := upsampleAdd(r, NewTensor(r.C, 2*r.D, 2*r.H, 2*r.W))
		if err != nil {
			return nil, err
		}
		add(fmt.Sprintf("up_samples.%d", i), up)
		name := fmt.Sprintf("up_layers.%d", i)
		prev = outs[last[name]]
		if prev == nil { // a level without blocks: its output is the upsampling plus the skip
			prev = outs[fmt.Sprintf("up_samples.%d", i)]
		}
		add(name, prev)
	}
	add("conv_final", logits)
	return blocks, nil
}
