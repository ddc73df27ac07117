package volume

import (
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

func maxProcs() int { return max(1, runtime.GOMAXPROCS(0)) }
