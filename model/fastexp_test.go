package model

import (
	"math"
	"testing"
)

// TestExp32: exp32 against math.Exp over the range the confidence uses (x <= 0, down to where
// it returns 0) and a little above; relative error under 3e-7.
func TestExp32(t *testing.T) {
	worst := 0.0
	for x := -87.0; x <= 10; x += 1.0 / 4096 {
		got, want := float64(exp32(float32(x))), math.Exp(float64(float32(x)))
		if r := math.Abs(got-want) / want; r > worst {
			worst = r
		}
	}
	if worst > 3e-7 {
		t.Fatalf("relative error %g", worst)
	}
	t.Logf("relative error up to %.2g", worst)
	if exp32(-100) != 0 || exp32(0) != 1 {
		t.Fatalf("exp32(-100) = %v, exp32(0) = %v", exp32(-100), exp32(0))
	}
}
