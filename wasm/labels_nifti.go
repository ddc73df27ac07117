//go:build js

package main

import (
	"bytes"
	"fmt"

	"ctseg/labels"
	"ctseg/pipeline"
	"ctseg/volume"
)

// encodeLabels returns the .nii.gz label file on the input's grid with the options `ctseg
// segment` writes it with (native/cli/segment.go): the model's class names and the shared
// colours in the embedded label table.
func encodeLabels(res *pipeline.Result) ([]byte, error) {
	var b bytes.Buffer
	opt := volume.LabelOptions{Names: labels.Names[:res.Classes], Colors: labels.Colors}
	if err := volume.EncodeLabels(&b, true, res.Dims, res.Affine, res.Labels, opt); err != nil {
		return nil, fmt.Errorf("encoding the labels: %w", err)
	}
	return b.Bytes(), nil
}
