package dicom

import (
	"flag"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

var regen = flag.Bool("regen", false, "rewrite testdata/*/native, the inputs of testdata/make.sh")

// dcmtkSeries are the two small series of testdata: signed 16-bit values reaching both ends
// of the range (so predictions wrap modulo 2^16), and unsigned 12-bit values with an intercept.
func dcmtkSeries() map[string][]ctSlice {
	rng := rand.New(rand.NewSource(7))
	make3 := func(uid string, bits int, signed bool, inter float64, value func(x, y, k int) int) []ctSlice {
		var out []ctSlice
		for k := 0; k < 3; k++ {
			c := ctSlice{uid: uid, modality: "CT", instance: k + 1, orient: [6]float64{1, 0, 0, 0, 1, 0},
				pos: [3]float64{-20, -16, 5 * float64(k)}, spacing: [2]float64{1, 1}, rows: 32, cols: 40,
				bitsStored: bits, signed: signed, slope: 1, inter: inter}
			for y := 0; y < c.rows; y++ {
				for x := 0; x < c.cols; x++ {
					c.stored = append(c.stored, value(x, y, k))
				}
			}
			out = append(out, c)
		}
		return out
	}
	s16 := make3("1.2.826.0.1.3680043.2.1125.1", 16, true, 0, func(x, y, k int) int {
		switch {
		case x == 0 && y == 0:
			return -32768
		case x == 1 && y == 0:
			return 32767
		case y == 5 && x%2 == 0:
			return []int{-32768, 32767}[x/2%2]
		}
		return int(1500*math.Sin(float64(x)/5)*math.Cos(float64(y)/7)) + rng.Intn(101) - 50 + 100*k - 500
	})
	u12 := make3("1.2.826.0.1.3680043.2.1125.2", 12, false, -1024, func(x, y, k int) int {
		switch {
		case x == 0 && y == 0:
			return 0
		case x == 1 && y == 0:
			return 4095
		}
		return 1024 + int(900*math.Cos(float64(x*y)/40)) + rng.Intn(41) - 20 + 50*k
	})
	return map[string][]ctSlice{"s16": s16, "u12": u12}
}

// TestDCMTKEncodedSeries reads the series of testdata/ as DCMTK 3.6.7 compressed them (see
// testdata/make.sh: lossless JPEG with each predictor, a point transform, several fragments
// per frame, and RLE) and requires the voxels of the uncompressed originals, which in turn
// must hold the values they were written with.
func TestDCMTKEncodedSeries(t *testing.T) {
	for name, series := range dcmtkSeries() {
		dir := filepath.Join("testdata", name)
		if *regen {
			if err := os.MkdirAll(filepath.Join(dir, "native"), 0o755); err != nil {
				t.Fatal(err)
			}
			for k, c := range series {
				p := filepath.Join(dir, "native", []string{"a.dcm", "b.dcm", "c.dcm"}[k])
				if err := os.WriteFile(p, c.file(explicitLE).bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		native, _, err := ReadDir(filepath.Join(dir, "native"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		var want []float32
		for _, c := range series {
			for _, v := range c.stored {
				want = append(want, float32(float64(v)+c.inter))
			}
		}
		for i := range want {
			if native.Data[i] != want[i] {
				t.Fatalf("%s/native voxel %d = %v, written %v", name, i, native.Data[i], want[i])
			}
		}
		variants, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, vdir := range variants {
			variant := filepath.Base(vdir)
			if variant == "native" {
				continue
			}
			v, s, err := ReadDir(vdir, Options{})
			if err != nil {
				t.Fatalf("%s/%s: %v", name, variant, err)
			}
			seen[s.Syntax] = true
			// A point transform of 2 keeps the stored pattern's upper bits only.
			shift := map[string]uint{"pt2": 2}[variant]
			for i, x := range native.Data {
				w := x
				if shift > 0 {
					c := series[0]
					stored := int64(float64(x) - c.inter)
					w = float32(float64(stored>>shift<<shift) + c.inter)
				}
				if v.Data[i] != w {
					t.Fatalf("%s/%s (%s): voxel %d = %v, want %v", name, variant, s.Syntax, i, v.Data[i], w)
				}
			}
			if v.Affine != native.Affine {
				t.Fatalf("%s/%s: affine %v, native %v", name, variant, v.Affine, native.Affine)
			}
		}
		for _, syn := range []string{jpegLossless, jpegSV1, rleLossless} {
			if !seen[syn] {
				t.Errorf("%s: no DCMTK file in transfer syntax %s", name, syn)
			}
		}
	}
}
