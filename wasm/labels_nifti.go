//go:build js

package main

import (
	"bytes"
	"fmt"

	"ctseg/pipeline"
	"ctseg/volume"
)

// encodeLabels returns the .nii.gz label file on the input's grid with the options `ctseg
// segment` writes it with (pipeline.LabelFileOptions).
func encodeLabels(res *pipeline.Result, ref *volume.Header) ([]byte, error) {
	var b bytes.Buffer
	opt := pipeline.LabelFileOptions(res.Classes, ref)
	if err := volume.EncodeLabels(&b, true, res.Dims, res.Affine, res.Labels, opt); err != nil {
		return nil, fmt.Errorf("encoding the labels: %w", err)
	}
	return b.Bytes(), nil
}
