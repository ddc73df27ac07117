package model

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// CPU reference operations of the SegResNet, float32 like PyTorch's, spread over all cores.
//
// The public functions keep the signatures other code calls (they return nil when the shapes
// do not fit); the lower-case variants return errors and are what Forward uses, so a bad
// network or input reaches the caller as one message instead of a nil dereference later.

// parallelFor runs body(i) for every i in [0, n) on up to GOMAXPROCS goroutines. Indices are
// handed out one at a time from a shared counter: tasks (output planes) vary in cost at the
// volume edges, and a counter balances that without any tuning.
func parallelFor(n int, body func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			body(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				body(i)
			}
		})
	}
	wg.Wait()
}

// sameShape reports whether a and b have identical dimensions.
func sameShape(a, b *Tensor) bool {
	return a.C == b.C && a.D == b.D && a.H == b.H && a.W == b.W
}

// checkTensor rejects nil tensors, empty dimensions and a Data length that does not match them.
func checkTensor(name string, t *Tensor) error {
	if t == nil {
		return fmt.Errorf("%s: nil tensor", name)
	}
	if t.C <= 0 || t.D <= 0 || t.H <= 0 || t.W <= 0 {
		return fmt.Errorf("%s: bad shape [%d %d %d %d]", name, t.C, t.D, t.H, t.W)
	}
	if len(t.Data) != t.C*t.D*t.H*t.W {
		return fmt.Errorf("%s: %d values for shape [%d %d %d %d]", name, len(t.Data), t.C, t.D, t.H, t.W)
	}
	return nil
}

// Conv3D applies c to x: zero padding (K-1)/2, output size ceil(n/stride) per axis, plus the
// bias when c has one. K must be 3 (any stride) or 1 (stride 1). It returns nil when x does
// not fit c; use Net.Forward for error messages.
func Conv3D(x *Tensor, c *Conv) *Tensor {
	out, err := conv3D(x, c, nil)
	if err != nil {
		return nil
	}
	return out
}

// convOutSize is the output length of a conv with padding (k-1)/2: floor((n-1)/s) + 1, which
// is ceil(n/s) for both k = 1 and k = 3.
func convOutSize(n, stride int) int { return (n-1)/stride + 1 }

func checkConv(x *Tensor, c *Conv) error {
	if c == nil {
		return fmt.Errorf("conv: nil layer")
	}
	if err := checkTensor("conv "+c.Name+" input", x); err != nil {
		return err
	}
	switch {
	case c.K != 1 && c.K != 3:
		return fmt.Errorf("conv %s: kernel size %d not supported (1 or 3)", c.Name, c.K)
	case c.Stride < 1 || (c.K == 1 && c.Stride != 1):
		return fmt.Errorf("conv %s: stride %d not supported with kernel %d", c.Name, c.Stride, c.K)
	case c.In != x.C:
		return fmt.Errorf("conv %s: input has %d channels, layer expects %d", c.Name, x.C, c.In)
	case c.Out <= 0 || len(c.W) != c.Out*c.In*c.K*c.K*c.K:
		return fmt.Errorf("conv %s: %d weights for [%d %d %d %d %d]", c.Name, len(c.W), c.Out, c.In, c.K, c.K, c.K)
	case c.B != nil && len(c.B) != c.Out:
		return fmt.Errorf("conv %s: %d biases for %d outputs", c.Name, len(c.B), c.Out)
	}
	return nil
}

// conv3D is Conv3D with errors. When residual is not nil (same shape as the output), the
// output starts from it instead of zeros: that is the ResBlock's "+ identity", fused so the
// block needs neither a separate pass nor another full-size buffer.
func conv3D(x *Tensor, c *Conv, residual *Tensor) (*Tensor, error) {
	if err := checkConv(x, c); err != nil {
		return nil, err
	}
	out := NewTensor(c.Out, convOutSize(x.D, c.Stride), convOutSize(x.H, c.Stride), convOutSize(x.W, c.Stride))
	if residual != nil {
		if err := checkTensor("conv "+c.Name+" residual", residual); err != nil {
			return nil, err
		}
		if !sameShape(residual, out) {
			return nil, fmt.Errorf("conv %s: residual [%d %d %d %d] does not match output [%d %d %d %d]",
				c.Name, residual.C, residual.D, residual.H, residual.W, out.C, out.D, out.H, out.W)
		}
	}
	plane := out.H * out.W
	zero := make([]float32, x.W)
	// One task per output plane (o, z), z-major so that the cores work on neighbouring
	// z at the same time and share the input slab in the last-level cache.
	parallelFor(out.C*out.D, func(t int) {
		z, o := t/out.C, t%out.C
		dst := out.Data[(o*out.D+z)*plane : (o*out.D+z+1)*plane]
		switch {
		case residual != nil:
			copy(dst, residual.Data[(o*out.D+z)*plane:])
		case c.B != nil:
			for i := range dst {
				dst[i] = c.B[o]
			}
		}
		if c.K == 1 {
			conv1Plane(dst, x, c, o, z)
		} else {
			conv3Plane(dst, x, c, o, z, out.H, out.W, zero)
		}
	})
	return out, nil
}

// conv1Plane adds the 1x1x1 conv of output channel o at depth z to dst. Four input channels
// go through each pass over dst, so dst is loaded and stored a quarter as often.
func conv1Plane(dst []float32, x *Tensor, c *Conv, o, z int) {
	plane := x.H * x.W
	w := c.W[o*c.In : (o+1)*c.In]
	in := func(i int) []float32 {
		off := (i*x.D + z) * plane
		return x.Data[off : off+len(dst)]
	}
	i := 0
	for ; i+4 <= c.In; i += 4 {
		w0, w1, w2, w3 := w[i], w[i+1], w[i+2], w[i+3]
		a, b, cc, d := in(i), in(i+1), in(i+2), in(i+3)
		a, b, cc, d = a[:len(dst)], b[:len(dst)], cc[:len(dst)], d[:len(dst)]
		for p := range dst {
			dst[p] += (w0*a[p] + w1*b[p]) + (w2*cc[p] + w3*d[p])
		}
	}
	for ; i < c.In; i++ {
		w0, a := w[i], in(i)
		a = a[:len(dst)]
		for p := range dst {
			dst[p] += w0 * a[p]
		}
	}
}

// conv3Plane adds the 3x3x3 conv of output channel o at output depth z to dst (outH x outW).
// Rows outside the input read zero (a read-only row of x.W zeros shared by all tasks), which
// keeps the row kernels free of vertical edge cases at the price of a few wasted
// multiply-adds on the first and last row.
func conv3Plane(dst []float32, x *Tensor, c *Conv, o, z, outH, outW int, zero []float32) {
	s := c.Stride
	plane := x.H * x.W
	for i := 0; i < c.In; i++ {
		for kd := 0; kd < 3; kd++ {
			zi := z*s + kd - 1
			if zi < 0 || zi >= x.D {
				continue
			}
			src := x.Data[(i*x.D+zi)*plane : (i*x.D+zi+1)*plane]
			w := (*[9]float32)(c.W[((o*c.In+i)*3+kd)*9:])
			for y := 0; y < outH; y++ {
				// input rows y*s-1, y*s, y*s+1
				r0, r1, r2 := zero, zero, zero
				if yi := y*s - 1; yi >= 0 {
					r0 = src[yi*x.W : (yi+1)*x.W]
				}
				r1 = src[y*s*x.W : (y*s+1)*x.W]
				if yi := y*s + 1; yi < x.H {
					r2 = src[yi*x.W : (yi+1)*x.W]
				}
				d := dst[y*outW : (y+1)*outW]
				if s == 1 {
					convRow3(d, r0, r1, r2, w)
				} else {
					convRow3Strided(d, r0, r1, r2, w, s)
				}
			}
		}
	}
}

// convRow3 adds to dst the nine (kh, kw) taps of w over the input rows r0, r1, r2 (rows y-1,
// y, y+1), stride 1, one zero column of padding on each side; every slice has len(dst).
// This is the hot loop of the whole network: the weights are hoisted into locals, the
// interior runs on nine shifted views of equal length so the compiler drops the bounds
// checks, and the three row sums are added as a tree to shorten the dependency chain.
func convRow3(dst, r0, r1, r2 []float32, w *[9]float32) {
	n := len(dst)
	w00, w01, w02 := w[0], w[1], w[2]
	w10, w11, w12 := w[3], w[4], w[5]
	w20, w21, w22 := w[6], w[7], w[8]
	if n == 1 {
		dst[0] += w01*r0[0] + w11*r1[0] + w21*r2[0]
		return
	}
	dst[0] += (w01*r0[0] + w02*r0[1]) + (w11*r1[0] + w12*r1[1]) + (w21*r2[0] + w22*r2[1])
	l := n - 1
	dst[l] += (w00*r0[l-1] + w01*r0[l]) + (w10*r1[l-1] + w11*r1[l]) + (w20*r2[l-1] + w21*r2[l])
	if n == 2 {
		return
	}
	d := dst[1 : n-1]
	a0, b0, c0 := r0[0:], r0[1:], r0[2:]
	a1, b1, c1 := r1[0:], r1[1:], r1[2:]
	a2, b2, c2 := r2[0:], r2[1:], r2[2:]
	a0, b0, c0 = a0[:len(d)], b0[:len(d)], c0[:len(d)]
	a1, b1, c1 = a1[:len(d)], b1[:len(d)], c1[:len(d)]
	a2, b2, c2 = a2[:len(d)], b2[:len(d)], c2[:len(d)]
	for x := range d {
		s0 := w00*a0[x] + w01*b0[x] + w02*c0[x]
		s1 := w10*a1[x] + w11*b1[x] + w12*c1[x]
		s2 := w20*a2[x] + w21*b2[x] + w22*c2[x]
		d[x] += s0 + (s1 + s2)
	}
}

// convRow3Strided is convRow3 for stride s > 1 (the encoder's downsampling convs, 2.5 % of the
// work): output column x reads input columns x*s-1 .. x*s+1 of rows of length len(r0). Only
// the first column (and the last, for odd widths) touches the padding.
func convRow3Strided(dst, r0, r1, r2 []float32, w *[9]float32, s int) {
	n := len(r0)
	r1, r2 = r1[:n], r2[:n]
	for x := range dst {
		c := x * s
		if c < 1 || c+1 >= n {
			var sum float32
			for kw := 0; kw < 3; kw++ {
				if xi := c + kw - 1; xi >= 0 && xi < n {
					sum += w[kw]*r0[xi] + w[3+kw]*r1[xi] + w[6+kw]*r2[xi]
				}
			}
			dst[x] += sum
			continue
		}
		// three-element views: one bounds check each instead of one per tap
		a, b, e := r0[c-1:c+2], r1[c-1:c+2], r2[c-1:c+2]
		dst[x] += (w[0]*a[0] + w[1]*a[1] + w[2]*a[2]) +
			((w[3]*b[0] + w[4]*b[1] + w[5]*b[2]) + (w[6]*e[0] + w[7]*e[1] + w[8]*e[2]))
	}
}

// GroupNorm normalises x per group of channels over the whole volume (population variance,
// eps GroupNormEps), applies the per-channel affine and, when relu is set, max(0, .). It
// returns nil when x does not fit n.
func GroupNorm(x *Tensor, n *Norm, relu bool) *Tensor {
	out, err := groupNorm(x, n, relu)
	if err != nil {
		return nil
	}
	return out
}

func groupNorm(x *Tensor, n *Norm, relu bool) (*Tensor, error) {
	if n == nil {
		return nil, fmt.Errorf("groupnorm: nil layer")
	}
	if err := checkTensor("groupnorm "+n.Name+" input", x); err != nil {
		return nil, err
	}
	switch {
	case x.C != n.C:
		return nil, fmt.Errorf("groupnorm %s: input has %d channels, layer expects %d", n.Name, x.C, n.C)
	case n.Groups <= 0 || n.C%n.Groups != 0:
		return nil, fmt.Errorf("groupnorm %s: %d channels do not split into %d groups", n.Name, n.C, n.Groups)
	case len(n.Gamma) != n.C || len(n.Beta) != n.C:
		return nil, fmt.Errorf("groupnorm %s: %d/%d affine values for %d channels", n.Name, len(n.Gamma), len(n.Beta), n.C)
	}
	vox := x.Voxels()
	cpg := n.C / n.Groups
	count := float64(cpg * vox)
	channel := func(c int) []float32 { return x.Data[c*vox : (c+1)*vox] }

	// Two passes in float64 (mean, then squared deviations from it) so that the variance
	// does not suffer the cancellation of E[x^2] - E[x]^2, whatever the activations' offset.
	sums := make([]float64, n.C)
	parallelFor(n.C, func(c int) { sums[c] = sum64(channel(c), 0) })
	mean := make([]float64, n.Groups)
	for c, s := range sums {
		mean[c/cpg] += s
	}
	for g := range mean {
		mean[g] /= count
	}
	parallelFor(n.C, func(c int) { sums[c] = sumSq64(channel(c), mean[c/cpg]) })
	variance := make([]float64, n.Groups)
	for c, s := range sums {
		variance[c/cpg] += s
	}

	out := NewTensor(x.C, x.D, x.H, x.W)
	parallelFor(n.C, func(c int) {
		g := c / cpg
		inv := 1 / math.Sqrt(variance[g]/count+GroupNormEps)
		scale := float64(n.Gamma[c]) * inv
		// y = (x - mean) * inv * gamma + beta, folded into one multiply-add per voxel as
		// PyTorch's CPU kernel does.
		sc, sh := float32(scale), float32(float64(n.Beta[c])-mean[g]*scale)
		src, dst := channel(c), out.Data[c*vox:(c+1)*vox]
		if relu {
			for i, v := range src {
				dst[i] = max(v*sc+sh, 0)
			}
		} else {
			for i, v := range src {
				dst[i] = v*sc + sh
			}
		}
	})
	return out, nil
}

// sum64 returns sum(v - shift) in float64 with four accumulators, which breaks the latency
// chain of a single running sum.
func sum64(v []float32, shift float64) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(v); i += 4 {
		s0 += float64(v[i]) - shift
		s1 += float64(v[i+1]) - shift
		s2 += float64(v[i+2]) - shift
		s3 += float64(v[i+3]) - shift
	}
	for ; i < len(v); i++ {
		s0 += float64(v[i]) - shift
	}
	return (s0 + s1) + (s2 + s3)
}

// sumSq64 returns sum((v - mean)^2) in float64.
func sumSq64(v []float32, mean float64) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(v); i += 4 {
		d0, d1 := float64(v[i])-mean, float64(v[i+1])-mean
		d2, d3 := float64(v[i+2])-mean, float64(v[i+3])-mean
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(v); i++ {
		d := float64(v[i]) - mean
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

// UpsampleAdd returns trilinear x2 upsampling of x (align_corners=False) plus skip, which must
// have x's channels and twice its size on every axis. It returns nil when the shapes do not
// fit.
func UpsampleAdd(x, skip *Tensor) *Tensor {
	out, err := upsampleAdd(x, skip)
	if err != nil {
		return nil
	}
	return out
}

// upsampleAdd works one axis at a time (W, then H, then D with the skip added): the trilinear
// weights are a product of per-axis weights, so three 1-D passes equal the 8-corner formula
// up to float rounding, with 2 taps per pass instead of 8 per output voxel.
func upsampleAdd(x, skip *Tensor) (*Tensor, error) {
	if err := checkTensor("upsample input", x); err != nil {
		return nil, err
	}
	if err := checkTensor("upsample skip", skip); err != nil {
		return nil, err
	}
	if skip.C != x.C || skip.D != 2*x.D || skip.H != 2*x.H || skip.W != 2*x.W {
		return nil, fmt.Errorf("upsample: skip [%d %d %d %d] is not twice input [%d %d %d %d]",
			skip.C, skip.D, skip.H, skip.W, x.C, x.D, x.H, x.W)
	}
	C, D, H, W := x.C, x.D, x.H, x.W

	// Along W: every row of length W becomes a row of length 2W.
	a := NewTensor(C, D, H, 2*W)
	parallelFor(C*D, func(t int) {
		for y := 0; y < H; y++ {
			r := t*H + y
			up2(a.Data[r*2*W:(r+1)*2*W], x.Data[r*W:(r+1)*W])
		}
	})
	// Along H: within each (c, z) plane, rows are the "elements" (stride 2W).
	b := NewTensor(C, D, 2*H, 2*W)
	parallelFor(C*D, func(t int) {
		src := a.Data[t*H*2*W : (t+1)*H*2*W]
		dst := b.Data[t*4*H*W : (t+1)*4*H*W]
		upsampleLines(dst, src, H, 2*W, nil)
	})
	// Along D, adding the skip: planes are the elements (stride 4HW).
	out := NewTensor(C, 2*D, 2*H, 2*W)
	plane := 4 * H * W
	parallelFor(C, func(c int) {
		src := b.Data[c*D*plane : (c+1)*D*plane]
		dst := out.Data[c*2*D*plane : (c+1)*2*D*plane]
		upsampleLines(dst, src, D, plane, skip.Data[c*2*D*plane:(c+1)*2*D*plane])
	})
	return out, nil
}

// up2 upsamples one line by 2 (align_corners=False): out[2k] = 0.75 in[k] + 0.25 in[k-1],
// out[2k+1] = 0.75 in[k] + 0.25 in[k+1], with indices clamped to the line; upsampleLines
// does the same along the outer axes, on whole rows or planes at a time. The conversions keep
// each product rounded on its own (Go fuses a*b + c into one FMA on arm64 where it sees fit,
// which would make results depend on the architecture and on how a loop was inlined).
func up2(dst, src []float32) {
	n := len(src)
	for k := range n {
		prev, next := src[max(k-1, 0)], src[min(k+1, n-1)]
		dst[2*k] = float32(0.75*src[k]) + float32(0.25*prev)
		dst[2*k+1] = float32(0.75*src[k]) + float32(0.25*next)
	}
}

// upsampleLines upsamples by 2 along an outer axis of n elements, each element a contiguous
// block of size values (a row or a plane); when add is not nil it is added to the result.
func upsampleLines(dst, src []float32, n, size int, add []float32) {
	blk := func(s []float32, k int) []float32 { return s[k*size : (k+1)*size] }
	for k := range n {
		cur, prev, next := blk(src, k), blk(src, max(k-1, 0)), blk(src, min(k+1, n-1))
		for j, nb := range [2][]float32{prev, next} {
			d := blk(dst, 2*k+j)
			if add == nil {
				lerp(d, cur, nb)
			} else {
				lerpAdd(d, cur, nb, blk(add, 2*k+j))
			}
		}
	}
}

// lerp sets d to 0.75 cur + 0.25 nb, the two taps of an upsampled line.
func lerp(d, cur, nb []float32) {
	nb, cur = nb[:len(d)], cur[:len(d)]
	for i := range d {
		d[i] = float32(0.75*cur[i]) + float32(0.25*nb[i])
	}
}

// lerpAdd sets d to (0.75 cur + 0.25 nb) + s; s may be d (the fast path's in-place
// upsampling).
func lerpAdd(d, cur, nb, s []float32) {
	nb, cur, s = nb[:len(d)], cur[:len(d)], s[:len(d)]
	for i := range d {
		d[i] = (float32(0.75*cur[i]) + float32(0.25*nb[i])) + s[i]
	}
}

// Add returns a + b elementwise, or nil when the shapes differ.
func Add(a, b *Tensor) *Tensor {
	if checkTensor("add", a) != nil || checkTensor("add", b) != nil || !sameShape(a, b) {
		return nil
	}
	out := NewTensor(a.C, a.D, a.H, a.W)
	chunk := a.Voxels()
	parallelFor(a.C, func(c int) {
		x, y, z := a.Data[c*chunk:(c+1)*chunk], b.Data[c*chunk:(c+1)*chunk], out.Data[c*chunk:(c+1)*chunk]
		for i := range z {
			z[i] = x[i] + y[i]
		}
	})
	return out
}
