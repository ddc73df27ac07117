package model

import (
	"fmt"
	"sync"
)

// fastNet is a Net prepared for the vector kernels of one ISA: its weights packed once, and
// the pool of padded buffers its windows reuse.
type fastNet struct {
	isa    *cpuISA
	init   *packedConv
	down   []*packedConv // nil at level 0
	downB  [][]fastBlock
	up     []*packedConv // the 1x1x1 reductions
	upB    [][]fastBlock
	final  *packedConv
	pool   bufPool
	chunks sync.Pool // *headChunk
}

type fastBlock struct {
	b            *ResBlock
	conv1, conv2 *packedConv
}

// fast returns the network prepared for the selected kernels, or nil where the reference
// runs: CTSEG_CPU=generic, no kernels for this CPU, a network without weights (NetShape) or
// one whose layers do not chain (the reference then reports the error).
func (n *Net) fast() *fastNet {
	isa := activeISA()
	if isa == nil {
		return nil
	}
	n.fastMu.Lock()
	defer n.fastMu.Unlock()
	if n.fastNet != nil && n.fastNet.isa == isa {
		return n.fastNet
	}
	if n.chainErr() != nil {
		return nil
	}
	f := &fastNet{isa: isa, init: packConv(&n.Init, isa), final: packConv(&n.Final, isa)}
	for i := range n.Down {
		lvl := &n.Down[i]
		var d *packedConv
		if lvl.Down != nil {
			d = packConv(lvl.Down, isa)
		}
		f.down = append(f.down, d)
		f.downB = append(f.downB, packBlocks(lvl.Blocks, isa))
	}
	for i := range n.Up {
		f.up = append(f.up, packConv(&n.Up[i].Reduce, isa))
		f.upB = append(f.upB, packBlocks(n.Up[i].Blocks, isa))
	}
	n.fastNet = f
	return f
}

func packBlocks(bs []ResBlock, isa *cpuISA) []fastBlock {
	out := make([]fastBlock, len(bs))
	for i := range bs {
		out[i] = fastBlock{b: &bs[i], conv1: packConv(&bs[i].Conv1, isa), conv2: packConv(&bs[i].Conv2, isa)}
	}
	return out
}

// chainErr checks what the fast path takes for granted and the reference checks layer by
// layer: every layer's weights are complete and its channels follow from the previous one.
func (n *Net) chainErr() error {
	conv := func(c *Conv, in int) error {
		if err := checkConv(&Tensor{C: in, D: 1, H: 1, W: 1, Data: make([]float32, in)}, c); err != nil {
			return err
		}
		if c.K == 3 && c.Stride > 2 {
			return fmt.Errorf("conv %s: stride %d", c.Name, c.Stride)
		}
		return nil
	}
	norm := func(m *Norm, ch int) error {
		if m.C != ch || m.Groups <= 0 || m.C%m.Groups != 0 || len(m.Gamma) != m.C || len(m.Beta) != m.C {
			return fmt.Errorf("groupnorm %s does not fit %d channels", m.Name, ch)
		}
		return nil
	}
	block := func(b *ResBlock, ch int) error {
		for _, err := range []error{norm(&b.Norm1, ch), conv(&b.Conv1, ch), norm(&b.Norm2, ch), conv(&b.Conv2, ch)} {
			if err != nil {
				return err
			}
		}
		if b.Conv1.Out != ch || b.Conv2.Out != ch || b.Conv1.K != 3 || b.Conv2.K != 3 || b.Conv1.Stride != 1 || b.Conv2.Stride != 1 {
			return fmt.Errorf("block of %d channels has convs %s, %s of another shape", ch, b.Conv1.Name, b.Conv2.Name)
		}
		return nil
	}
	if len(n.Down) == 0 || len(n.Up) != len(n.Down)-1 {
		return fmt.Errorf("not a U-Net")
	}
	if err := conv(&n.Init, n.Init.In); err != nil {
		return err
	}
	if n.Init.K != 3 || n.Init.Stride != 1 {
		return fmt.Errorf("convInit is not 3x3x3")
	}
	ch := n.Init.Out
	chans := make([]int, len(n.Down))
	for i := range n.Down {
		lvl := &n.Down[i]
		if (i == 0) != (lvl.Down == nil) {
			return fmt.Errorf("level %d: downsampling conv where none fits", i)
		}
		if lvl.Down != nil {
			if err := conv(lvl.Down, ch); err != nil {
				return err
			}
			if lvl.Down.K != 3 || lvl.Down.Stride != 2 {
				return fmt.Errorf("conv %s is not a stride-2 3x3x3", lvl.Down.Name)
			}
			ch = lvl.Down.Out
		}
		for j := range lvl.Blocks {
			if err := block(&lvl.Blocks[j], ch); err != nil {
				return err
			}
		}
		chans[i] = ch
	}
	top := len(n.Down) - 1
	for i := range n.Up {
		r := &n.Up[i].Reduce
		if err := conv(r, ch); err != nil {
			return err
		}
		if r.K != 1 || r.Out != chans[top-1-i] {
			return fmt.Errorf("conv %s does not reduce to the skip's %d channels", r.Name, chans[top-1-i])
		}
		ch = r.Out
		for j := range n.Up[i].Blocks {
			if err := block(&n.Up[i].Blocks[j], ch); err != nil {
				return err
			}
		}
	}
	if err := norm(&n.FinalNorm, ch); err != nil {
		return err
	}
	if err := conv(&n.Final, ch); err != nil {
		return err
	}
	if n.Final.K != 1 || n.Final.B == nil || n.Final.Out > 256 {
		return fmt.Errorf("conv %s is not a 1x1x1 head with bias of at most 256 classes", n.Final.Name)
	}
	return nil
}

// features is Trace on the kernels (x already checked by checkInput), timing every
// operation into prof when it is not nil. The returned tensor is dst when given (of the
// features' shape), else a new one.
func (f *fastNet) features(n *Net, x *Tensor, visit func(layer string, t *Tensor), dst *Tensor, prof *cpuProfile) *Tensor {
	p := &f.pool
	emit := func(layer string, b *pbuf) {
		if visit != nil {
			visit(layer, b.toTensor())
		}
	}
	conv := func(out, in *pbuf, pc *packedConv, accumulate bool) {
		kind := convKind(pc.c)
		prof.time(kind, func() { f.convPadded(out, in, pc, accumulate) })
		prof.add(kind, convFLOPs(pc.c, out.D*out.H*out.W))
	}
	norm := func(dst, src *pbuf, m *Norm) {
		prof.time("groupnorm", func() { f.groupNormPadded(dst, src, m) })
		prof.add("groupnorm", 5*float64(src.C*src.D*src.H*src.W))
	}
	block := func(h *pbuf, b *fastBlock) { // ResBlock.forward in place: h += conv2(...)
		t := p.get(h.C, h.D, h.H, h.W, false)
		norm(t, h, &b.b.Norm1)
		c := p.get(h.C, h.D, h.H, h.W, false)
		conv(c, t, b.conv1, false)
		norm(c, c, &b.b.Norm2)
		conv(h, c, b.conv2, true)
		p.put(t, c)
	}

	in := p.get(1, x.D, x.H, x.W, false)
	in.fromTensor(x)
	h := p.get(n.Init.Out, x.D, x.H, x.W, false)
	conv(h, in, f.init, false)
	p.put(in)
	emit("convInit", h)

	skips := make([]*pbuf, len(n.Down))
	for i := range n.Down {
		if d := f.down[i]; d != nil {
			o := p.get(d.c.Out, convOutSize(h.D, 2), convOutSize(h.H, 2), convOutSize(h.W, 2), false)
			conv(o, h, d, false)
			h = o // the previous level's output stays, as its skip
			emit(fmt.Sprintf("down_layers.%d.0", i), h)
		}
		for j := range f.downB[i] {
			block(h, &f.downB[i][j])
			emit(fmt.Sprintf("down_layers.%d.%d", i, j+1), h)
		}
		skips[i] = h
	}
	top := len(n.Down) - 1
	for i := range n.Up {
		r := p.get(f.up[i].c.Out, h.D, h.H, h.W, false)
		conv(r, h, f.up[i], false)
		p.put(h)
		h = skips[top-1-i]
		prof.time("upsample", func() { upsampleAddPadded(h, r) }) // into the skip, which nothing else reads
		prof.add("upsample", 30*float64(h.C*h.D*h.H*h.W))
		p.put(r)
		emit(fmt.Sprintf("up_samples.%d", i), h)
		for j := range f.upB[i] {
			block(h, &f.upB[i][j])
			emit(fmt.Sprintf("up_layers.%d.%d", i, j), h)
		}
	}
	if dst == nil {
		dst = NewTensor(h.C, h.D, h.H, h.W)
	}
	prof.time("groupnorm", func() { f.groupNormToTensor(dst, h, &n.FinalNorm) })
	prof.add("groupnorm", groupNormFLOPs(dst))
	p.put(h)
	if visit != nil {
		visit("conv_final.1", dst)
	}
	return dst
}
