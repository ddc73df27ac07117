package model

import (
	"encoding/binary"
	"math"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/shared"
	"ctseg/weights"
)

// readF32 reads a raw little-endian float32 golden file and checks its length.
func readF32(t testing.TB, n int, parts ...string) []float32 {
	t.Helper()
	b, err := os.ReadFile(shared.Path(t, parts...))
	require.NoError(t, err)
	require.Len(t, b, 4*n, "size of %v", parts)
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// goldenNet loads a golden checkpoint (model.pt of the named case) into a Net.
func goldenNet(t testing.TB, name string) *Net {
	t.Helper()
	sd, err := weights.Load(shared.Path(t, "golden", name, "model.pt"))
	require.NoError(t, err)
	n, err := NewNet(sd)
	require.NoError(t, err)
	return n
}

// randomNet builds a network of the bundle's layout with init_filters f and k outputs.
func randomNet(t testing.TB, f, k int, seed int64) *Net {
	t.Helper()
	cfg := weights.BundleConfig()
	cfg.InitFilters, cfg.OutChannels = f, k
	n, err := NewNet(weights.Random(cfg, seed))
	require.NoError(t, err)
	return n
}

// compareGolden returns the largest absolute difference and the fraction of voxels where
// the argmax over channels agrees.
func compareGolden(got *Tensor, want []float32) (maxAbs, argmaxAgree float64) {
	vox := got.Voxels()
	agree := 0
	for v := range vox {
		bg, bw := 0, 0
		for c := range got.C {
			g, w := got.Data[c*vox+v], want[c*vox+v]
			maxAbs = max(maxAbs, math.Abs(float64(g)-float64(w)))
			if g > got.Data[bg*vox+v] {
				bg = c
			}
			if w > want[bw*vox+v] {
				bw = c
			}
		}
		if bg == bw {
			agree++
		}
	}
	return maxAbs, float64(agree) / float64(vox)
}
