package volume

import "math"

// MONAI's Spacingd resamples through torch: AffineTransform normalises the voxel map
// (to_norm_affine), affine_grid turns it into one sample position per output voxel, and
// grid_sample interpolates there (bilinear, border padding, align_corners=False), all in float64. In exact arithmetic
// that is trilinear interpolation at VoxelMap @ (i, j, k). In float64 the normalisation leaves
// round-off in the positions (a translation of -1.1e-16 where exact arithmetic has 0), so a
// position that is exactly on a voxel centre, or halfway between two, comes out a few ulps off,
// and a sample whose exact value is 0 (a zero voxel beside a non-zero one, or -a beside +a)
// becomes 1e-29..2e-11 instead. That decides NormalizeIntensity(nonzero=True)'s mask: a voxel
// that is exactly 0 enters the network as the mean HU, any other as itself, 355 HU apart. At
// 1.5 mm, example_ct has 16,181 such voxels and MONAI keeps only 1,346 of them at exactly 0.
//
// torchGrid therefore repeats torch's arithmetic operation by operation, so that every sample
// position, weight and sum has MONAI's bits: with it, Spacingd's output equals MONAI's bit for
// bit on the golden axis-aligned cases (TestGoldenPipeline). The reference is the stack the
// golden outputs were made with: torch 1.13 on x86-64 (its AVX2 kernels), numpy with OpenBLAS
// (solve4). Where MONAI's own result depends on that stack (the grid's matrix product goes
// through the BLAS, so an oblique affine can differ in the last bits between two machines;
// torch 2.x computes linspace differently), ours is the golden stack's, on every machine:
// math.FMA is exact everywhere and the explicit float64() conversions stop Go from fusing the
// other products.

// torchGrid holds what torch's sample positions are made of for one resampling.
type torchGrid struct {
	// theta is to_norm_affine(VoxelMap): the voxel map between torch's normalised coordinates.
	theta [3][4]float64
	// base[a][i] is affine_grid's normalised coordinate of output index i on axis a.
	base [3][]float64
	// in and stride are the source view's size and strides per axis.
	in, stride [3]int
	// perVoxel makes the samplers compute every position in full even where the grid is
	// separable (tests: both ways must give the same bits).
	perVoxel bool
}

// newTorchGrid prepares the positions at which an output grid of size out samples src, voxelMap
// (solve(A_src, A_dst), as SpatialResample computes it) taking output indices to source ones.
func newTorchGrid(voxelMap [4][4]float64, src view, out [3]int) *torchGrid {
	in := src.dims
	// to_norm_affine: normalize_transform(src) @ xform @ inv(normalize_transform(dst)), two
	// naive 4x4 batched products (torch's baddbmm kernel: k in order, no FMA).
	var srcNorm, dstInv [4][4]float64
	srcNorm[3][3], dstInv[3][3] = 1, 1
	for a := 0; a < 3; a++ {
		n := float64(in[a])
		srcNorm[a][a], srcNorm[a][3] = 2.0/n, 1.0/n-1.0
		// numpy.linalg.inv of the destination's normaliser: OpenBLAS's reciprocal pivot, then
		// the translation times it.
		m := float64(out[a])
		d, t := 2.0/m, 1.0/m-1.0
		r := 1 / d
		dstInv[a][a], dstInv[a][3] = r, -t*r
	}
	th := mul4(mul4(srcNorm, voxelMap), dstInv)
	g := &torchGrid{in: in, stride: src.st}
	for a := 0; a < 3; a++ {
		copy(g.theta[a][:], th[a][:])
		g.base[a] = affineGridBase(out[a])
	}
	return g
}

// affineGridBase is torch 1.13's linspace_from_neg_one(n, align_corners=False):
// linspace(-1, 1, n) * (n - 1) / n, one rounding per operation.
func affineGridBase(n int) []float64 {
	b := make([]float64, n)
	if n <= 1 {
		return b // a single output voxel sits at the centre: 0
	}
	l := torchLinspace(-1, 1, n)
	for i, x := range l {
		b[i] = float64(x*float64(n-1)) / float64(n)
	}
	return b
}

// torchLinspace is torch 1.13's CPU linspace for float64 with its AVX2 kernel: values below
// the halfway index are start + step*i, the others end - step*(n-1-i), both fused multiply-adds
// (the AVX2 build contracts them). The kernel is vectorised: while at least 8 values are left
// it fills 8 at a time, two vectors of 4 each from one such base value, adding 1, 2 and 3 steps to it (not fused),
// and the last n mod 8 values are computed one by one.
func torchLinspace(start, end float64, n int) []float64 {
	out := make([]float64, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float64(n-1)
	half := n / 2
	at := func(i int) float64 {
		if i < half {
			return math.FMA(step, float64(i), start)
		}
		return math.FMA(-step, float64(n-1-i), end)
	}
	const vec = 4 // Vectorized<double>::size() under AVX2
	i := 0
	for ; i+2*vec <= n; i += vec { // two vectors per turn: i+2*vec <= n holds for the second too
		base := at(i)
		out[i] = base
		for k := 1; k < vec; k++ {
			out[i+k] = base + float64(float64(k)*step)
		}
		i += vec
		base = at(i)
		out[i] = base
		for k := 1; k < vec; k++ {
			out[i+k] = base + float64(float64(k)*step)
		}
	}
	for ; i < n; i++ {
		out[i] = at(i)
	}
	return out
}

// The grid is base @ theta^T, a BLAS dgemm whose x86-64 kernels (OpenBLAS) accumulate in the
// order of the base's components with FMA. MONAI orders its axes X, Y, Z; torch's tensor is
// [D, H, W] = [X, Y, Z] and its grid lists W first, so coordinate a of output voxel (i, j, k)
// sums its Z term, then Y, then X, then the translation.

// rowTerms returns each coordinate's Z and Y terms for the output row (j, k).
func (g *torchGrid) rowTerms(j, k int) [3]float64 {
	var zy [3]float64
	for a := 0; a < 3; a++ {
		zy[a] = math.FMA(g.base[1][j], g.theta[a][1], g.base[2][k]*g.theta[a][2])
	}
	return zy
}

// coord finishes coordinate a from its Z and Y terms zy for output x index i: the X term, the
// translation, grid_sampler_unnormalize (align_corners=False) and clip_coordinates (border).
func (g *torchGrid) coord(a, i int, zy float64) float64 {
	n := g.in[a]
	c := math.FMA(g.base[0][i], g.theta[a][0], zy) + g.theta[a][3]
	c = float64(float64((c+1)*float64(n))-1) / 2
	if !(c > 0) { // std::max(c, 0); NaN cannot occur with a finite affine, clip it all the same
		c = 0
	}
	return math.Min(c, float64(n-1))
}

// separable reports whether theta has no off-diagonal terms (any axis-aligned resampling).
// Each coordinate then depends on its own output index only: the other axes' terms are exact
// zeros, which leave the dgemm's sum as it is (at most the sign of a zero changes, which no
// later step sees), so coordinate a of output index m is coord(a, .., base[a][m] * theta[a][a]).
func (g *torchGrid) separable() bool {
	if g.perVoxel {
		return false
	}
	for a := 0; a < 3; a++ {
		for b := 0; b < 3; b++ {
			if a != b && g.theta[a][b] != 0 {
				return false
			}
		}
	}
	return true
}

// axisCoords returns coordinate a for every output index along axis a (separable grids only).
func (g *torchGrid) axisCoords(a, n int) []float64 {
	c := make([]float64, n)
	for m := range c {
		// coord adds the X term base[0][i] * theta[a][0], exactly 0 for a != 0: pass i = 0
		// there, and for a == 0 the term itself with no other term before it.
		if a == 0 {
			c[m] = g.coord(0, m, 0)
		} else {
			c[m] = g.coord(a, 0, g.base[a][m]*g.theta[a][a])
		}
	}
	return c
}

// axisSample is one coordinate's two neighbours, as offsets into the source's data (index
// times the view's stride), and their weights.
type axisSample struct {
	o0, o1 int
	w0, w1 float64
}

// linear returns the neighbours of clipped coordinate c on axis a and their weights
// (hi - c, c - lo), as grid_sampler_3d's bilinear mode computes them.
func (g *torchGrid) linear(a int, c float64) axisSample {
	f := math.Floor(c)
	i0, i1 := int(f), int(f)+1
	w0, w1 := float64(f+1)-c, c-f
	if i1 >= g.in[a] {
		// c is n-1 exactly, so w1 is exactly 0: grid_sample skips this corner (cornerSum).
		i1 = i0
	}
	return axisSample{o0: i0 * g.stride[a], o1: i1 * g.stride[a], w0: w0, w1: w1}
}

// sample fills out from src with torch's grid_sample (bilinear, border, align_corners=False)
// at the positions of g, one output z-slice per task.
func (g *torchGrid) sample(out *Volume, src view) {
	d := out.Dims
	if g.separable() {
		var tabs [3][]axisSample
		for a := 0; a < 3; a++ {
			for _, c := range g.axisCoords(a, d[a]) {
				tabs[a] = append(tabs[a], g.linear(a, c))
			}
		}
		x, y, z := tabs[0], tabs[1], tabs[2]
		parallelSlices(d[2], func(k int) {
			for j := 0; j < d[1]; j++ {
				row := out.Data[d[0]*(j+d[1]*k):]
				for i := range row[:d[0]] {
					row[i] = float32(cornerSum(src.data, src.off, x[i], y[j], z[k]))
				}
			}
		})
		return
	}
	parallelSlices(d[2], func(k int) {
		for j := 0; j < d[1]; j++ {
			zy := g.rowTerms(j, k)
			row := out.Data[d[0]*(j+d[1]*k):]
			for i := range row[:d[0]] {
				row[i] = float32(cornerSum(src.data, src.off,
					g.linear(0, g.coord(0, i, zy[0])),
					g.linear(1, g.coord(1, i, zy[1])),
					g.linear(2, g.coord(2, i, zy[2]))))
			}
		}
	})
}

// cornerSum is grid_sampler_3d's bilinear sum: a corner's weight is the product of its Z, Y
// and X factors in that order, and the eight products are added to 0 in the corner order
// (x, y, z) = 000, 001, 010, 011, 100, 101, 110, 111. grid_sample skips a corner outside the
// input; here that corner is the lower one again with weight exactly 0 (see linear), and
// adding v * 0 leaves the sum as it is for any finite v (Preprocess refuses non-finite input).
func cornerSum(d []float32, base int, x, y, z axisSample) float64 {
	w00, w01 := float64(z.w0*y.w0), float64(z.w1*y.w0)
	w10, w11 := float64(z.w0*y.w1), float64(z.w1*y.w1)
	o00, o01 := base+y.o0+z.o0, base+y.o0+z.o1
	o10, o11 := base+y.o1+z.o0, base+y.o1+z.o1
	s := 0.0
	s += float64(float64(d[x.o0+o00]) * float64(w00*x.w0))
	s += float64(float64(d[x.o0+o01]) * float64(w01*x.w0))
	s += float64(float64(d[x.o0+o10]) * float64(w10*x.w0))
	s += float64(float64(d[x.o0+o11]) * float64(w11*x.w0))
	s += float64(float64(d[x.o1+o00]) * float64(w00*x.w1))
	s += float64(float64(d[x.o1+o01]) * float64(w01*x.w1))
	s += float64(float64(d[x.o1+o10]) * float64(w10*x.w1))
	s += float64(float64(d[x.o1+o11]) * float64(w11*x.w1))
	return s
}

// nearest returns the offset of the voxel grid_sampler_3d's nearest mode picks on axis a for
// clipped coordinate c. torch 1.13's 3-D CPU kernel rounds with std::round, a tie away from
// zero (its 2-D kernel, and later versions, use std::nearbyint, a tie to even). Whether a
// coordinate is a tie at all is decided by the round-off above, as in MONAI.
func (g *torchGrid) nearest(a int, c float64) int {
	return int(math.Round(c)) * g.stride[a]
}

// sampleNearest calls set(p, o) for every output voxel, p its index in an output of dims out
// stored with strides st from offset off, o the source offset grid_sample's nearest mode takes.
func (g *torchGrid) sampleNearest(out [3]int, off int, st [3]int, set func(p, o int)) {
	if g.separable() {
		var tabs [3][]int
		for a := 0; a < 3; a++ {
			for _, c := range g.axisCoords(a, out[a]) {
				tabs[a] = append(tabs[a], g.nearest(a, c))
			}
		}
		parallelSlices(out[2], func(k int) {
			for j := 0; j < out[1]; j++ {
				p, oyz := off+j*st[1]+k*st[2], tabs[1][j]+tabs[2][k]
				for _, ox := range tabs[0] {
					set(p, ox+oyz)
					p += st[0]
				}
			}
		})
		return
	}
	parallelSlices(out[2], func(k int) {
		for j := 0; j < out[1]; j++ {
			zy := g.rowTerms(j, k)
			p := off + j*st[1] + k*st[2]
			for i := 0; i < out[0]; i++ {
				set(p, g.nearest(0, g.coord(0, i, zy[0]))+g.nearest(1, g.coord(1, i, zy[1]))+g.nearest(2, g.coord(2, i, zy[2])))
				p += st[0]
			}
		}
	})
}
