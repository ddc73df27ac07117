//go:build !js

package cli_test

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"ctseg/internal/shared"
	"ctseg/volume"
)

// GPU tests run the command line with --device gpu: with no adapter the command itself
// fails, and so does the test (as internal/gputest does, they never skip).

func readF32(t testing.TB, path string) []float32 {
	t.Helper()
	b := readFile(t, path)
	if len(b)%4 != 0 {
		t.Fatalf("%s: %d bytes is not a float32 file", path, len(b))
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func maxAbsDiff(t testing.TB, got, want []float32) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	m := 0.0
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if !(d <= m) { // NaN counts as the worst
			m = d
			if math.IsNaN(d) {
				return math.Inf(1)
			}
		}
	}
	return m
}

// TestForwardSlidingWindow compares `forward --roi 16` with MONAI's SlidingWindowInferer
// (gaussian, overlap 0.25, sigma 0.125) on the golden [37,29,45] input, on both devices.
func TestForwardSlidingWindow(t *testing.T) {
	in := shared.Path(t, "golden", "sliding_window", "input.f32")
	want := readF32(t, shared.Path(t, "golden", "sliding_window", "output_gaussian.f32"))
	model := smallModel(t)
	for _, c := range []struct {
		device string
		tol    float64
	}{{"cpu", 1e-4}, {"gpu", 1e-3}} {
		t.Run(c.device, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "logits.f32")
			args := []string{"forward", "--weights", model, "--input", in, "--shape", "37,29,45", "--roi", "16",
				"--output", out, "--device", c.device, "--precision", "f32"}
			if c.device == "gpu" {
				args = append(args, "--verbose")
			}
			r := mustRun(t, args...)
			if d := maxAbsDiff(t, readF32(t, out), want); d > c.tol {
				t.Errorf("max abs error %g, want <= %g", d, c.tol)
			} else {
				t.Logf("%s: max abs error %.3g", c.device, d)
			}
			if c.device == "gpu" && (!strings.Contains(r.stderr, "adapter: ") || !strings.Contains(r.stderr, "plan: 36 windows")) {
				t.Errorf("--verbose printed %q", r.stderr)
			}
		})
	}
}

// TestConvertThenForward: logits from the converted f32 file equal those from the
// checkpoint bit for bit; the f16 file stays close.
func TestConvertThenForward(t *testing.T) {
	model := smallModel(t)
	d := t.TempDir()
	// A random-looking 16^3 input, run as one window.
	in := make([]byte, 4*16*16*16)
	x := uint32(12345)
	for i := 0; i < len(in); i += 4 {
		x = x*1664525 + 1013904223
		binary.LittleEndian.PutUint32(in[i:], math.Float32bits(float32(int32(x>>8)%2000)/1000))
	}
	inPath := writeFile(t, filepath.Join(d, "in.f32"), in)
	forward := func(w, name string) []float32 {
		out := filepath.Join(d, name)
		mustRun(t, "forward", "--weights", w, "--input", inPath, "--shape", "16,16,16", "--output", out, "--device", "cpu")
		return readF32(t, out)
	}
	mustRun(t, "convert", "--input", model, "--output", filepath.Join(d, "w32.safetensors"))
	mustRun(t, "convert", "--input", model, "--output", filepath.Join(d, "w16.safetensors"), "--f16")
	ref := forward(model, "pt.f32")
	if len(ref) != 9*16*16*16 {
		t.Fatalf("%d logits, want 9x16^3", len(ref))
	}
	if got := forward(filepath.Join(d, "w32.safetensors"), "w32.f32"); maxAbsDiff(t, got, ref) != 0 {
		t.Errorf("f32 file: logits differ from the checkpoint's by %g", maxAbsDiff(t, got, ref))
	}
	if dd := maxAbsDiff(t, forward(filepath.Join(d, "w16.safetensors"), "w16.f32"), ref); dd > 0.05 {
		t.Errorf("f16 file: logits differ by %g", dd)
	} else {
		t.Logf("f16 weights: max abs logit difference %.3g", dd)
	}
}

// TestSegmentDryRun plans example_ct_sm without running it.
func TestSegmentDryRun(t *testing.T) {
	ct := exampleCT(t)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"bundle model, WebGPU default limits", []string{"--device", "cpu"}},
		{"small model, this GPU's limits", []string{"--device", "gpu", "--weights", smallModel(t), "--roi", "32"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := mustRun(t, append([]string{"segment", "--input", ct, "--dry-run", "--spacing", "3"}, c.args...)...)
			for _, want := range []string{"input:", "[122 101 30] voxels", "preprocessed grid:", "windows:", "compute:", "planned GPU peak:", "largest binding:"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("dry-run output lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}

// TestSegmentGPU segments example_ct_sm with the small model on the GPU and checks the
// label map is on the input's grid with the input's header conventions. (GPU against CPU
// agreement is pipeline's TestSegmentGPUMatchesCPU; a second full run here would double
// the cost of the slowest test in the package.)
func TestSegmentGPU(t *testing.T) {
	ct := exampleCT(t)
	out := filepath.Join(t.TempDir(), "labels.nii.gz")
	r := mustRun(t, "segment", "--input", ct, "--output", out, "--weights", smallModel(t), "--spacing", "3", "--roi", "32", "--device", "gpu")
	t.Logf("%s", strings.SplitN(r.stderr, "\n", 2)[0])
	if !strings.Contains(r.stderr, "20 windows") || !strings.Contains(r.stderr, "peak GPU memory") {
		t.Errorf("GPU run did not report its windows and peak memory: %q", r.stderr)
	}
	ref, err := volume.ReadHeader(ct)
	if err != nil {
		t.Fatal(err)
	}
	lab, h, err := volume.ReadLabels(out)
	if err != nil {
		t.Fatal(err)
	}
	if h.Dims != ref.Dims || h.Affine != ref.Affine {
		t.Errorf("label map grid %v %v, input %v %v", h.Dims, h.Affine, ref.Dims, ref.Affine)
	}
	if h.SformCode != ref.SformCode {
		t.Errorf("sform code %d, the input's %d", h.SformCode, ref.SformCode)
	}
	seen := map[uint8]int{}
	for _, v := range lab {
		if v >= 9 {
			t.Fatalf("label %d from a 9-class model", v)
		}
		seen[v]++
	}
	if len(seen) < 2 {
		t.Errorf("a constant label map: %v", seen)
	}
	if names := volume.LabelNames(h); len(names) != 9 {
		t.Errorf("embedded label names %q", names)
	}
}

// TestPreprocessInvertRoundTrip: preprocess gives the planned grid; a label map made on that
// grid, inverted, lands on the input's grid with the labels where they were in space.
func TestPreprocessInvertRoundTrip(t *testing.T) {
	d := t.TempDir()
	// An LPS, anisotropic synthetic CT (reoriented and resampled by preprocess) and the
	// example CT.
	lps := ctNii()
	lps.srow = [3][4]float64{{-2, 0, 0, 20}, {0, -2.5, 0, 30}, {0, 0, 4.5, -40}}
	inputs := map[string]string{
		"synthetic LPS": writeFile(t, filepath.Join(d, "lps.nii"), lps.bytes()),
		"example_ct_sm": exampleCT(t),
	}
	for name, ct := range inputs {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			pre := filepath.Join(d, "pre.nii.gz")
			mustRun(t, "preprocess", "--input", ct, "--output", pre, "--spacing", "3")
			ref, err := volume.ReadHeader(ct)
			if err != nil {
				t.Fatal(err)
			}
			inv, err := volume.InversionFor(ref, 3)
			if err != nil {
				t.Fatal(err)
			}
			pv, ph, err := volume.ReadNIfTI(pre)
			if err != nil {
				t.Fatal(err)
			}
			if ph.Dims != inv.PreprocessedDims() || ph.Datatype != 16 {
				t.Errorf("preprocessed %v (datatype %d), planned %v", ph.Dims, ph.Datatype, inv.PreprocessedDims())
			}
			lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
			for _, v := range pv.Data {
				lo, hi = min(lo, v), max(hi, v)
			}
			if lo != -1 || hi != 1 {
				t.Errorf("preprocessed range [%v, %v], want [-1, 1]", lo, hi)
			}
			// Label the preprocessed grid by world position: 1 where R > c, 2 elsewhere.
			c := world(ph.Affine, [3]float64{float64(ph.Dims[0]) / 2, 0, 0})[0]
			lab := make([]uint8, ph.Dims[0]*ph.Dims[1]*ph.Dims[2])
			for z := 0; z < ph.Dims[2]; z++ {
				for y := 0; y < ph.Dims[1]; y++ {
					for x := 0; x < ph.Dims[0]; x++ {
						lab[x+ph.Dims[0]*(y+ph.Dims[1]*z)] = side(ph.Affine, x, y, z, c)
					}
				}
			}
			lp := filepath.Join(d, "lab.nii.gz")
			if err := volume.WriteLabels(lp, ph.Dims, ph.Affine, lab, []string{"background", "right", "left"}, ph); err != nil {
				t.Fatal(err)
			}
			for _, sp := range [][]string{nil, {"--spacing", "3"}} {
				out := filepath.Join(d, "inv"+strings.Join(sp, "")+".nii.gz")
				mustRun(t, append([]string{"invert", "--labels", lp, "--reference", ct, "--output", out}, sp...)...)
				got, h, err := volume.ReadLabels(out)
				if err != nil {
					t.Fatal(err)
				}
				if h.Dims != ref.Dims || h.Affine != ref.Affine {
					t.Fatalf("inverted grid %v %v, input %v %v", h.Dims, h.Affine, ref.Dims, ref.Affine)
				}
				if names := volume.LabelNames(h); len(names) != 3 || names[1] != "right" {
					t.Errorf("label names %q not carried over", names)
				}
				want, err := inv.Invert(lab)
				if err != nil {
					t.Fatal(err)
				}
				wrong, far := 0, 0
				for z := 0; z < h.Dims[2]; z++ {
					for y := 0; y < h.Dims[1]; y++ {
						for x := 0; x < h.Dims[0]; x++ {
							i := x + h.Dims[0]*(y+h.Dims[1]*z)
							if got[i] != want[i] {
								wrong++
							}
							// Away from the plane (> one 3 mm voxel), the side is unambiguous.
							if p := world(h.Affine, [3]float64{float64(x), float64(y), float64(z)}); math.Abs(p[0]-c) > 3 &&
								got[i] != side(h.Affine, x, y, z, c) {
								far++
							}
						}
					}
				}
				if wrong > 0 || far > 0 {
					t.Errorf("invert %v: %d voxels differ from volume's inversion, %d are on the wrong side", sp, wrong, far)
				}
			}
		})
	}
}

func world(a [4][4]float64, p [3]float64) [3]float64 {
	var w [3]float64
	for i := 0; i < 3; i++ {
		w[i] = a[i][0]*p[0] + a[i][1]*p[1] + a[i][2]*p[2] + a[i][3]
	}
	return w
}

func side(a [4][4]float64, x, y, z int, c float64) uint8 {
	if world(a, [3]float64{float64(x), float64(y), float64(z)})[0] > c {
		return 1
	}
	return 2
}

// TestBench runs the benchmark on one tiny window and checks every figure is printed and
// the JSON report is complete.
func TestBench(t *testing.T) {
	js := filepath.Join(t.TempDir(), "bench.json")
	r := mustRun(t, "bench", "--device", "gpu", "--roi", "16", "--shape", "16,16,16", "--repeat", "1", "--weights", smallModel(t), "--precision", "f32", "--json", js, "--tiles", "2x8x4,4x8x4c")
	for _, want := range []string{"adapter: ", "model: SegResNet F=8 K=9", "window: ", "GFLOP/s", "layer", "conv3x3", "groupnorm",
		"end to end: [16 16 16] volume, 1 windows", "peak GPU memory: "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("bench output lacks %q:\n%s", want, r.stdout)
		}
	}
	var rep struct {
		Adapter      string             `json:"adapter"`
		WindowGFLOPS float64            `json:"window_gflops"`
		WindowMedian float64            `json:"window_median_seconds"`
		Layers       []json.RawMessage  `json:"layers"`
		EndToEnd     float64            `json:"end_to_end_seconds"`
		PeakGPUBytes uint64             `json:"peak_gpu_bytes"`
		Windows      int                `json:"windows"`
		Limits       map[string]float64 `json:"limits"`
		LayerTiming  string             `json:"layer_timing"`
		E2EKinds     []struct {
			Kind    string  `json:"Kind"`
			Seconds float64 `json:"Seconds"`
		} `json:"end_to_end_gpu_kinds"`
		E2EBusy    float64                       `json:"end_to_end_gpu_busy_seconds"`
		Tiles      map[string]float64            `json:"tile_window_seconds"`
		TileLayers map[string]map[string]float64 `json:"tile_layer_seconds"`
	}
	if err := json.Unmarshal(readFile(t, js), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Tiles) != 2 || !(rep.Tiles["2x8x4"] > 0) || !(rep.Tiles["4x8x4c"] > 0) {
		t.Errorf("tile sweep: %v", rep.Tiles)
	}
	if rep.Adapter == "" || !(rep.WindowGFLOPS > 0) || !(rep.WindowMedian > 0) || len(rep.Layers) == 0 || !(rep.EndToEnd > 0) ||
		rep.PeakGPUBytes == 0 || rep.Windows != 1 || len(rep.Limits) == 0 {
		t.Errorf("incomplete report %+v", rep)
	}
	// lavapipe (CI) has timestamp queries: the layers and a timed end-to-end run use them.
	if strings.Contains(rep.Adapter, "llvmpipe") && rep.LayerTiming != "gpu timestamps" {
		t.Errorf("layers timed by %q on lavapipe, want gpu timestamps", rep.LayerTiming)
	}
	if rep.LayerTiming == "gpu timestamps" {
		kinds := map[string]bool{}
		for _, k := range rep.E2EKinds {
			kinds[k.Kind] = k.Seconds > 0
		}
		for _, k := range []string{"conv3x3", "groupnorm", "blend", "head", "zero"} {
			if !kinds[k] {
				t.Errorf("timed end-to-end run lacks a positive time for %s: %+v", k, rep.E2EKinds)
			}
		}
		if !(rep.E2EBusy > 0) || !strings.Contains(r.stdout, "end to end, timed on the GPU") {
			t.Errorf("no GPU busy time in the report:\n%s", r.stdout)
		}
		// every tiled layer timed under the default and each --tiles choice
		if len(rep.TileLayers) == 0 || !strings.Contains(r.stdout, "with the best tile per layer") {
			t.Errorf("no per-layer tile times:\n%s", r.stdout)
		}
		for layer, byTile := range rep.TileLayers {
			for _, tile := range []string{"default", "2x8x4", "4x8x4c"} {
				if !(byTile[tile] > 0) {
					t.Errorf("layer %s has no time for tile %s: %v", layer, tile, byTile)
				}
			}
		}
	} else if rep.LayerTiming != "wall clock" {
		t.Errorf("layer_timing %q", rep.LayerTiming)
	}
	// An existing report is kept without --force.
	r = ctseg(t, "bench", "--device", "gpu", "--roi", "16", "--shape", "16,16,16", "--repeat", "1", "--weights", smallModel(t), "--json", js)
	checkOneLineError(t, r, "bench")
}

// TestUsage: no command and unknown commands exit 2; help exits 0; flag errors exit 2
// without a stack; a bad flag value is a one-line error.
func TestUsage(t *testing.T) {
	if r := ctseg(t); r.code != 2 || !strings.Contains(r.stderr, "usage: ctseg") {
		t.Errorf("no arguments: exit %d, %q", r.code, r.stderr)
	}
	if r := ctseg(t, "help"); r.code != 0 || !strings.Contains(r.stderr, "segment") {
		t.Errorf("help: exit %d", r.code)
	}
	if r := ctseg(t, "frobnicate"); r.code != 2 || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("unknown command: exit %d, %q", r.code, r.stderr)
	}
	if r := ctseg(t, "segment", "--no-such-flag"); r.code != 2 || strings.Contains(r.stderr, "goroutine") {
		t.Errorf("unknown flag: exit %d, %q", r.code, r.stderr)
	}
	if r := ctseg(t, "segment", "-h"); r.code != 0 {
		t.Errorf("segment -h: exit %d", r.code)
	}
	for _, c := range []struct {
		cmd  string
		args []string
	}{
		{"segment", []string{"--input", "x.nii", "--output", "y.nii", "--spacing", "2"}},
		{"segment", []string{"--input", "x.nii", "--output", "y.nii", "--roi", "20"}},
		{"segment", []string{"--input", "x.nii", "--output", "y.nii", "--device", "tpu"}},
		{"segment", []string{"--input", "x.nii", "--output", "y.nii", "--precision", "f64"}},
		{"segment", []string{"--input", "x.nii"}},
		{"forward", []string{"--weights", "w", "--input", "i", "--shape", "0,8,8", "--output", "o"}},
		{"forward", []string{"--weights", "w", "--input", "i", "--shape", "8,8", "--output", "o"}},
		{"forward", []string{"--weights", "w", "--input", "i", "--shape", "16", "--roi", "8", "--overlap", "1", "--output", "o"}},
		{"bench", []string{"--repeat", "0"}},
		{"convert", []string{"--input", "x"}},
		{"segment", []string{"--input", "x.nii", "--output", "y.nii", "stray"}},
	} {
		r := ctseg(t, append([]string{c.cmd}, c.args...)...)
		checkOneLineError(t, r, c.cmd)
	}
}
