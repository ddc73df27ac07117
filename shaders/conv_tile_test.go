package shaders_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/shaders"
)

func TestParseConvTile(t *testing.T) {
	for s, want := range map[string]shaders.ConvTile{
		"2x8":             {MX: 2, MN: 8},
		"2x8x4":           {MX: 2, MN: 8, CK: 4},
		"8x8x4c":          {MX: 8, MN: 8, CK: 4, Contig: true},
		"4x8c":            {MX: 4, MN: 8, Contig: true},
		"4x8x4c/ty4/tn16": {MX: 4, MN: 8, CK: 4, Contig: true, TY: 4, TN: 16},
		"2x8/tn8":         {MX: 2, MN: 8, TN: 8},
		"2x8x4p":          {MX: 2, MN: 8, CK: 4, Prefetch: true},
		"8x8x4cp/ty4":     {MX: 8, MN: 8, CK: 4, Contig: true, Prefetch: true, TY: 4},
	} {
		got, err := shaders.ParseConvTile(s)
		require.NoError(t, err, s)
		require.Equal(t, want, got, s)
		require.Equal(t, s, got.String(), "the text form round-trips")
	}
	for _, s := range []string{"", "2", "2x", "x8", "2x8x", "2x6", "2x8x3", "2x8c", "6x8c", "2x8/ty", "2x8/tz4",
		"2x8/tn6", "0x8", "-2x8", "2x8x4x2", "64x8", "2x64", "2x8/ty0", "2x8pc", "2x8pp"} {
		_, err := shaders.ParseConvTile(s)
		require.Error(t, err, "%q must be refused", s)
	}
}

func TestParseConvTileList(t *testing.T) {
	got, err := shaders.ParseConvTileList("2x8x4,8x8x4c")
	require.NoError(t, err)
	require.Equal(t, []shaders.ConvTile{{MX: 2, MN: 8, CK: 4}, {MX: 8, MN: 8, CK: 4, Contig: true}}, got)
	for _, s := range []string{"", "2x8,", "2x8,,4x8c", "2x8;4x8"} {
		_, err := shaders.ParseConvTileList(s)
		require.Error(t, err, "%q must be refused", s)
	}
}

// Every field of a tile reaches the shader (a silently ignored field would make a tuning
// sweep compare the same kernel with itself).
func TestConvTileReachesShader(t *testing.T) {
	base := shaders.Conv3D{Cin: 64, Cout: 64, D: 8, H: 16, W: 32, K: 3, Stride: 1, Tiled: true, MaxShared: 48 << 10, MaxThreads: 256}
	for _, tc := range []struct {
		tile shaders.ConvTile
		want []string
	}{
		{shaders.ConvTile{}, []string{"const MX: u32 = 2u;", "const MNQ: u32 = 2u;", "const CK: u32 = 4u;", "const TNQ: u32 = 8u;", "array<f32,"}},
		{shaders.ConvTile{MX: 8, MN: 4, CK: 2, Contig: true, TY: 3, TN: 16}, []string{"const MX: u32 = 8u;", "const MNQ: u32 = 1u;",
			"const CK: u32 = 2u;", "const TNQ: u32 = 4u;", "const TY: u32 = 3u;", "array<vec4<f32>,"}},
		{shaders.ConvTile{Prefetch: true}, []string{"var p0 = loadIn(0u", "var q0 = loadW(0u"}},
	} {
		c := base
		c.Tile = tc.tile
		src, err := c.Source()
		require.NoError(t, err)
		for _, w := range tc.want {
			require.Contains(t, src, w, "tile %v", tc.tile)
		}
	}
}
