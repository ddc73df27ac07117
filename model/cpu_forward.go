package model

import "fmt"

// The CPU reference forward pass: MONAI's SegResNet.forward, layer for layer.

// Forward returns the logits [K, D, H, W] of x [1, D, H, W]; D, H and W must be multiples of
// 2^(levels-1) (8 for the bundle), as the stride-2 encoder and the x2 decoder require.
func (n *Net) Forward(x *Tensor) (*Tensor, error) {
	feat, err := n.Features(x)
	if err != nil {
		return nil, err
	}
	return n.head(feat)
}

// Features returns the F-channel activations that conv_final's last 1x1x1 conv reads (after
// its GroupNorm and ReLU). The final conv is linear, so blending these features across
// sliding windows and applying Head once gives the blended logits at F/K of the memory.
func (n *Net) Features(x *Tensor) (*Tensor, error) {
	return n.trace(x, nil, nil)
}

// Head applies the final 1x1x1 conv (with bias) to features from Features; it returns nil
// when feat does not have the network's F channels.
func (n *Net) Head(feat *Tensor) *Tensor {
	out, err := n.head(feat)
	if err != nil {
		return nil
	}
	return out
}

func (n *Net) head(feat *Tensor) (*Tensor, error) {
	if f := n.fast(); f != nil {
		if err := checkConv(feat, &n.Final); err != nil {
			return nil, fmt.Errorf("segresnet head: %w", err)
		}
		return f.headTensor(feat), nil
	}
	out, err := conv3D(feat, &n.Final, nil)
	if err != nil {
		return nil, fmt.Errorf("segresnet head: %w", err)
	}
	return out, nil
}

// Trace is Features that also hands every layer's output to visit (when not nil), named
// after the state-dict prefix of the layer that produced it ("convInit", "down_layers.1.0",
// "down_layers.1.2", "up_samples.0" (after the skip add), "conv_final.1", ...). It is the
// CPU side of a layer-by-layer comparison with another executor; visit must not keep or
// modify the tensors.
func (n *Net) Trace(x *Tensor, visit func(layer string, t *Tensor)) (*Tensor, error) {
	return n.trace(x, visit, nil)
}

// trace is Trace, on the CPU kernels where they run, timing every operation by kind into
// prof when it is not nil.
func (n *Net) trace(x *Tensor, visit func(layer string, t *Tensor), prof *cpuProfile) (*Tensor, error) {
	if err := n.checkInput(x); err != nil {
		return nil, err
	}
	if f := n.fast(); f != nil {
		return f.features(n, x, visit, nil, prof), nil
	}
	emit := func(layer string, t *Tensor) {
		if visit != nil {
			visit(layer, t)
		}
	}
	wrap := func(err error) error { return fmt.Errorf("segresnet: %w", err) }
	conv := func(x *Tensor, c *Conv, res *Tensor) (out *Tensor, err error) {
		prof.time(convKind(c), func() { out, err = conv3D(x, c, res) })
		if err == nil {
			prof.add(convKind(c), convFLOPs(c, out.Voxels()))
		}
		return out, err
	}

	h, err := conv(x, &n.Init, nil)
	if err != nil {
		return nil, wrap(err)
	}
	emit("convInit", h)
	// Dropout follows convInit in MONAI; it is the identity at inference.

	skips := make([]*Tensor, len(n.Down))
	for i, lvl := range n.Down {
		if lvl.Down != nil {
			if h, err = conv(h, lvl.Down, nil); err != nil {
				return nil, wrap(err)
			}
			emit(fmt.Sprintf("down_layers.%d.0", i), h)
		}
		for j := range lvl.Blocks {
			if h, err = lvl.Blocks[j].forward(h, conv, prof); err != nil {
				return nil, wrap(err)
			}
			emit(fmt.Sprintf("down_layers.%d.%d", i, j+1), h)
		}
		skips[i] = h
	}

	// Decoder level i joins the encoder output of level top-1-i (MONAI reverses down_x and
	// takes down_x[i+1]).
	top := len(n.Down) - 1
	for i, lvl := range n.Up {
		r, err := conv(h, &lvl.Reduce, nil)
		if err != nil {
			return nil, wrap(err)
		}
		prof.time("upsample", func() { h, err = upsampleAdd(r, skips[top-1-i]) })
		if err != nil {
			return nil, wrap(fmt.Errorf("up_samples.%d: %w", i, err))
		}
		prof.add("upsample", upsampleFLOPs(h))
		emit(fmt.Sprintf("up_samples.%d", i), h)
		for j := range lvl.Blocks {
			if h, err = lvl.Blocks[j].forward(h, conv, prof); err != nil {
				return nil, wrap(err)
			}
			emit(fmt.Sprintf("up_layers.%d.%d", i, j), h)
		}
	}

	if h, err = timedGroupNorm(h, &n.FinalNorm, prof); err != nil {
		return nil, wrap(err)
	}
	emit("conv_final.1", h)
	return h, nil
}

// checkInput rejects inputs the network cannot take, before any work is done.
func (n *Net) checkInput(x *Tensor) error {
	if err := checkTensor("segresnet input", x); err != nil {
		return err
	}
	if len(n.Down) == 0 || len(n.Up) != len(n.Down)-1 {
		return fmt.Errorf("segresnet: %d encoder and %d decoder levels do not form a U-Net", len(n.Down), len(n.Up))
	}
	if x.C != n.Init.In {
		return fmt.Errorf("segresnet: input has %d channels, the network takes %d", x.C, n.Init.In)
	}
	m := 1 << (len(n.Down) - 1)
	if x.D%m != 0 || x.H%m != 0 || x.W%m != 0 {
		return fmt.Errorf("segresnet: input size %dx%dx%d is not a multiple of %d on every axis", x.D, x.H, x.W, m)
	}
	return nil
}

// forward is MONAI's pre-activation ResBlock: conv2(relu(gn2(conv1(relu(gn1(x)))))) + x,
// with conv the reference convolution (timed by trace).
func (b *ResBlock) forward(x *Tensor, conv func(x *Tensor, c *Conv, res *Tensor) (*Tensor, error), prof *cpuProfile) (*Tensor, error) {
	t, err := timedGroupNorm(x, &b.Norm1, prof)
	if err != nil {
		return nil, err
	}
	if t, err = conv(t, &b.Conv1, nil); err != nil {
		return nil, err
	}
	if t, err = timedGroupNorm(t, &b.Norm2, prof); err != nil {
		return nil, err
	}
	return conv(t, &b.Conv2, x)
}

// timedGroupNorm is groupNorm with ReLU, timed into prof.
func timedGroupNorm(x *Tensor, n *Norm, prof *cpuProfile) (out *Tensor, err error) {
	prof.time("groupnorm", func() { out, err = groupNorm(x, n, true) })
	if err == nil {
		prof.add("groupnorm", groupNormFLOPs(out))
	}
	return out, err
}
