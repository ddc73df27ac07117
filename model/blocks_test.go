package model

import (
	"math"
	"testing"

	"ctseg/weights"
)

// TestBlocks: the bundle's blocks at a 96³ window, their parameters adding up to the
// network's, their convolutions' FLOPs to the bundle note's count, and the receptive fields derived by hand (3x3x3 convolutions add 2 steps, stride 2 doubles
// the step, a x2 upsampling adds one coarse step, the skip's field is smaller).
func TestBlocks(t *testing.T) {
	cfg := weights.BundleConfig()
	bs, err := Blocks(cfg, [3]int{96, 96, 96})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name     string
		channels int
		size     int
		rf       int
	}{
		{"convInit", 32, 96, 3}, {"down_layers.0", 32, 96, 7}, {"down_layers.1", 64, 48, 25},
		{"down_layers.2", 128, 24, 61}, {"down_layers.3", 256, 12, 197},
		{"up_samples.0", 128, 24, 205}, {"up_layers.0", 128, 24, 221},
		{"up_samples.1", 64, 48, 225}, {"up_layers.1", 64, 48, 233},
		{"up_samples.2", 32, 96, 235}, {"up_layers.2", 32, 96, 239},
		{"conv_final", 105, 96, 239},
	}
	if len(bs) != len(want) {
		t.Fatalf("%d blocks, want %d", len(bs), len(want))
	}
	params, flops := 0, 0.0
	for i, w := range want {
		b := bs[i]
		if b.Name != w.name || b.Channels != w.channels || b.Size != [3]int{w.size, w.size, w.size} || b.RF != w.rf {
			t.Errorf("block %d: %+v, want %+v", i, b, w)
		}
		params += b.Params
		flops += b.FLOPs
	}
	if params != cfg.ParamCount() {
		t.Errorf("the blocks' parameters add up to %d, the network has %d", params, cfg.ParamCount())
	}
	// ../shared/notes/monai-bundle.md: 247.2 G multiply-adds per 96³ window.
	if math.Abs(flops/494.4e9-1) > 1e-3 {
		t.Errorf("the blocks' FLOPs add up to %.1f G, want 494.4 G", flops/1e9)
	}
	if _, err := Blocks(cfg, [3]int{96, 96, 20}); err == nil {
		t.Error("an input size that is not a multiple of 8 was accepted")
	}
}
