package model

import (
	"math"
	"testing"
)

// TestExpNeg: expNeg against math.Exp over its domain, from where it returns 0 up to 0;
// relative error under 3e-7.
func TestExpNeg(t *testing.T) {
	worst := 0.0
	for x := -87.0; x <= 0; x += 1.0 / 4096 {
		got, want := float64(expNeg(float32(x))), math.Exp(float64(float32(x)))
		if r := math.Abs(got-want) / want; r > worst {
			worst = r
		}
	}
	if worst > 3e-7 {
		t.Fatalf("relative error %g", worst)
	}
	t.Logf("relative error up to %.2g", worst)
	if expNeg(-100) != 0 || expNeg(0) != 1 {
		t.Fatalf("expNeg(-100) = %v, expNeg(0) = %v", expNeg(-100), expNeg(0))
	}
}
