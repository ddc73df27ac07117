package model

// HeadArgmax applies the final 1x1x1 conv to blended features and returns, per voxel, the
// class with the largest logit (the first one on ties, as torch.argmax; softmax does not
// change the order). It works voxel by voxel, so the K-channel logits never exist whole.
func (n *Net) HeadArgmax(feat *Tensor) []uint8 {
	f, k := n.Final.In, n.Final.Out
	nv := feat.Voxels()
	out := make([]uint8, nv)
	parallelFor(ceilDivInt(nv, 4096), func(chunk int) {
		x := make([]float32, f)
		for v := chunk * 4096; v < min(nv, (chunk+1)*4096); v++ {
			for c := 0; c < f; c++ {
				x[c] = feat.Data[c*nv+v]
			}
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
			out[v] = uint8(arg)
		}
	})
	return out
}

func ceilDivInt(a, b int) int { return (a + b - 1) / b }
