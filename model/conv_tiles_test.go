package model_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/model"
	"ctseg/shaders"
)

func TestParseConvTiles(t *testing.T) {
	got, err := model.ParseConvTiles("8x8x4c")
	require.NoError(t, err)
	require.Equal(t, map[int]shaders.ConvTile{0: {MX: 8, MN: 8, CK: 4, Contig: true}}, got)
	got, err = model.ParseConvTiles("96=8x8x4c+12=2x8x4/tn16")
	require.NoError(t, err)
	require.Equal(t, map[int]shaders.ConvTile{96: {MX: 8, MN: 8, CK: 4, Contig: true}, 12: {MX: 2, MN: 8, CK: 4, TN: 16}}, got)
	for _, s := range []string{"", "96=", "=2x8", "96=2x8+96=4x8c", "x=2x8", "0=2x8", "96=2x6", "96:2x8", "2x8+4x8c"} {
		_, err := model.ParseConvTiles(s)
		require.Error(t, err, "%q must be refused", s)
	}
}
