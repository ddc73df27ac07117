//go:build !js

package cli_test

import (
	"encoding/json"
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// monaiProbe is testdata/monai_probe/index.json (make_monai_probe.py): MONAI's own module
// outputs for a new input.
type monaiProbe struct {
	Blocks []struct {
		Name, File, DType string
		Shape             []int
	}
}

// TestForwardProbe: `forward --probe` writes every block MONAI names, with MONAI's shapes and
// values, on both devices; `--confidence` is the softmax probability of the argmax class,
// computed independently (torch.softmax in float64); the logits of --output are conv_final.
// The input (16x8x24: the deepest level is 2x1x3) and MONAI's outputs are in testdata, made by
// make_monai_probe.py with MONAI 1.5.0 from the small golden model.
func TestForwardProbe(t *testing.T) {
	td := filepath.Join("testdata", "monai_probe")
	var want monaiProbe
	require.NoError(t, json.Unmarshal(readFile(t, filepath.Join(td, "index.json")), &want))
	wantP1 := readF32(t, filepath.Join(td, "p1.f32"))
	model := smallModel(t)
	for _, c := range []struct {
		device string
		tol    float64 // relative to the block's largest magnitude
	}{{"cpu", 2e-5}, {"gpu", 2e-5}} {
		t.Run(c.device, func(t *testing.T) {
			d := t.TempDir()
			dir := filepath.Join(d, "probe")
			args := []string{"forward", "--weights", model, "--input", filepath.Join(td, "input.f32"), "--shape", "16,8,24",
				"--device", c.device, "--precision", "f32", "--probe", dir, "--confidence", filepath.Join(d, "p1.f32"), "--output", filepath.Join(d, "logits.f32")}
			mustRun(t, args...)
			var got monaiProbe
			require.NoError(t, json.Unmarshal(readFile(t, filepath.Join(dir, "index.json")), &got))
			require.Len(t, got.Blocks, len(want.Blocks))
			for i, w := range want.Blocks {
				g := got.Blocks[i]
				require.Equal(t, w.Name, g.Name)
				require.Equal(t, w.Shape, g.Shape, w.Name)
				require.Equal(t, w.Name+".f32", g.File)
				require.Equal(t, "float32", g.DType)
				ref := readF32(t, filepath.Join(td, w.File))
				scale := 0.0
				for _, x := range ref {
					scale = max(scale, math.Abs(float64(x)))
				}
				diff := maxAbsDiff(t, readF32(t, filepath.Join(dir, g.File)), ref)
				t.Logf("%s %v: max abs difference %.2g (largest value %.3g)", w.Name, w.Shape, diff, scale)
				require.LessOrEqual(t, diff, c.tol*max(scale, 1), w.Name)
			}
			require.Equal(t, 0.0, maxAbsDiff(t, readF32(t, filepath.Join(d, "logits.f32")), readF32(t, filepath.Join(dir, "conv_final.f32"))))
			dp := maxAbsDiff(t, readF32(t, filepath.Join(d, "p1.f32")), wantP1)
			t.Logf("p1: max abs difference %.2g", dp)
			require.LessOrEqual(t, dp, 1e-6)

			// the probe is refused where it cannot be, and a probe is not replaced without --force
			r := ctseg(t, append(args, "--roi", "8")...)
			checkOneLineError(t, r, "forward")
			require.Contains(t, r.stderr, "cannot be combined with --roi")
			r = ctseg(t, "forward", "--weights", model, "--input", filepath.Join(td, "input.f32"), "--shape", "16,8,24", "--probe", dir, "--device", c.device)
			checkOneLineError(t, r, "forward")
			require.Contains(t, r.stderr, "holds a probe already")
			mustRun(t, "forward", "--weights", model, "--input", filepath.Join(td, "input.f32"), "--shape", "16,8,24", "--probe", dir, "--device", c.device, "--force")
			// an input inside the folder is never replaced, --force or not; another output may
			// not be one of the probe's files
			in := filepath.Join(dir, "convInit.f32")
			r = ctseg(t, "forward", "--weights", model, "--input", in, "--shape", "8,16,24", "--probe", dir, "--device", c.device, "--force")
			checkOneLineError(t, r, "forward")
			require.Contains(t, r.stderr, "input")
			r = ctseg(t, "forward", "--weights", model, "--input", filepath.Join(td, "input.f32"), "--shape", "16,8,24", "--probe", dir, "--device", c.device, "--force",
				"--confidence", filepath.Join(dir, "index.json"))
			checkOneLineError(t, r, "forward")
			require.Contains(t, r.stderr, "the same file")
			// a run that fails leaves no folder it made
			fresh := filepath.Join(d, "fresh")
			r = ctseg(t, "forward", "--weights", model, "--input", filepath.Join(td, "p1.f32"), "--shape", "16,8,32", "--probe", fresh, "--device", c.device)
			checkOneLineError(t, r, "forward")
			require.NoDirExists(t, fresh)
		})
	}
	r := ctseg(t, "forward", "--weights", model, "--input", filepath.Join(td, "input.f32"), "--shape", "16,8,24")
	checkOneLineError(t, r, "forward")
	require.Contains(t, r.stderr, "nothing to write")
}

// TestForwardConfidenceWindow: `--confidence` with `--roi` is the softmax of the blended
// logits the same run writes (p1 in float64 from them), on both devices.
func TestForwardConfidenceWindow(t *testing.T) {
	model := smallModel(t)
	in := filepath.Join("testdata", "monai_probe", "input.f32")
	for _, device := range []string{"cpu", "gpu"} {
		t.Run(device, func(t *testing.T) {
			d := t.TempDir()
			mustRun(t, "forward", "--weights", model, "--input", in, "--shape", "16,8,24", "--roi", "8", "--device", device,
				"--output", filepath.Join(d, "l.f32"), "--confidence", filepath.Join(d, "p.f32"))
			logits, p1 := readF32(t, filepath.Join(d, "l.f32")), readF32(t, filepath.Join(d, "p.f32"))
			nv := 16 * 8 * 24
			require.Len(t, p1, nv)
			require.Len(t, logits, 9*nv)
			for i := range nv {
				m, s := math.Inf(-1), 0.0
				for k := range 9 {
					m = max(m, float64(logits[k*nv+i]))
				}
				for k := range 9 {
					s += math.Exp(float64(logits[k*nv+i]) - m)
				}
				require.InDelta(t, 1/s, p1[i], 1e-7, "voxel %d", i)
			}
		})
	}
}
