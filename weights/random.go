package weights

import (
	"math"
	"math/rand/v2"
)

// Random returns weights of the expected shapes for cfg, deterministic per seed, so tests and
// benchmarks can build networks of any config without a checkpoint. The scales follow the
// golden models: conv weights uniform in ±1/sqrt(fan_in) (PyTorch's default kaiming_uniform
// with a = sqrt(5)), GroupNorm gamma 1 + 0.25 N(0,1) and beta 0.25 N(0,1) (non-trivial, so a
// swapped gamma/beta shows in the output), the final conv bias 0.1 N(0,1).
// It panics on an invalid config (see Config.Validate): that is a programming error.
func Random(cfg Config, seed int64) *StateDict {
	if err := cfg.Validate(); err != nil {
		panic("weights.Random: " + err.Error())
	}
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eb2e5)) // PCG: stable across Go releases
	ss := specs(cfg)
	ts := make([]*Tensor, len(ss))
	for i, s := range ss {
		t := &Tensor{Name: s.name, Shape: append([]int(nil), s.shape...), Data: make([]float32, numel(s.shape))}
		switch s.role {
		case roleConv:
			bound := 1 / math.Sqrt(float64(numel(s.shape[1:])))
			for k := range t.Data {
				t.Data[k] = float32((2*r.Float64() - 1) * bound)
			}
		case roleNormWeight:
			for k := range t.Data {
				t.Data[k] = float32(1 + 0.25*r.NormFloat64())
			}
		case roleNormBias:
			for k := range t.Data {
				t.Data[k] = float32(0.25 * r.NormFloat64())
			}
		case roleConvBias:
			for k := range t.Data {
				t.Data[k] = float32(0.1 * r.NormFloat64())
			}
		}
		ts[i] = t
	}
	return NewStateDict(ts)
}
