package model

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"

	"ctseg/shaders"
)

// extractNaive is the definition extractWindow must match: every voxel clamped on its own.
func extractNaive(vol *Tensor, st, pad, roi [3]int, dst []float32) {
	clamp := func(v, n int) int { return min(max(v, 0), n-1) }
	i := 0
	for z := 0; z < roi[0]; z++ {
		for y := 0; y < roi[1]; y++ {
			for x := 0; x < roi[2]; x++ {
				sz, sy, sx := clamp(st[0]-pad[0]+z, vol.D), clamp(st[1]-pad[1]+y, vol.H), clamp(st[2]-pad[2]+x, vol.W)
				dst[i] = vol.Data[(sz*vol.H+sy)*vol.W+sx]
				i++
			}
		}
	}
}

// Windows inside, overlapping and beyond every edge (replicate padding), including windows
// wider than the volume and starting entirely outside it.
func TestExtractWindowMatchesPerVoxelClamp(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	for trial := 0; trial < 300; trial++ {
		vol := NewTensor(1, 1+rng.Intn(9), 1+rng.Intn(9), 1+rng.Intn(9))
		for i := range vol.Data {
			vol.Data[i] = rng.Float32()
		}
		roi := [3]int{1 + rng.Intn(12), 1 + rng.Intn(12), 1 + rng.Intn(12)}
		var st, pad [3]int
		for a := range 3 {
			pad[a] = rng.Intn(6)
			st[a] = rng.Intn(20) - 4
		}
		n := roi[0] * roi[1] * roi[2]
		got, want := make([]float32, n), make([]float32, n)
		extractWindow(vol, st, pad, roi, got)
		extractNaive(vol, st, pad, roi, want)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("volume %dx%dx%d, start %v, pad %v, roi %v: voxel %d is %v, want %v", vol.D, vol.H, vol.W, st, pad, roi, i, got[i], want[i])
			}
		}
	}
}

// BenchmarkExtractWindow times the host-side copy of one 96^3 window (done once per window
// while the GPU runs the previous one).
func BenchmarkExtractWindow(b *testing.B) {
	vol := NewTensor(1, 287, 287, 397)
	dst := make([]float32, 96*96*96)
	for b.Loop() {
		extractWindow(vol, [3]int{100, 100, 200}, [3]int{0, 0, 0}, [3]int{96, 96, 96}, dst)
	}
}

// scatterLabels must place every byte where the voxel-by-voxel loop did, for the ring along
// each axis (rows copied whole, or written one by one along the volume's rows).
func TestScatterLabelsMatchesPerVoxel(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for trial := 0; trial < 200; trial++ {
		size := [3]int{1 + rng.Intn(150), 1 + rng.Intn(90), 1 + rng.Intn(150)}
		strides := [3]int{size[1] * size[2], size[2], 1}
		axis := rng.Intn(3)
		pb, pc := shaders.PlaneAxes(axis)
		z0 := rng.Intn(size[axis])
		na := 1 + rng.Intn(size[axis]-z0)
		nb, nc := size[pb], size[pc]
		src := make([]byte, na*nb*nc)
		rng.Read(src)
		n := size[0] * size[1] * size[2]
		got, want := make([]byte, n), make([]byte, n)
		sa, sb, sc := strides[axis], strides[pb], strides[pc]
		scatterLabels(got, src, na, nb, nc, z0*sa, sa, sb, sc)
		i := 0
		for ia := 0; ia < na; ia++ {
			for ib := 0; ib < nb; ib++ {
				for ic := 0; ic < nc; ic++ {
					want[(z0+ia)*sa+ib*sb+ic*sc] = src[i]
					i++
				}
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("size %v axis %d slices %d+%d: scatter differs", size, axis, z0, na)
		}
	}
}

// One head chunk of labels (66 slices of 287x287, the ring along the volume's rows as for
// 287x287x397 at 1.5 mm) into the label volume.
func BenchmarkScatterLabels(b *testing.B) {
	size := [3]int{287, 287, 397}
	strides := [3]int{size[1] * size[2], size[2], 1}
	dst := make([]byte, size[0]*size[1]*size[2])
	for _, axis := range []int{0, 2} {
		pb, pc := shaders.PlaneAxes(axis)
		na, nb, nc := 66, size[pb], size[pc]
		src := make([]byte, na*nb*nc)
		sa, sb, sc := strides[axis], strides[pb], strides[pc]
		b.Run(fmt.Sprintf("axis%d", axis), func(b *testing.B) {
			for b.Loop() {
				scatterLabels(dst, src, na, nb, nc, 100*sa, sa, sb, sc)
			}
		})
		b.Run(fmt.Sprintf("axis%d_voxelwise", axis), func(b *testing.B) {
			for b.Loop() {
				i := 0
				for ia := 0; ia < na; ia++ {
					for ib := 0; ib < nb; ib++ {
						d := (100+ia)*sa + ib*sb
						for ic := 0; ic < nc; ic++ {
							dst[d+ic*sc] = src[i]
							i++
						}
					}
				}
			}
		})
	}
}
