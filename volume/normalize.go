package volume

import (
	"math"
	"sync"
)

// NormStats are the numbers NormalizeScale used.
type NormStats struct {
	NonZero    int64   // voxels != 0 (NormalizeIntensity's mask)
	Mean, Std  float64 // over the non-zero voxels (population std); Std 0 is replaced by 1
	MinN, MaxN float64 // min/max after normalisation, zeros included (ScaleIntensity's range)
}

// NormalizeScale applies, in place, MONAI NormalizeIntensity(nonzero=True) followed by
// ScaleIntensity(minv=-1, maxv=1): non-zero voxels become (v - mean) / std, exact zeros stay
// 0, then everything is mapped linearly so the global min is -1 and the max +1. Statistics
// are accumulated in float64 over the same zero mask, which matches MONAI's float32 torch
// result within the golden tolerance (the std cancels out of the final values anyway).
func NormalizeScale(v *Volume) NormStats {
	d := v.Data
	// Pass 1: count, sum, min, max of the non-zero voxels, per worker then merged.
	type acc struct {
		n        int64
		sum      float64
		min, max float32
		zero     bool
	}
	parts := splitRange(len(d))
	accs := make([]acc, len(parts))
	runParts(parts, func(p int, lo, hi int) {
		a := acc{min: float32(math.Inf(1)), max: float32(math.Inf(-1))}
		for _, x := range d[lo:hi] {
			if x == 0 {
				a.zero = true
				continue
			}
			a.n++
			a.sum += float64(x)
			a.min = min(a.min, x)
			a.max = max(a.max, x)
		}
		accs[p] = a
	})
	var st NormStats
	var sum float64
	vmin, vmax := math.Inf(1), math.Inf(-1)
	hasZero := false
	for _, a := range accs {
		st.NonZero += a.n
		sum += a.sum
		vmin = math.Min(vmin, float64(a.min))
		vmax = math.Max(vmax, float64(a.max))
		hasZero = hasZero || a.zero
	}
	if st.NonZero == 0 {
		// MONAI leaves an all-zero image unchanged, and ScaleIntensity of a constant image
		// multiplies it by minv: still all zeros.
		st.Std = 1
		return st
	}
	st.Mean = sum / float64(st.NonZero)
	// Pass 2: population variance around the mean (two-pass for accuracy).
	sq := make([]float64, len(parts))
	runParts(parts, func(p int, lo, hi int) {
		s := 0.0
		for _, x := range d[lo:hi] {
			if x != 0 {
				e := float64(x) - st.Mean
				s += e * e
			}
		}
		sq[p] = s
	})
	var ss float64
	for _, s := range sq {
		ss += s
	}
	st.Std = math.Sqrt(ss / float64(st.NonZero))
	if st.Std == 0 {
		st.Std = 1
	}
	st.MinN = (vmin - st.Mean) / st.Std
	st.MaxN = (vmax - st.Mean) / st.Std
	if hasZero {
		st.MinN = math.Min(st.MinN, 0)
		st.MaxN = math.Max(st.MaxN, 0)
	}
	span := st.MaxN - st.MinN
	zeroOut := 0.0
	if span != 0 {
		zeroOut = 2*(0-st.MinN)/span - 1
	}
	// Pass 3: the final values (a constant image maps to 0, as MONAI's rescale does).
	runParts(parts, func(_ int, lo, hi int) {
		for i := lo; i < hi; i++ {
			x := d[i]
			switch {
			case span == 0:
				d[i] = 0
			case x == 0:
				d[i] = float32(zeroOut)
			default:
				n := (float64(x) - st.Mean) / st.Std
				d[i] = float32(2*(n-st.MinN)/span - 1)
			}
		}
	})
	return st
}

// splitRange cuts [0, n) into a few contiguous parts for the worker pool.
func splitRange(n int) [][2]int {
	const minPart = 1 << 16
	k := (n + minPart - 1) / minPart
	if w := 4 * maxProcs(); k > w {
		k = w
	}
	if k < 1 {
		k = 1
	}
	parts := make([][2]int, k)
	for p := 0; p < k; p++ {
		parts[p] = [2]int{n * p / k, n * (p + 1) / k}
	}
	return parts
}

func runParts(parts [][2]int, fn func(p, lo, hi int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxProcs())
	for p, r := range parts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			fn(p, r[0], r[1])
			<-sem
		}()
	}
	wg.Wait()
}
