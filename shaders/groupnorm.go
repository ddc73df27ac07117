package shaders

import (
	"fmt"

	"ctseg/gpu"
)

// GroupNormStats specialises groupnorm.wgsl (partials) and groupnorm_finalize.wgsl (per-channel
// scale/shift). The normalisation itself is applied by the consumer (conv or blend) while it
// loads, so no normalised tensor is ever written.
type GroupNormStats struct {
	C, N, Groups int // channels, voxels per channel, groups
	F16          bool
	Eps          float64
}

// Partials per group: enough workgroups that each invocation handles about 64 elements.
func (g *GroupNormStats) P() int {
	p := ceilDiv(g.C/g.Groups*g.N, 256*64)
	if p < 1 {
		p = 1
	}
	if p > 256 {
		p = 256
	}
	return p
}

func (g *GroupNormStats) Validate() error {
	if g.Groups <= 0 || g.C%g.Groups != 0 {
		return fmt.Errorf("groupnorm: %d channels not divisible into %d groups", g.C, g.Groups)
	}
	if g.F16 && g.C%2 != 0 {
		return fmt.Errorf("groupnorm: f16 storage needs an even channel count")
	}
	return nil
}

func (g *GroupNormStats) params() map[string]any {
	return map[string]any{"C": g.C, "N": g.N, "G": g.Groups, "CPG": g.C / g.Groups, "P": g.P(), "F16": g.F16, "Eps": fmt.Sprintf("%g", g.Eps)}
}

func (g *GroupNormStats) Name() string { return fmt.Sprintf("groupnorm-stats %dx%d", g.C, g.N) }
func (g *GroupNormStats) Kind() string { return "groupnorm" }
func (g *GroupNormStats) Bindings() []gpu.Access {
	return []gpu.Access{gpu.ReadOnly, gpu.ReadWrite}
}
func (g *GroupNormStats) Source() (string, error) {
	if err := g.Validate(); err != nil {
		return "", err
	}
	return Render("groupnorm.wgsl", g.params())
}

// Grid of the partials pass.
func (g *GroupNormStats) Grid() (x, y, z uint32) { return uint32(g.P()), uint32(g.Groups), 1 }

// FLOPs: about 5 per element, for reports.
func (g *GroupNormStats) FLOPs() float64 { return 5 * float64(g.C*g.N) }

// PartialsBytes is the size of the partials buffer.
func (g *GroupNormStats) PartialsBytes() uint64 { return uint64(16 * g.Groups * g.P()) }

// GroupNormFinalize is the second pass of GroupNormStats.
type GroupNormFinalize struct{ *GroupNormStats }

func (g GroupNormFinalize) Name() string { return fmt.Sprintf("groupnorm-finalize %d", g.C) }
func (g GroupNormFinalize) Bindings() []gpu.Access {
	return []gpu.Access{gpu.ReadOnly, gpu.ReadOnly, gpu.ReadOnly, gpu.ReadWrite}
}
func (g GroupNormFinalize) Source() (string, error) {
	if err := g.Validate(); err != nil {
		return "", err
	}
	return Render("groupnorm_finalize.wgsl", g.params())
}
func (g GroupNormFinalize) Grid() (x, y, z uint32) { return uint32(ceilDiv(g.C, 64)), 1, 1 }

// NormBytes is the size of the scale/shift buffer (2 floats per channel, channel count
// rounded up to a pair so consumers can read vec4 per pair).
func (g *GroupNormStats) NormBytes() uint64 { return uint64(8 * (g.C + g.C%2)) }
