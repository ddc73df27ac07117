package dicom

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var regen = flag.Bool("regen", false, "rewrite testdata/*/native, the inputs of testdata/make.sh")

// dcmtkSeries are the two small series of testdata: signed 16-bit values reaching both ends
// of the range (so predictions wrap modulo 2^16), and unsigned 12-bit values with an intercept
// shaped like a CT slice.
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
		// Like a CT: air (a constant) around a disc of smooth, nearly noiseless tissue, so that
		// the coders' run modes, both kinds of edge and the low-error code mappings are used.
		switch dx, dy := x-20, y-16; {
		case x >= 24 && y < 16:
			// A surface whose mixed difference is 0 or −1 where the median predictor takes
			// Ra + Rb − Rc: small, negatively biased errors (JPEG-LS's k = 0 error mapping).
			xr := x - 24
			return 1500 + 40*xr - 40*y - xr*y/2
		case dx*dx+dy*dy > 14*14:
			return 0
		case x >= 9 && x < 15 && y >= 18 && y < 26: // a bright block: runs that end going down
			return 3000
		case x >= 22 && x < 32 && y >= 8 && y < 24: // a slow ramp without noise: errors of 0 or ±1
			return 2000 + (x+2*y)/3
		}
		return 1024 + int(900*math.Cos(float64(x*y)/40)) + rng.Intn(5) - 2 + 50*k
	})
	return map[string][]ctSlice{"s16": s16, "u12": u12}
}

// TestDCMTKEncodedSeries reads the series of testdata/ as DCMTK 3.6.7 compressed them (see
// testdata/make.sh: lossless JPEG with each predictor, a point transform, several fragments
// per frame; RLE; JPEG-LS lossless with default and preset parameters, and near-lossless) and
// requires the voxels of the uncompressed originals, which in turn must hold the values they
// were written with. For near-lossless the reference is DCMTK's own decoding.
func TestDCMTKEncodedSeries(t *testing.T) {
	if *regen {
		writeBenchSlice(t)
	}
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
			if variant == "native" || strings.HasSuffix(variant, "_dcmtk") {
				continue
			}
			v, s, err := ReadDir(vdir, Options{})
			if err != nil {
				t.Fatalf("%s/%s: %v", name, variant, err)
			}
			seen[s.Syntax] = true
			ref := native
			if _, err := os.Stat(vdir + "_dcmtk"); err == nil {
				// Lossy (near-lossless JPEG-LS): the reference is DCMTK's decoding, and the
				// encoding must have kept within its maximum deviation of 2.
				if ref, _, err = ReadDir(vdir+"_dcmtk", Options{}); err != nil {
					t.Fatal(err)
				}
				for i := range ref.Data {
					if d := math.Abs(float64(ref.Data[i] - native.Data[i])); d > 2 {
						t.Fatalf("%s/%s: DCMTK's decoding deviates by %v at voxel %d", name, variant, d, i)
					}
				}
			}
			// A point transform of 2 keeps the stored pattern's upper bits only.
			shift := map[string]uint{"pt2": 2}[variant]
			for i, x := range ref.Data {
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
		syntaxes := []string{jpegLossless, jpegSV1, rleLossless, jpegLSLossless}
		if name == "u12" {
			syntaxes = append(syntaxes, jpegLSNear)
		}
		for _, syn := range syntaxes {
			if !seen[syn] {
				t.Errorf("%s: no DCMTK file in transfer syntax %s", name, syn)
			}
		}
	}
}

// benchSlice is the real CT slice of testdata/bench: the 11th image of the shared series,
// decoded from its JPEG 2000. -regen writes it uncompressed for make.sh to encode.
func benchSlice(t testing.TB) (*header, []float32) {
	h := sharedSlice(t, 10)
	if err := h.checkPixelFormat(); err != nil {
		t.Fatal(err)
	}
	hu := make([]float32, h.rows*h.cols)
	if err := h.decode(hu); err != nil {
		t.Fatal(err)
	}
	return h, hu
}

func writeBenchSlice(t *testing.T) {
	h, hu := benchSlice(t)
	c := ctSlice{uid: "1.2.826.0.1.3680043.2.1125.3", modality: "CT", instance: 1, orient: [6]float64{1, 0, 0, 0, 1, 0},
		spacing: [2]float64{0.9765625, 0.9765625}, rows: h.rows, cols: h.cols, bitsStored: 12, slope: 1, inter: h.inter}
	for _, v := range hu {
		c.stored = append(c.stored, int(float64(v)-h.inter))
	}
	if err := os.MkdirAll(filepath.Join("testdata", "bench"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "bench", "ct512_native.dcm"), c.file(explicitLE).bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// and as 16-bit PGMs, for the JPEG 2000 family encoders (make.sh): the stored values, and
	// HU + 32768, which encoded unsigned and then declared signed is the HU themselves
	for name, off := range map[string]int{"ct512.pgm": 0, "ct512_s16.pgm": 32768 + int(h.inter)} {
		pgm := []byte(fmt.Sprintf("P5\n%d %d\n%d\n", h.cols, h.rows, map[bool]int{true: 4095, false: 65535}[off == 0]))
		for _, v := range c.stored {
			pgm = append(pgm, byte((v+off)>>8), byte(v+off))
		}
		if err := os.WriteFile(filepath.Join("testdata", "bench", name), pgm, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// codestreamSlice wraps a JPEG 2000 or HTJ2K codestream of the bench slice (testdata/bench,
// made by OpenJPH or OpenJPEG, see make.sh) in a DICOM file of the given syntax, and parses it:
// 12-bit unsigned stored values with the slice's intercept, or (signed) 16-bit HU.
func codestreamSlice(t testing.TB, file, syntax string, signed bool) *header {
	j2c, err := os.ReadFile(filepath.Join("testdata", "bench", file))
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := benchSlice(t)
	c := ctSlice{uid: "1.2.826.0.1.3680043.2.1125.4", modality: "CT", instance: 1, orient: [6]float64{1, 0, 0, 0, 1, 0},
		spacing: [2]float64{0.9765625, 0.9765625}, rows: ref.rows, cols: ref.cols, bitsStored: 12, slope: 1, inter: ref.inter}
	if signed {
		c.bitsStored, c.signed, c.inter = 16, true, 0
	}
	f := c.file(explicitLE)
	f.syntax = syntax
	f.elems[len(f.elems)-1] = testElem{tag: tagPixelData, raw: encapsulate(append(j2c, make([]byte, len(j2c)%2)...))}
	h, err := parse(f.bytes())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// codestreams are the bench slice's JPEG 2000 family fixtures: the syntax each is wrapped in,
// and whether it is High-Throughput (Part 15). The ones with precincts of 128 and a
// position-first progression are what go-jpeg2000 before v1.5.1 decoded wrongly without an
// error (195,000 of 262,144 voxels off).
var codestreams = []struct {
	file, syntax string
	ht, signed   bool
}{
	{"ct512_htj2k.j2c", htj2kLossless, true, false},      // OpenJPH, RPCL, one precinct per resolution
	{"ct512_htj2k_prec.j2c", htj2kLossless, true, false}, // OpenJPH, PCRL, 128x128 precincts
	{"ct512_htj2k_s16.j2c", htj2kAny, true, true},        // OpenJPH, signed 16-bit HU
	{"ct512_j2k_prec.j2k", j2kLossless, false, false},    // OpenJPEG (Part 1), CPRL, 128x128 precincts
}

// TestRealSliceCodecs: a real CT slice, JPEG-LS and lossless JPEG encoded by DCMTK, HTJ2K
// encoded by OpenJPH and JPEG 2000 with precincts encoded by OpenJPEG from its JPEG 2000
// decoding, gives the same HU through each decoder.
func TestRealSliceCodecs(t *testing.T) {
	_, want := benchSlice(t)
	files := []string{"ct512_jls.dcm", "ct512_jpegll.dcm"}
	for _, c := range codestreams {
		files = append(files, c.file)
		// Rsiz bit 14 and a CAP marker say Part 15: the HT fixtures must be HT, the other not
		b, err := os.ReadFile(filepath.Join("testdata", "bench", c.file))
		if err != nil {
			t.Fatal(err)
		}
		ht := len(b) > 8 && b[6]&0x40 != 0 && bytes.Contains(b[:200], []byte{0xFF, 0x50})
		if ht != c.ht {
			t.Fatalf("%s: High-Throughput %v, want %v", c.file, ht, c.ht)
		}
	}
	for _, f := range files {
		var h *header
		for _, c := range codestreams {
			if c.file == f {
				h = codestreamSlice(t, c.file, c.syntax, c.signed)
			}
		}
		if h == nil {
			_, h = dcmtkFrame(t, filepath.Join("bench", f))
		}
		if err := h.checkPixelFormat(); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, h.rows*h.cols)
		if err := h.decode(got); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: voxel %d = %v, the JPEG 2000 original %v", f, i, got[i], want[i])
			}
		}
	}
}

// BenchmarkDecodeSlice decodes the real 512×512 slice of testdata/bench in each codec.
func BenchmarkDecodeSlice(b *testing.B) {
	for _, f := range []string{"ct512_jls.dcm", "ct512_jpegll.dcm", "ct512_htj2k.j2c", "j2k"} {
		b.Run(strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(f, "ct512_"), ".dcm"), ".j2c"), func(b *testing.B) {
			var h *header
			switch f {
			case "j2k": // the shared series' own JPEG 2000 (Part 1) slice
				h = sharedSlice(b, 10)
			case "ct512_htj2k.j2c":
				h = codestreamSlice(b, f, htj2kLossless, false)
			default:
				_, h = dcmtkFrame(b, filepath.Join("bench", f))
			}
			if err := h.checkPixelFormat(); err != nil {
				b.Fatal(err)
			}
			out := make([]float32, h.rows*h.cols)
			for b.Loop() {
				if err := h.decode(out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
