package shaders

import (
	"fmt"

	"ctseg/gpu"
)

// ProbeCopy specialises probe_copy.wgsl: NW planes from W0 along the last axis of a [C][D][H][W]
// activation (f32, or channel pairs packed as f16) to f32 [C][D][H][NW].
type ProbeCopy struct {
	C, D, H, W int
	F16        bool
	W0, NW     int
}

func (p *ProbeCopy) n() int { return p.C * p.D * p.H * p.NW }

func (p *ProbeCopy) Name() string {
	return fmt.Sprintf("probe %dx%dx%dx%d planes %d+%d f16=%v", p.C, p.D, p.H, p.W, p.W0, p.NW, p.F16)
}
func (p *ProbeCopy) Kind() string           { return "probe" }
func (p *ProbeCopy) Bindings() []gpu.Access { return []gpu.Access{gpu.ReadOnly, gpu.ReadWrite} }

// OutBytes is the size of the copy.
func (p *ProbeCopy) OutBytes() uint64 { return uint64(4 * p.n()) }

func (p *ProbeCopy) Grid() (x, y, z uint32) {
	x, y, _ = grid1D(p.n())
	return x, y, 1
}

func (p *ProbeCopy) Source() (string, error) {
	if p.W0 < 0 || p.NW < 1 || p.W0+p.NW > p.W || p.C < 1 || p.F16 && p.C%2 != 0 {
		return "", fmt.Errorf("probe: planes %d+%d of %v (f16 %v) out of range", p.W0, p.NW, [4]int{p.C, p.D, p.H, p.W}, p.F16)
	}
	_, _, gx := grid1D(p.n())
	return Render("probe_copy.wgsl", map[string]any{"C": p.C, "D": p.D, "H": p.H, "W": p.W, "F16": p.F16, "W0": p.W0, "NW": p.NW, "N": p.n(), "GX": gx})
}
