package weights

import (
	"encoding/json"
	"math"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"ctseg/internal/shared"
)

type goldenMeta struct {
	Weights struct {
		NumTensors int     `json:"num_tensors"`
		NumParams  int     `json:"num_params"`
		Keys       [][]any `json:"keys"`
	} `json:"weights"`
}

func readGoldenMeta(t *testing.T, dir string) goldenMeta {
	b, err := os.ReadFile(shared.Path(t, "golden", dir, "meta.json"))
	require.NoError(t, err)
	var m goldenMeta
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// requireKeysMatchMeta checks names, order and shapes against meta.json's key list.
func requireKeysMatchMeta(t *testing.T, sd *StateDict, m goldenMeta) {
	require.Len(t, sd.Tensors, m.Weights.NumTensors)
	require.Len(t, m.Weights.Keys, len(sd.Tensors))
	for i, kv := range m.Weights.Keys {
		require.Equal(t, kv[0], sd.Tensors[i].Name)
		var shape []int
		for _, s := range kv[1].([]any) {
			shape = append(shape, int(s.(float64)))
		}
		require.Equal(t, shape, sd.Tensors[i].Shape, kv[0])
	}
}

func requireBitEqual(t *testing.T, want, got *StateDict) {
	t.Helper()
	require.Len(t, got.Tensors, len(want.Tensors))
	for i, w := range want.Tensors {
		g := got.Tensors[i]
		require.Equal(t, w.Name, g.Name)
		require.Equal(t, w.Shape, g.Shape, w.Name)
		require.Len(t, g.Data, len(w.Data), w.Name)
		for k := range w.Data {
			if math.Float32bits(w.Data[k]) != math.Float32bits(g.Data[k]) {
				require.Failf(t, "values differ", "%s[%d]: %g vs %g", w.Name, k, w.Data[k], g.Data[k])
			}
		}
	}
}

func TestGoldenSmallTorchEqualsSafetensors(t *testing.T) {
	pt, err := Load(shared.Path(t, "golden", "segresnet_small", "model.pt"))
	require.NoError(t, err)
	st, err := Load(shared.Path(t, "golden", "segresnet_small", "model.safetensors"))
	require.NoError(t, err)
	requireBitEqual(t, pt, st)
	requireKeysMatchMeta(t, pt, readGoldenMeta(t, "segresnet_small"))
	require.Nil(t, pt.Meta)
	require.Equal(t, "pt", st.Meta["format"])

	cfg, err := InferConfig(pt)
	require.NoError(t, err)
	require.Equal(t, Config{InitFilters: 8, InChannels: 1, OutChannels: 9, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}, cfg)
	require.Equal(t, 1_176_249, cfg.ParamCount())
	require.Equal(t, "SegResNet F=8 K=9 blocks_down=[1 2 2 4] blocks_up=[1 1 1]", cfg.String())
}

func TestGoldenFullTorch(t *testing.T) {
	path := shared.Path(t, "golden", "segresnet_full", "model.pt")
	start := time.Now()
	sd, err := Load(path)
	elapsed := time.Since(start)
	require.NoError(t, err)
	t.Logf("loaded %s in %v", path, elapsed)

	m := readGoldenMeta(t, "segresnet_full")
	requireKeysMatchMeta(t, sd, m)
	cfg, err := InferConfig(sd)
	require.NoError(t, err)
	require.Equal(t, BundleConfig(), cfg)
	require.Equal(t, "SegResNet F=32 K=105 blocks_down=[1 2 2 4] blocks_up=[1 1 1]", cfg.String())
	require.Equal(t, 18_799_401, cfg.ParamCount())
	require.Equal(t, m.Weights.NumParams, cfg.ParamCount())

	// ExpectedShapes is MONAI's order exactly.
	exp := ExpectedShapes(cfg)
	require.Len(t, exp, len(sd.Tensors))
	for i, e := range exp {
		require.Equal(t, e.Name, sd.Tensors[i].Name)
		require.Equal(t, e.Shape, sd.Tensors[i].Shape)
	}
}

func BenchmarkLoadFullTorch(b *testing.B) {
	data, err := os.ReadFile(shared.Path(b, "golden", "segresnet_full", "model.pt"))
	require.NoError(b, err)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ReadTorch(data); err != nil {
			b.Fatal(err)
		}
	}
}
