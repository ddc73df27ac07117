package volume

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
)

// torchGridFixture is testdata/torch_grid.json, written by testdata/make_torch_grid.py with
// torch 1.13 and numpy 1.24 + OpenBLAS 0.3.21 (the stack of ../shared/golden).
type torchGridFixture struct {
	Torch, Numpy string
	Base         map[string]string
	Solve        []struct{ A, B, X [4][4]string }
}

func loadTorchGridFixture(t *testing.T) torchGridFixture {
	t.Helper()
	b, err := os.ReadFile("testdata/torch_grid.json")
	if err != nil {
		t.Fatal(err)
	}
	var f torchGridFixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Base) != 512 || len(f.Solve) != 120 {
		t.Fatalf("fixture holds %d base axes and %d systems, want 512 and 120", len(f.Base), len(f.Solve))
	}
	return f
}

func hexMatrix(t *testing.T, m [4][4]string) [4][4]float64 {
	t.Helper()
	var r [4][4]float64
	for i := range m {
		for j := range m[i] {
			v, err := strconv.ParseFloat(m[i][j], 64)
			if err != nil {
				t.Fatal(err)
			}
			r[i][j] = v
		}
	}
	return r
}

// TestAffineGridBaseMatchesTorch: the normalised coordinates affine_grid gives an axis of n
// voxels, n = 1..512, bit for bit (through their SHA-256).
func TestAffineGridBaseMatchesTorch(t *testing.T) {
	f := loadTorchGridFixture(t)
	bad := 0
	for n := 1; n <= 512; n++ {
		b := affineGridBase(n)
		raw := make([]byte, 8*len(b))
		for i, x := range b {
			binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(x))
		}
		s := sha256.Sum256(raw)
		if hex.EncodeToString(s[:]) != f.Base[strconv.Itoa(n)] {
			if bad++; bad <= 5 {
				t.Errorf("affine_grid base for n = %d differs from torch %s's", n, f.Torch)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of 512 axis lengths differ", bad)
	}
}

// TestSolve4MatchesNumpy: every entry of numpy.linalg.solve on 120 affine systems, bit for bit.
func TestSolve4MatchesNumpy(t *testing.T) {
	f := loadTorchGridFixture(t)
	bad := 0
	for n, c := range f.Solve {
		x, err := solve4(hexMatrix(t, c.A), hexMatrix(t, c.B))
		if err != nil {
			t.Fatal(err)
		}
		if want := hexMatrix(t, c.X); x != want {
			if bad++; bad <= 5 {
				t.Errorf("system %d: solve4 gives\n%v\nnumpy %s\n%v", n, x, f.Numpy, want)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d systems differ", bad, len(f.Solve))
	}
}

// TestTorchGridSeparableSameBits: the per-axis tables of an axis-aligned grid give the same bits
// as computing every position in full, for both samplers, on grids that stretch, shrink, flip
// and shift the input, with sizes 1 (a single voxel: coordinate 0) to 67.
func TestTorchGridSeparableSameBits(t *testing.T) {
	in := [3]int{13, 1, 29}
	src := view{dims: in, st: [3]int{1, in[0], in[0] * in[1]}, data: make([]float32, in[0]*in[1]*in[2])}
	for i := range src.data {
		// Zeros beside non-zeros and values that cancel: where the round-off shows.
		src.data[i] = float32([]int{0, 0, 700, -700, 0, 1, -1024, 3}[i%8])
	}
	maps := [][4][4]float64{
		{{0.5, 0, 0, 0}, {0, 2, 0, 0}, {0, 0, 0.6000000000000001, 0}, {0, 0, 0, 1}},
		{{-0.75, 0, 0, 12}, {0, 0.5, 0, 0.25}, {0, 0, 1.5, -0.5}, {0, 0, 0, 1}},
		{{0.1, 0, 0, 0.3}, {0, 1, 0, 0}, {0, 0, 3, 1}, {0, 0, 0, 1}},
	}
	outs := [][3]int{{25, 1, 47}, {17, 3, 20}, {67, 2, 10}}
	for n, vm := range maps {
		out := outs[n]
		g := newTorchGrid(vm, src, out)
		if !g.separable() {
			t.Fatalf("map %d: not separable", n)
		}
		full := *g
		full.perVoxel = true
		a, b := &Volume{Dims: out, Data: make([]float32, out[0]*out[1]*out[2])}, &Volume{Dims: out, Data: make([]float32, out[0]*out[1]*out[2])}
		g.sample(a, src)
		full.sample(b, src)
		for i := range a.Data {
			if math.Float32bits(a.Data[i]) != math.Float32bits(b.Data[i]) {
				t.Fatalf("map %d, voxel %d: tables give %v, full positions %v", n, i, a.Data[i], b.Data[i])
			}
		}
		st := [3]int{1, out[0], out[0] * out[1]}
		na, nb := make([]int, len(a.Data)), make([]int, len(a.Data))
		g.sampleNearest(out, 0, st, func(p, o int) { na[p] = o })
		full.sampleNearest(out, 0, st, func(p, o int) { nb[p] = o })
		if !slices.Equal(na, nb) {
			t.Fatalf("map %d: nearest samples differ", n)
		}
	}
}

// TestSpacingMatchesMONAIBits pins, on a small volume whose zeros sit beside non-zeros and
// whose values cancel (0 0 700 -700 0 1 -1024 3 repeated, 6x4x3 at 3 mm, resampled to 1.5 mm:
// 11x7x5), what MONAI 1.5.0's Spacing gives with torch 1.13 (run by hand, values below): the
// SHA-256 of its float32 output and the 65 voxels it leaves exactly 0. Exact arithmetic would
// make more of them 0: MONAI's positions are a few ulps off on voxel centres and halfway points.
func TestSpacingMatchesMONAIBits(t *testing.T) {
	vals := []float32{0, 0, 700, -700, 0, 1, -1024, 3}
	v := &Volume{Dims: [3]int{6, 4, 3}, Affine: [4][4]float64{{3, 0, 0, -10.5}, {0, 3, 0, 4.25}, {0, 0, 3, 100}, {0, 0, 0, 1}}}
	for i := 0; i < 6*4*3; i++ {
		v.Data = append(v.Data, vals[i%8])
	}
	out, _, err := ResampleSpacing(v, 1.5)
	if err != nil {
		t.Fatal(err)
	}
	if out.Dims != [3]int{11, 7, 5} {
		t.Fatalf("dims %v", out.Dims)
	}
	var zeros []int
	raw := make([]byte, 4*len(out.Data))
	for i, x := range out.Data {
		if x == 0 {
			zeros = append(zeros, i)
		}
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	want := []int{0, 1, 2, 18, 26, 27, 28, 31, 42, 44, 53, 54, 70, 77, 78, 79, 95, 103, 104, 105, 108, 119, 121, 130, 131,
		147, 154, 155, 156, 172, 180, 181, 182, 185, 196, 198, 207, 208, 224, 231, 232, 233, 249, 257, 258, 259, 262, 273,
		275, 284, 285, 301, 308, 309, 310, 326, 334, 335, 336, 339, 350, 352, 361, 362, 378}
	if !slices.Equal(zeros, want) {
		t.Errorf("exact zeros at %v,\nMONAI's at %v", zeros, want)
	}
	if s := sha256.Sum256(raw); hex.EncodeToString(s[:]) != "775c3bc6bbd9b52903e4037530f4db81450a9e46279ab8386e5ee0772c57597a" {
		t.Errorf("output differs from MONAI's in some bits")
	}
}
