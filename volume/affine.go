package volume

import (
	"fmt"
	"math"
)

// Small dense float64 linear algebra for 4x4 affines and 3x3 blocks. The operation order
// follows the LAPACK/BLAS routines numpy calls (solve4: OpenBLAS's dgesv; dpotf2), because
// MONAI decides output shapes and sample positions by rounding float64 results, where the last
// bit can matter. Explicit float64() conversions around products stop the Go compiler from
// fusing a*b+c into an FMA on architectures that have one, and math.FMA is exact everywhere,
// so those last bits do not change from one machine to the next.

func identity4() [4][4]float64 {
	return [4][4]float64{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}
}

// mul4 returns a @ b, summing k = 0..3 in order.
func mul4(a, b [4][4]float64) [4][4]float64 {
	var c [4][4]float64
	for i := 0; i < 4; i++ {
		for j := 0; j < 4; j++ {
			s := 0.0
			for k := 0; k < 4; k++ {
				s += float64(a[i][k] * b[k][j])
			}
			c[i][j] = s
		}
	}
	return c
}

// apply4 maps the point p (homogeneous coordinate 1) through a.
func apply4(a [4][4]float64, p [3]float64) [3]float64 {
	var r [3]float64
	for i := 0; i < 3; i++ {
		r[i] = float64(a[i][0]*p[0]) + float64(a[i][1]*p[1]) + float64(a[i][2]*p[2]) + a[i][3]
	}
	return r
}

// solve4 returns X with a @ X = b (numpy.linalg.solve), in the operation order of the
// OpenBLAS dgesv that numpy calls on x86-64 (Debian's numpy, the PyPI wheels): dgetf2's
// left-looking LU (each column's updates as dot products accumulated with FMA from zero,
// partial pivoting on the first largest magnitude, the column below the pivot scaled by its
// reciprocal), then dtrsm's column sweeps, which multiply by the pivot's reciprocal instead of
// dividing by it and update with FMA. math.FMA is exact on every processor, so the result does
// not depend on the machine. The order matters: MONAI turns the solution into sample positions
// whose last bits decide which resampled voxels are exactly zero (see gridsample.go).
// Checked bit for bit against numpy 1.24 with OpenBLAS 0.3.21 on 400 axis-aligned, permuted,
// rotated and random affines (TestSolve4MatchesNumpy).
func solve4(a, b [4][4]float64) ([4][4]float64, error) {
	lu := a
	var piv [4]int
	for j := 0; j < 4; j++ {
		for i := 0; i < j; i++ {
			if piv[i] != i {
				lu[i][j], lu[piv[i]][j] = lu[piv[i]][j], lu[i][j]
			}
		}
		// The column's U part (ddot) and the part below it (dgemv): each entry minus the dot
		// product of its row of L with the column's upper entries.
		for i := 1; i < 4; i++ {
			n := min(i, j)
			d := 0.0
			for k := 0; k < n; k++ {
				d = math.FMA(lu[i][k], lu[k][j], d)
			}
			lu[i][j] -= d
		}
		p := j
		for i := j + 1; i < 4; i++ {
			if math.Abs(lu[i][j]) > math.Abs(lu[p][j]) {
				p = i
			}
		}
		piv[j] = p
		if lu[p][j] == 0 || math.IsNaN(lu[p][j]) {
			return [4][4]float64{}, fmt.Errorf("singular matrix")
		}
		if p != j {
			for k := 0; k <= j; k++ {
				lu[j][k], lu[p][k] = lu[p][k], lu[j][k]
			}
		}
		r := 1 / lu[j][j]
		for i := j + 1; i < 4; i++ {
			lu[i][j] *= r
		}
	}
	x := b
	for k := 0; k < 4; k++ {
		if piv[k] != k {
			x[k], x[piv[k]] = x[piv[k]], x[k]
		}
	}
	for j := 0; j < 4; j++ {
		// Forward substitution with the unit lower factor.
		for i := 0; i < 4; i++ {
			for k := i + 1; k < 4; k++ {
				x[k][j] = math.FMA(-x[i][j], lu[k][i], x[k][j])
			}
		}
		// Back substitution with the upper factor, by the reciprocal of each pivot.
		for i := 3; i >= 0; i-- {
			x[i][j] *= 1 / lu[i][i]
			for k := 0; k < i; k++ {
				x[k][j] = math.FMA(-x[i][j], lu[k][i], x[k][j])
			}
		}
	}
	return x, nil
}

// inv4 returns the inverse of a (numpy.linalg.inv solves a @ X = I).
func inv4(a [4][4]float64) ([4][4]float64, error) {
	return solve4(a, identity4())
}

func block3(a [4][4]float64) [3][3]float64 {
	var m [3][3]float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			m[i][j] = a[i][j]
		}
	}
	return m
}

func det3(m [3][3]float64) float64 {
	return m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) -
		m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) +
		m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
}

func mul3(a, b [3][3]float64) [3][3]float64 {
	var c [3][3]float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			s := 0.0
			for k := 0; k < 3; k++ {
				s += float64(a[i][k] * b[k][j])
			}
			c[i][j] = s
		}
	}
	return c
}

func transpose3(a [3][3]float64) [3][3]float64 {
	var t [3][3]float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			t[i][j] = a[j][i]
		}
	}
	return t
}

// colNorms returns the Euclidean norm of each column of the 3x3 block (the voxel sizes).
func colNorms(a [4][4]float64) [3]float64 {
	var n [3]float64
	for j := 0; j < 3; j++ {
		n[j] = math.Sqrt(a[0][j]*a[0][j] + a[1][j]*a[1][j] + a[2][j]*a[2][j])
	}
	return n
}

// cholesky3 returns the lower factor L of a symmetric positive definite m (m = L L^T), in
// LAPACK dpotf2 order (the off-diagonal column is scaled by the reciprocal of the pivot).
func cholesky3(m [3][3]float64) ([3][3]float64, error) {
	var l [3][3]float64
	for j := 0; j < 3; j++ {
		d := m[j][j]
		for k := 0; k < j; k++ {
			d -= float64(l[j][k] * l[j][k])
		}
		if !(d > 0) {
			return l, fmt.Errorf("matrix is not positive definite")
		}
		d = math.Sqrt(d)
		l[j][j] = d
		r := 1 / d
		for i := j + 1; i < 3; i++ {
			s := m[i][j]
			for k := 0; k < j; k++ {
				s -= float64(l[i][k] * l[j][k])
			}
			l[i][j] = float64(s * r)
		}
	}
	return l, nil
}

// invUpper3 inverts an upper triangular matrix the way numpy.linalg.inv does for one: LU
// leaves it unchanged (no pivoting is needed, the multipliers are zero), then dtrsm back
// substitution on each identity column.
func invUpper3(u [3][3]float64) [3][3]float64 {
	var x [3][3]float64
	for j := 0; j < 3; j++ {
		var b [3]float64
		b[j] = 1
		for k := 2; k >= 0; k-- {
			if b[k] != 0 {
				b[k] = b[k] / u[k][k]
				for i := 0; i < k; i++ {
					b[i] = b[i] - float64(b[k]*u[i][k])
				}
			}
		}
		for i := 0; i < 3; i++ {
			x[i][j] = b[i]
		}
	}
	return x
}

func inv3(m [3][3]float64) ([3][3]float64, bool) {
	d := det3(m)
	if d == 0 || math.IsNaN(d) || math.IsInf(d, 0) {
		return m, false
	}
	var r [3][3]float64
	r[0][0] = (m[1][1]*m[2][2] - m[1][2]*m[2][1]) / d
	r[0][1] = (m[0][2]*m[2][1] - m[0][1]*m[2][2]) / d
	r[0][2] = (m[0][1]*m[1][2] - m[0][2]*m[1][1]) / d
	r[1][0] = (m[1][2]*m[2][0] - m[1][0]*m[2][2]) / d
	r[1][1] = (m[0][0]*m[2][2] - m[0][2]*m[2][0]) / d
	r[1][2] = (m[0][2]*m[1][0] - m[0][0]*m[1][2]) / d
	r[2][0] = (m[1][0]*m[2][1] - m[1][1]*m[2][0]) / d
	r[2][1] = (m[0][1]*m[2][0] - m[0][0]*m[2][1]) / d
	r[2][2] = (m[0][0]*m[1][1] - m[0][1]*m[1][0]) / d
	return r, true
}

// polar3 returns the orthogonal factor of the polar decomposition of a non-singular m (what
// nibabel gets as P @ Qs from an SVD), by the scaled Newton iteration X <- (X + X^-T) / 2,
// which converges quadratically to the same matrix.
func polar3(m [3][3]float64) ([3][3]float64, bool) {
	x := m
	for it := 0; it < 100; it++ {
		xi, ok := inv3(x)
		if !ok {
			return m, false
		}
		// Higham's Frobenius-norm scaling speeds up convergence for badly scaled inputs.
		g := math.Sqrt(frob3(xi) / frob3(x))
		if math.IsNaN(g) || math.IsInf(g, 0) || g == 0 {
			g = 1
		}
		var n [3][3]float64
		diff := 0.0
		for i := 0; i < 3; i++ {
			for j := 0; j < 3; j++ {
				n[i][j] = 0.5 * (g*x[i][j] + xi[j][i]/g)
				diff = math.Max(diff, math.Abs(n[i][j]-x[i][j]))
			}
		}
		x = n
		if diff < 1e-15 {
			break
		}
	}
	return x, true
}

func frob3(m [3][3]float64) float64 {
	s := 0.0
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			s += m[i][j] * m[i][j]
		}
	}
	return math.Sqrt(s)
}

// quatToMat is nibabel.quaternions.quat2mat for q = (w, x, y, z).
func quatToMat(w, x, y, z float64) [3][3]float64 {
	nq := w*w + x*x + y*y + z*z
	if nq < 2.220446049250313e-16 {
		return [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}
	}
	s := 2.0 / nq
	X, Y, Z := x*s, y*s, z*s
	wX, wY, wZ := w*X, w*Y, w*Z
	xX, xY, xZ := x*X, x*Y, x*Z
	yY, yZ, zZ := y*Y, y*Z, z*Z
	return [3][3]float64{
		{1.0 - (yY + zZ), xY - wZ, xZ + wY},
		{xY + wZ, 1.0 - (xX + zZ), yZ - wX},
		{xZ - wY, yZ + wX, 1.0 - (xX + yY)},
	}
}

// matToQuat returns the unit quaternion (w, x, y, z), w >= 0, of a rotation matrix (Shepperd's
// method; nibabel's mat2quat gives the same quaternion up to rounding and also prefers w >= 0).
func matToQuat(m [3][3]float64) (w, x, y, z float64) {
	tr := m[0][0] + m[1][1] + m[2][2]
	switch {
	case tr > 0:
		s := 2 * math.Sqrt(tr+1)
		w = s / 4
		x = (m[2][1] - m[1][2]) / s
		y = (m[0][2] - m[2][0]) / s
		z = (m[1][0] - m[0][1]) / s
	case m[0][0] > m[1][1] && m[0][0] > m[2][2]:
		s := 2 * math.Sqrt(1+m[0][0]-m[1][1]-m[2][2])
		w = (m[2][1] - m[1][2]) / s
		x = s / 4
		y = (m[0][1] + m[1][0]) / s
		z = (m[0][2] + m[2][0]) / s
	case m[1][1] > m[2][2]:
		s := 2 * math.Sqrt(1+m[1][1]-m[0][0]-m[2][2])
		w = (m[0][2] - m[2][0]) / s
		x = (m[0][1] + m[1][0]) / s
		y = s / 4
		z = (m[1][2] + m[2][1]) / s
	default:
		s := 2 * math.Sqrt(1+m[2][2]-m[0][0]-m[1][1])
		w = (m[1][0] - m[0][1]) / s
		x = (m[0][2] + m[2][0]) / s
		y = (m[1][2] + m[2][1]) / s
		z = s / 4
	}
	n := math.Sqrt(w*w + x*x + y*y + z*z)
	w, x, y, z = w/n, x/n, y/n, z/n
	if w < 0 {
		w, x, y, z = -w, -x, -y, -z
	}
	return
}

// checkAffine refuses non-finite entries and a singular (or numerically singular) 3x3 block.
func checkAffine(a [4][4]float64) error {
	for i := 0; i < 3; i++ {
		for j := 0; j < 4; j++ {
			if math.IsNaN(a[i][j]) || math.IsInf(a[i][j], 0) {
				return fmt.Errorf("affine has a non-finite entry at [%d][%d]", i, j)
			}
		}
	}
	n := colNorms(a)
	d := det3(block3(a))
	if n[0] == 0 || n[1] == 0 || n[2] == 0 || math.Abs(d) <= 1e-12*n[0]*n[1]*n[2] {
		return fmt.Errorf("affine is singular (det %g, voxel sizes %g x %g x %g)", d, n[0], n[1], n[2])
	}
	return nil
}

// OnGrid reports why a volume with header h does not lie on the grid (dims, affine), or nil.
// A NIfTI sform holds float32, so the affines may differ by its rounding, not by a placement.
func OnGrid(h *Header, dims [3]int, affine [4][4]float64) error {
	if h.Dims != dims {
		return fmt.Errorf("it is %v voxels, the grid %v", h.Dims, dims)
	}
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			if d := math.Abs(h.Affine[r][c] - affine[r][c]); d > 1e-4*math.Max(1, math.Abs(affine[r][c])) {
				return fmt.Errorf("its affine differs from the grid's (row %d: %v, the grid's %v)", r, h.Affine[r], affine[r])
			}
		}
	}
	return nil
}
