package model

import (
	"math"
	"math/rand/v2"
)

// A second, deliberately naive reference in float64: every operation written as its
// definition, with no blocking, no separable passes, no shared code with cpu_ops.go. The fast
// ops are checked against it on shapes the golden files do not cover.

type t64 struct {
	C, D, H, W int
	Data       []float64
}

func newT64(c, d, h, w int) *t64 {
	return &t64{C: c, D: d, H: h, W: w, Data: make([]float64, c*d*h*w)}
}

func (t *t64) at(c, z, y, x int) float64 { return t.Data[((c*t.D+z)*t.H+y)*t.W+x] }

func (t *t64) set(c, z, y, x int, v float64) { t.Data[((c*t.D+z)*t.H+y)*t.W+x] = v }

func to64(t *Tensor) *t64 {
	o := newT64(t.C, t.D, t.H, t.W)
	for i, v := range t.Data {
		o.Data[i] = float64(v)
	}
	return o
}

// naiveConv is PyTorch's Conv3d definition: out[o,z,y,x] = b[o] + sum over i, kd, kh, kw of
// w[o,i,kd,kh,kw] * in[i, z*s+kd-p, y*s+kh-p, x*s+kw-p], zero outside, p = (k-1)/2.
func naiveConv(x *t64, c *Conv) *t64 {
	k, s, p := c.K, c.Stride, (c.K-1)/2
	od, oh, ow := (x.D+2*p-k)/s+1, (x.H+2*p-k)/s+1, (x.W+2*p-k)/s+1
	out := newT64(c.Out, od, oh, ow)
	for o := 0; o < c.Out; o++ {
		for z := 0; z < od; z++ {
			for y := 0; y < oh; y++ {
				for xx := 0; xx < ow; xx++ {
					sum := 0.0
					if c.B != nil {
						sum = float64(c.B[o])
					}
					for i := 0; i < c.In; i++ {
						for kd := 0; kd < k; kd++ {
							for kh := 0; kh < k; kh++ {
								for kw := 0; kw < k; kw++ {
									zi, yi, xi := z*s+kd-p, y*s+kh-p, xx*s+kw-p
									if zi < 0 || zi >= x.D || yi < 0 || yi >= x.H || xi < 0 || xi >= x.W {
										continue
									}
									w := c.W[(((o*c.In+i)*k+kd)*k+kh)*k+kw]
									sum += float64(w) * x.at(i, zi, yi, xi)
								}
							}
						}
					}
					out.set(o, z, y, xx, sum)
				}
			}
		}
	}
	return out
}

// naiveGroupNorm is torch.nn.GroupNorm's definition, with the ReLU applied afterwards.
func naiveGroupNorm(x *t64, n *Norm, relu bool) *t64 {
	out := newT64(x.C, x.D, x.H, x.W)
	cpg := x.C / n.Groups
	vox := x.D * x.H * x.W
	for g := 0; g < n.Groups; g++ {
		vals := x.Data[g*cpg*vox : (g+1)*cpg*vox]
		mean := 0.0
		for _, v := range vals {
			mean += v
		}
		mean /= float64(len(vals))
		variance := 0.0
		for _, v := range vals {
			variance += (v - mean) * (v - mean)
		}
		variance /= float64(len(vals))
		for c := g * cpg; c < (g+1)*cpg; c++ {
			for i := 0; i < vox; i++ {
				v := (x.Data[c*vox+i]-mean)/math.Sqrt(variance+GroupNormEps)*float64(n.Gamma[c]) + float64(n.Beta[c])
				if relu && v < 0 {
					v = 0
				}
				out.Data[c*vox+i] = v
			}
		}
	}
	return out
}

// naiveUpsample is PyTorch's upsample_trilinear3d (align_corners=False, scale 2) as written
// in its source: source coordinate (dst + 0.5) / 2 - 0.5, clamped at 0; the lower neighbour
// floor(src) and the upper one clamped to the last index; eight corner weights.
func naiveUpsample(x *t64) *t64 {
	out := newT64(x.C, 2*x.D, 2*x.H, 2*x.W)
	coord := func(dst, n int) (i0, i1 int, l0, l1 float64) {
		src := max((float64(dst)+0.5)/2-0.5, 0)
		i0 = int(math.Floor(src))
		i1 = min(i0+1, n-1)
		l1 = src - float64(i0)
		return i0, i1, 1 - l1, l1
	}
	for c := 0; c < x.C; c++ {
		for z := 0; z < out.D; z++ {
			z0, z1, a0, a1 := coord(z, x.D)
			for y := 0; y < out.H; y++ {
				y0, y1, b0, b1 := coord(y, x.H)
				for xx := 0; xx < out.W; xx++ {
					x0, x1, c0, c1 := coord(xx, x.W)
					v := a0*(b0*(c0*x.at(c, z0, y0, x0)+c1*x.at(c, z0, y0, x1))+b1*(c0*x.at(c, z0, y1, x0)+c1*x.at(c, z0, y1, x1))) +
						a1*(b0*(c0*x.at(c, z1, y0, x0)+c1*x.at(c, z1, y0, x1))+b1*(c0*x.at(c, z1, y1, x0)+c1*x.at(c, z1, y1, x1)))
					out.set(c, z, y, xx, v)
				}
			}
		}
	}
	return out
}

func naiveAdd(a, b *t64) *t64 {
	out := newT64(a.C, a.D, a.H, a.W)
	for i := range out.Data {
		out.Data[i] = a.Data[i] + b.Data[i]
	}
	return out
}

func naiveBlock(x *t64, b *ResBlock) *t64 {
	t := naiveConv(naiveGroupNorm(x, &b.Norm1, true), &b.Conv1)
	t = naiveConv(naiveGroupNorm(t, &b.Norm2, true), &b.Conv2)
	return naiveAdd(t, x)
}

// naiveForward is MONAI SegResNet.forward (encode, reverse the skips, decode, conv_final).
func naiveForward(n *Net, x *t64) *t64 {
	h := naiveConv(x, &n.Init)
	var downX []*t64
	for _, lvl := range n.Down {
		if lvl.Down != nil {
			h = naiveConv(h, lvl.Down)
		}
		for j := range lvl.Blocks {
			h = naiveBlock(h, &lvl.Blocks[j])
		}
		downX = append(downX, h)
	}
	for i, j := 0, len(downX)-1; i < j; i, j = i+1, j-1 {
		downX[i], downX[j] = downX[j], downX[i]
	}
	for i, lvl := range n.Up {
		h = naiveAdd(naiveUpsample(naiveConv(h, &lvl.Reduce)), downX[i+1])
		for j := range lvl.Blocks {
			h = naiveBlock(h, &lvl.Blocks[j])
		}
	}
	return naiveConv(naiveGroupNorm(h, &n.FinalNorm, true), &n.Final)
}

// randTensor fills a tensor with N(offset, 1) values from a fixed seed.
func randTensor(rng *rand.Rand, c, d, h, w int, offset float32) *Tensor {
	t := NewTensor(c, d, h, w)
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64()) + offset
	}
	return t
}

func randSlice(rng *rand.Rand, n int, scale, offset float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64()*scale + offset)
	}
	return s
}

// maxErr returns max |got - want| and max |want| (the scale the error is judged against).
func maxErr(got *Tensor, want *t64) (err, scale float64) {
	for i, v := range want.Data {
		err = max(err, math.Abs(float64(got.Data[i])-v))
		scale = max(scale, math.Abs(v))
	}
	return err, scale
}
