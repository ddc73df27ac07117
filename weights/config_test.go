package weights

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRandomInferConfigRoundTrip(t *testing.T) {
	cases := []struct {
		cfg    Config
		params int
	}{
		{BundleConfig(), 18_799_401},
		{Config{InitFilters: 8, InChannels: 1, OutChannels: 9, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}, 1_176_249},
		{smallConfig, -1},
		{tinyConfig, 8*27 + 8 + 8 + 2*8 + 2},
		{Config{InitFilters: 16, InChannels: 1, OutChannels: 4, BlocksDown: []int{2, 1, 0}, BlocksUp: []int{2, 0}}, -1},
	}
	for _, c := range cases {
		t.Run(c.cfg.String(), func(t *testing.T) {
			sd := Random(c.cfg, 42)
			got, err := InferConfig(sd)
			require.NoError(t, err)
			require.Equal(t, c.cfg, got)
			n := 0
			for _, ts := range sd.Tensors {
				n += len(ts.Data)
			}
			require.Equal(t, n, got.ParamCount())
			if c.params > 0 {
				require.Equal(t, c.params, got.ParamCount())
			}
		})
	}
}

func TestRandomDeterministicAndScaled(t *testing.T) {
	a, b, c := Random(smallConfig, 7), Random(smallConfig, 7), Random(smallConfig, 8)
	requireBitEqual(t, a, b)
	require.NotEqual(t, a.Tensors[0].Data, c.Tensors[0].Data)

	w := a.Get("down_layers.1.1.conv1.conv.weight").Data // fan_in 16*27
	bound := float32(1 / math.Sqrt(16*27))
	var mx float32
	for _, v := range w {
		mx = max(mx, float32(math.Abs(float64(v))))
	}
	require.LessOrEqual(t, mx, bound)
	require.Greater(t, mx, 0.9*bound)
	g := a.Get("down_layers.1.1.norm1.weight").Data
	mean := 0.0
	for _, v := range g {
		mean += float64(v) / float64(len(g))
	}
	require.InDelta(t, 1, mean, 0.3)
	require.Panics(t, func() { Random(Config{InitFilters: 12, InChannels: 1, OutChannels: 2, BlocksDown: []int{1}}, 1) })
}

func TestExpectedShapesInvalid(t *testing.T) {
	require.Nil(t, ExpectedShapes(Config{}))
	require.Zero(t, Config{}.ParamCount())
}

// mutate returns a fresh small state dict changed by f.
func mutate(f func(sd *StateDict) []*Tensor) *StateDict {
	sd := Random(smallConfig, 9)
	return NewStateDict(f(sd))
}

func TestInferConfigRefusals(t *testing.T) {
	replace := func(name string, shape []int) func(sd *StateDict) []*Tensor {
		return func(sd *StateDict) []*Tensor {
			for i, t := range sd.Tensors {
				if t.Name == name {
					sd.Tensors[i] = &Tensor{Name: name, Shape: shape, Data: make([]float32, numel(shape))}
				}
			}
			return sd.Tensors
		}
	}
	drop := func(names ...string) func(sd *StateDict) []*Tensor {
		return func(sd *StateDict) []*Tensor {
			var out []*Tensor
			for _, t := range sd.Tensors {
				keep := true
				for _, n := range names {
					keep = keep && t.Name != n
				}
				if keep {
					out = append(out, t)
				}
			}
			return out
		}
	}
	set := func(name string, i int, v float32) func(sd *StateDict) []*Tensor {
		return func(sd *StateDict) []*Tensor { sd.Get(name).Data[i] = v; return sd.Tensors }
	}
	cases := []struct {
		name string
		sd   *StateDict
		want string
	}{
		{"nil", nil, "state dict is empty"},
		{"empty", NewStateDict(nil), "state dict is empty"},
		{"no convInit", mutate(drop("convInit.conv.weight")), "no 5-d tensor convInit.conv.weight"},
		{"no conv_final", mutate(drop("conv_final.2.conv.weight")), "no 5-d tensor conv_final.2.conv.weight"},
		{"missing key", mutate(drop("down_layers.1.1.norm2.bias")), "missing 1 tensor: down_layers.1.1.norm2.bias (for SegResNet F=8 K=3"},
		{"unexpected key", mutate(func(sd *StateDict) []*Tensor {
			return append(sd.Tensors, &Tensor{Name: "extra.num_batches_tracked", Shape: []int{}, Data: []float32{0}})
		}), "unexpected 1 tensor: extra.num_batches_tracked"},
		{"wrong shape", mutate(replace("down_layers.1.0.conv.weight", []int{16, 8, 3, 3, 1})), "tensor down_layers.1.0.conv.weight has shape [16 8 3 3 1], expected [16 8 3 3 3]"},
		{"data length", mutate(func(sd *StateDict) []*Tensor { sd.Tensors[1].Data = sd.Tensors[1].Data[:3]; return sd.Tensors }), "holds 3 values"},
		{"NaN", mutate(set("down_layers.1.1.conv1.conv.weight", 5, float32(math.NaN()))), "tensor down_layers.1.1.conv1.conv.weight holds NaN"},
		{"+Inf", mutate(set("conv_final.2.conv.bias", 0, float32(math.Inf(1)))), "tensor conv_final.2.conv.bias holds +Inf"},
		{"-Inf", mutate(set("up_layers.0.0.norm1.bias", 1, float32(math.Inf(-1)))), "holds -Inf"},
		{"F not divisible by 8", mutate(replace("convInit.conv.weight", []int{12, 1, 3, 3, 3})), "init_filters 12 is not a positive multiple of 8"},
		{"two input channels", mutate(replace("convInit.conv.weight", []int{8, 2, 3, 3, 3})), "in_channels is 2"},
		{"hostile index", mutate(func(sd *StateDict) []*Tensor {
			return append(sd.Tensors, &Tensor{Name: "down_layers.99999999.1.norm1.weight", Shape: []int{8}, Data: make([]float32, 8)})
		}), "unexpected 1 tensor: down_layers.99999999.1.norm1.weight"},
		{"extra decoder level", mutate(func(sd *StateDict) []*Tensor {
			return append(sd.Tensors, &Tensor{Name: "up_layers.5.0.norm1.weight", Shape: []int{8}, Data: make([]float32, 8)})
		}), "unexpected 1 tensor: up_layers.5.0.norm1.weight"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := InferConfig(c.sd)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
			require.Contains(t, err.Error(), "segresnet weights: ")
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestInferConfigManyMissing(t *testing.T) {
	sd := mutate(func(sd *StateDict) []*Tensor { return sd.Tensors[:len(sd.Tensors)-7] })
	sd.Tensors = append(sd.Tensors, Random(smallConfig, 1).Get("conv_final.2.conv.weight"))
	sd = NewStateDict(sd.Tensors)
	_, err := InferConfig(sd)
	require.ErrorContains(t, err, "missing 6 tensors: up_layers.0.0.conv1.conv.weight, up_layers.0.0.conv2.conv.weight, up_samples.0.0.conv.weight, conv_final.0.weight and 2 more")
}
