package volume

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// view is a read-only, possibly permuted/flipped view of a stored float32 array: voxel (a,b,c)
// of the view is data[off + a*st[0] + b*st[1] + c*st[2]]. Preprocess resamples straight from
// the stored array through it, so reorientation costs no copy.
type view struct {
	data []float32
	off  int
	st   [3]int
	dims [3]int
}

func (v view) at(a, b, c int) float32 {
	return v.data[v.off+a*v.st[0]+b*v.st[1]+c*v.st[2]]
}

// copyTo writes the view in x-fastest order.
func (v view) copyTo(dst []float32) {
	i := 0
	for c := 0; c < v.dims[2]; c++ {
		for b := 0; b < v.dims[1]; b++ {
			p := v.off + b*v.st[1] + c*v.st[2]
			for a := 0; a < v.dims[0]; a++ {
				dst[i] = v.data[p]
				p += v.st[0]
				i++
			}
		}
	}
}

// parallelSlices runs fn(z) for z in [0, n) on GOMAXPROCS workers.
func parallelSlices(n int, fn func(z int)) {
	w := runtime.GOMAXPROCS(0)
	if w > n {
		w = n
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for k := 0; k < w; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				z := int(next.Add(1) - 1)
				if z >= n {
					return
				}
				fn(z)
			}
		}()
	}
	wg.Wait()
}

// axisSample clamps coordinate x to [0, n-1] (padding "border") and returns the two
// neighbouring indices and the weight of the upper one.
func axisSample(x float64, n int) (i0, i1 int, f float64) {
	if !(x > 0) { // also catches NaN
		return 0, 0, 0
	}
	if hi := float64(n - 1); x >= hi {
		return n - 1, n - 1, 0
	}
	fl := math.Floor(x)
	i0 = int(fl)
	return i0, i0 + 1, x - fl
}

// trilinear fills out by sampling src at voxel coordinate m @ (i, j, k, 1) for every output
// voxel, in float64, one output z-slice per task. Extra memory: none beyond the output.
func trilinear(out *Volume, src view, m [4][4]float64) {
	d := out.Dims
	parallelSlices(d[2], func(k int) {
		kf := float64(k)
		for j := 0; j < d[1]; j++ {
			jf := float64(j)
			row := out.Data[d[0]*(j+d[1]*k):]
			for i := 0; i < d[0]; i++ {
				fi := float64(i)
				x := m[0][0]*fi + m[0][1]*jf + m[0][2]*kf + m[0][3]
				y := m[1][0]*fi + m[1][1]*jf + m[1][2]*kf + m[1][3]
				z := m[2][0]*fi + m[2][1]*jf + m[2][2]*kf + m[2][3]
				x0, x1, fx := axisSample(x, src.dims[0])
				y0, y1, fy := axisSample(y, src.dims[1])
				z0, z1, fz := axisSample(z, src.dims[2])
				gx, gy, gz := 1-fx, 1-fy, 1-fz
				c00 := float64(src.at(x0, y0, z0))*gx + float64(src.at(x1, y0, z0))*fx
				c10 := float64(src.at(x0, y1, z0))*gx + float64(src.at(x1, y1, z0))*fx
				c01 := float64(src.at(x0, y0, z1))*gx + float64(src.at(x1, y0, z1))*fx
				c11 := float64(src.at(x0, y1, z1))*gx + float64(src.at(x1, y1, z1))*fx
				c0 := c00*gy + c10*fy
				c1 := c01*gy + c11*fy
				row[i] = float32(c0*gz + c1*fz)
			}
		}
	})
}

func maxProcs() int { return max(1, runtime.GOMAXPROCS(0)) }
