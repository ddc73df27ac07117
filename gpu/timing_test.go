package gpu

import "testing"

// The tick is the largest known period within the measured bound: submission overhead only
// makes a batch's wall time per tick larger than the period, never smaller.
func TestTickSeconds(t *testing.T) {
	for _, tc := range []struct{ ratio, want float64 }{
		{0, 1e-9},            // nothing timed yet
		{1.05e-9, 1e-9},      // NVIDIA, a long batch
		{1.9e-9, 1e-9},       // NVIDIA, a short batch with much overhead
		{12e-9, 10e-9},       // AMD RDNA
		{45e-9, 40e-9},       // AMD GCN
		{60e-9, 52.083e-9},   // Intel Xe
		{90e-9, 83.333e-9},   // Intel Gen9
		{0.5e-9, 0.5e-9},     // a finer counter than any known: the bound itself
		{0.995e-9, 1e-9},     // clocks disagree by a little
		{52.5e-9, 52.083e-9}, // close above a known period
	} {
		tm := &Timing{ratio: tc.ratio}
		if got := tm.TickSeconds(); got != tc.want {
			t.Errorf("ratio %g: tick %g, want %g", tc.ratio, got, tc.want)
		}
	}
}
