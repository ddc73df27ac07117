package volume

import "fmt"

// ToDHW returns the data in the network's layout: MONAI's [1, X, Y, Z] tensor as torch stores
// it, i.e. [D=X][H=Y][W=Z] with Z fastest (index (x*Y + y)*Z + z).
func (v *Volume) ToDHW() []float32 {
	X, Y, Z := v.Dims[0], v.Dims[1], v.Dims[2]
	out := make([]float32, len(v.Data))
	parallelSlices(X, func(x int) {
		for y := 0; y < Y; y++ {
			o := (x*Y + y) * Z
			for z := 0; z < Z; z++ {
				out[o+z] = v.Data[x+X*(y+Y*z)]
			}
		}
	})
	return out
}

// LabelsFromDHW converts a label map in the network's [X][Y][Z] layout (Z fastest) back to
// NIfTI x-fastest order; dims are (X, Y, Z). It returns nil when the length does not match.
func LabelsFromDHW(l []uint8, dims [3]int) []uint8 {
	X, Y, Z := dims[0], dims[1], dims[2]
	if X <= 0 || Y <= 0 || Z <= 0 || len(l) != X*Y*Z {
		return nil
	}
	out := make([]uint8, len(l))
	parallelSlices(Z, func(z int) {
		for y := 0; y < Y; y++ {
			o := X * (y + Y*z)
			for x := 0; x < X; x++ {
				out[o+x] = l[(x*Y+y)*Z+z]
			}
		}
	})
	return out
}

// checkLabelsLen is used by writers and statistics.
func checkLabelsLen(n int, dims [3]int) error {
	if n != dims[0]*dims[1]*dims[2] {
		return fmt.Errorf("%d labels for dims %dx%dx%d (%d voxels)", n, dims[0], dims[1], dims[2], dims[0]*dims[1]*dims[2])
	}
	return nil
}
