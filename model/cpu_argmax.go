package model

// HeadArgmax applies the final 1x1x1 conv to features [F][D][H][W] and returns the argmax
// class of every voxel (first maximum wins, as torch.argmax), without the K-channel logits.
func (n *Net) HeadArgmax(feat *Tensor) []uint8 {
	if fn := n.fast(); fn != nil {
		return fn.headArgmax(feat)
	}
	f := n.Final.In
	nv := feat.Voxels()
	out := make([]uint8, nv)
	parallelFor(ceilDivInt(nv, 4096), func(chunk int) {
		x := make([]float32, f)
		for v := chunk * 4096; v < min(nv, (chunk+1)*4096); v++ {
			for c := 0; c < f; c++ {
				x[c] = feat.Data[c*nv+v]
			}
			out[v] = n.argmax1(x)
		}
	})
	return out
}

// logits1 writes one voxel's logits from its features x into out, with argmax1's arithmetic.
func (n *Net) logits1(x, out []float32) {
	f := n.Final.In
	for o := range out {
		s := n.Final.B[o]
		w := n.Final.W[o*f : (o+1)*f]
		for c, xc := range x {
			s += w[c] * xc
		}
		out[o] = s
	}
}

// argmax1 is the class of one voxel's features x.
func (n *Net) argmax1(x []float32) uint8 {
	f, k := n.Final.In, n.Final.Out
	best, arg := float32(0), 0
	for o := 0; o < k; o++ {
		s := n.Final.B[o]
		w := n.Final.W[o*f : (o+1)*f]
		for c, xc := range x {
			s += w[c] * xc
		}
		if o == 0 || s > best {
			best, arg = s, o
		}
	}
	return uint8(arg)
}

func ceilDivInt(a, b int) int { return (a + b - 1) / b }
