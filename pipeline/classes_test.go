package pipeline_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/labels"
	"ctseg/pipeline"
	"ctseg/volume"
)

// TestCheckClasses: a label map of the model's classes passes, with or without a label table;
// a value past them, or a table that names a present label otherwise, is refused.
func TestCheckClasses(t *testing.T) {
	dims := [3]int{4, 3, 2}
	affine := [4][4]float64{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}
	lab := make([]uint8, 24)
	lab[3], lab[7] = 5, 104
	parse := func(names []string, lab []uint8) ([]uint8, *volume.Header) {
		var b bytes.Buffer
		require.NoError(t, volume.EncodeLabels(&b, false, dims, affine, lab, volume.LabelOptions{Names: names}))
		l, h, err := volume.ParseLabels(b.Bytes())
		require.NoError(t, err)
		return l, h
	}
	l, h := parse(labels.Names, lab)
	require.NoError(t, pipeline.CheckClasses("ours.nii", l, h))
	l, h = parse(nil, lab)
	require.NoError(t, pipeline.CheckClasses("untabled.nii", l, h))

	other := append([]string(nil), labels.Names...)
	other[5] = "kidney_cyst_left" // TotalSegmentator v2 numbers other structures
	l, h = parse(other, lab)
	require.ErrorContains(t, pipeline.CheckClasses("v2.nii", l, h), `v2.nii names its label 5 "kidney_cyst_left", the model's class 5 is "liver"`)
	other[5] = labels.Names[5]
	other[9] = "something else" // a label the map does not hold: not a reason to refuse
	l, h = parse(other, lab)
	require.NoError(t, pipeline.CheckClasses("v2.nii", l, h))

	lab[0] = 117
	l, h = parse(nil, lab)
	require.ErrorContains(t, pipeline.CheckClasses("big.nii", l, h), "big.nii holds label 117, but the model's classes are 0 to 104")
}
