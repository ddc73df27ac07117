package volume

import "testing"

// BenchmarkPreprocess runs the whole preprocessing (Orientationd, Spacingd at 1.5 mm through
// torch's grid arithmetic, NormalizeIntensity + ScaleIntensity) on benchCT's 512x512x100 slab
// at 0.8x0.8x2.5 mm, which becomes 273x273x166. Run with:
// go test -run XXX -bench Preprocess -benchtime 5x ./volume/
func BenchmarkPreprocess(b *testing.B) {
	v := benchCT()
	b.ResetTimer()
	for range b.N {
		if _, _, err := Preprocess(v, 1.5); err != nil {
			b.Fatal(err)
		}
	}
}
