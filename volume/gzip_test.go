package volume

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

// The writer is klauspost's gzip: its output must stay a plain gzip stream that the standard
// library reads, at every level compress/gzip accepts, and the levels it refuses stay refused.
func TestGzipLevelsStandardStream(t *testing.T) {
	dims := [3]int{17, 9, 5}
	labels := make([]uint8, dims[0]*dims[1]*dims[2])
	for i := range labels {
		labels[i] = uint8(i / 40 % 7)
	}
	var plain bytes.Buffer
	if err := EncodeLabels(&plain, false, dims, obliqueAffine(), labels, LabelOptions{Names: []string{"", "a", "b"}}); err != nil {
		t.Fatal(err)
	}
	for level := -2; level <= 9; level++ {
		var z bytes.Buffer
		opt := LabelOptions{Names: []string{"", "a", "b"}, Write: WriteOptions{GzipLevel: level}}
		if err := EncodeLabels(&z, true, dims, obliqueAffine(), labels, opt); err != nil {
			t.Fatalf("level %d: %v", level, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(z.Bytes()))
		if err != nil {
			t.Fatalf("level %d: %v", level, err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("level %d: compress/gzip cannot read it: %v", level, err)
		}
		if !bytes.Equal(got, plain.Bytes()) {
			t.Fatalf("level %d: gunzipped file differs from the .nii encoding", level)
		}
	}
	for _, level := range []int{-3, 10} {
		opt := LabelOptions{Write: WriteOptions{GzipLevel: level}}
		if err := EncodeLabels(io.Discard, true, dims, obliqueAffine(), labels, opt); err == nil {
			t.Errorf("level %d accepted", level)
		}
	}
}
