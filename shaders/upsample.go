package shaders

import (
	"fmt"

	"ctseg/gpu"
)

// UpsampleAdd specialises upsample_add.wgsl: trilinear x2 of a [C][D][H][W] tensor plus a skip
// tensor of [C][2D][2H][2W].
type UpsampleAdd struct {
	C, D, H, W int
	F16        bool
}

func (u *UpsampleAdd) n2() int { return 8 * u.D * u.H * u.W }
func (u *UpsampleAdd) Name() string {
	return fmt.Sprintf("upsample-add %d %dx%dx%d", u.C, u.D, u.H, u.W)
}
func (u *UpsampleAdd) Kind() string   { return "upsample" }
func (u *UpsampleAdd) FLOPs() float64 { return 30 * float64(u.C*u.n2()) }
func (u *UpsampleAdd) Bindings() []gpu.Access {
	return []gpu.Access{gpu.ReadOnly, gpu.ReadOnly, gpu.ReadWrite}
}

func (u *UpsampleAdd) Grid() (x, y, z uint32) {
	x, y, _ = grid1D(u.n2())
	return x, y, uint32(u.C / 2)
}

func (u *UpsampleAdd) Source() (string, error) {
	if u.C%2 != 0 {
		return "", fmt.Errorf("upsample: %d channels must be even", u.C)
	}
	_, _, gx := grid1D(u.n2())
	return Render("upsample_add.wgsl", map[string]any{
		"C": u.C, "D": u.D, "H": u.H, "W": u.W, "D2": 2 * u.D, "H2": 2 * u.H, "W2": 2 * u.W,
		"N2": u.n2(), "PL": u.D * u.H * u.W, "GX": gx, "F16": u.F16,
	})
}
