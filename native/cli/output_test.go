//go:build !js

package cli_test

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ctseg/volume"
	"ctseg/weights"
)

// outputCase is one command with one output file, built in a fresh folder.
type outputCase struct {
	name string
	cmd  string
	// args returns the command line writing out; inputs are created in dir.
	args func(t *testing.T, dir, out string) []string
	out  string // output file name
}

func outputCases(model string) []outputCase {
	ct := func(t *testing.T, dir string) string {
		return writeFile(t, filepath.Join(dir, "ct.nii"), ctNii().bytes())
	}
	return []outputCase{
		{"segment", "segment", func(t *testing.T, dir, out string) []string {
			return []string{"segment", "--input", ct(t, dir), "--output", out, "--weights", model, "--device", "cpu", "--spacing", "3", "--roi", "16"}
		}, "labels.nii.gz"},
		{"preprocess", "preprocess", func(t *testing.T, dir, out string) []string {
			return []string{"preprocess", "--input", ct(t, dir), "--output", out, "--spacing", "3"}
		}, "pre.nii"},
		{"invert", "invert", func(t *testing.T, dir, out string) []string {
			lab := writeFile(t, filepath.Join(dir, "lab.nii"), withNii(func(r *nii) { r.datatype, r.data = 2, make([]byte, 16*16*16) }))
			return []string{"invert", "--labels", lab, "--reference", ct(t, dir), "--output", out}
		}, "inv.nii.gz"},
		{"convert", "convert", func(t *testing.T, dir, out string) []string {
			return []string{"convert", "--input", model, "--output", out}
		}, "model.safetensors"},
		{"forward", "forward", func(t *testing.T, dir, out string) []string {
			in := writeFile(t, filepath.Join(dir, "in.f32"), make([]byte, 4*8*8*8))
			return []string{"forward", "--weights", model, "--input", in, "--shape", "8,8,8", "--output", out, "--device", "cpu"}
		}, "logits.f32"},
	}
}

// TestExistingOutput: an existing output is refused without --force and left as it was,
// and replaced with --force; no temporary file is left either way.
func TestExistingOutput(t *testing.T) {
	model := smallModel(t)
	for _, c := range outputCases(model) {
		t.Run(c.name, func(t *testing.T) {
			in, dir := t.TempDir(), t.TempDir()
			out := filepath.Join(dir, c.out)
			writeFile(t, out, []byte("precious"))
			before := dirEntries(t, dir)
			r := ctseg(t, c.args(t, in, out)...)
			checkOneLineError(t, r, c.cmd)
			if !strings.Contains(r.stderr, "--force") {
				t.Errorf("refusal does not mention --force: %q", r.stderr)
			}
			if got := string(readFile(t, out)); got != "precious" {
				t.Errorf("existing output changed to %d bytes without --force", len(got))
			}
			if got := dirEntries(t, dir); strings.Join(got, " ") != strings.Join(before, " ") {
				t.Errorf("output folder changed from %v to %v", before, got)
			}

			mustRun(t, append(c.args(t, in, out), "--force")...)
			if got := readFile(t, out); string(got) == "precious" || len(got) == 0 {
				t.Errorf("--force did not replace the output")
			}
			for _, name := range dirEntries(t, dir) {
				if strings.HasPrefix(name, ".") {
					t.Errorf("temporary file %s left behind", name)
				}
			}
			if fi, err := os.Stat(out); err != nil || fi.Mode().Perm()&0o044 != 0o044 {
				t.Errorf("output mode %v (%v), want readable by all like any new file", fi.Mode(), err)
			}
		})
	}
}

// TestOutputIsInput: an output that is one of the inputs is refused even with --force,
// whatever the spelling of the path (relative, with ./ or .., through a symlink or a hard
// link), and the input is left intact.
func TestOutputIsInput(t *testing.T) {
	model := smallModel(t)
	dir := t.TempDir()
	ct := writeFile(t, filepath.Join(dir, "ct.nii"), ctNii().bytes())
	ctBytes := readFile(t, ct)
	pt := filepath.Join(dir, "model.pt")
	writeFile(t, pt, readFile(t, model))
	in := writeFile(t, filepath.Join(dir, "in.f32"), make([]byte, 4*8*8*8))
	if err := os.Symlink(ct, filepath.Join(dir, "link.nii")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(ct, filepath.Join(dir, "hard.nii")); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, ct)
	if err != nil {
		t.Fatal(err)
	}
	seg := func(out string) []string {
		return []string{"segment", "--input", ct, "--output", out, "--weights", pt, "--device", "cpu", "--spacing", "3", "--roi", "16", "--force"}
	}
	cases := []struct {
		name, cmd string
		args      []string
	}{
		{"segment onto its input", "segment", seg(ct)},
		{"segment onto its input, relative path", "segment", seg(rel)},
		{"segment onto its input, with ./ and ..", "segment", seg(filepath.Join(dir, ".", "sub", "..", "ct.nii"))},
		{"segment onto a symlink to its input", "segment", seg(filepath.Join(dir, "link.nii"))},
		{"segment onto a hard link of its input", "segment", seg(filepath.Join(dir, "hard.nii"))},
		{"preprocess onto its input", "preprocess", []string{"preprocess", "--input", ct, "--output", ct, "--spacing", "3", "--force"}},
		{"invert onto its labels", "invert", []string{"invert", "--labels", ct, "--reference", ct, "--output", ct, "--force"}},
		{"convert onto its input", "convert", []string{"convert", "--input", pt, "--output", pt, "--force"}},
		{"forward onto its input", "forward", []string{"forward", "--weights", pt, "--input", in, "--shape", "8,8,8", "--output", in, "--force", "--device", "cpu"}},
		{"forward onto its weights", "forward", []string{"forward", "--weights", pt, "--input", in, "--shape", "8,8,8", "--output", pt, "--force", "--device", "cpu"}},
		{"bench report onto its weights", "bench", []string{"bench", "--weights", pt, "--json", pt, "--force"}},
	}
	before := dirEntries(t, dir)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ctseg(t, c.args...)
			checkOneLineError(t, r, c.cmd)
			if !strings.Contains(r.stderr, "also an input") {
				t.Errorf("error %q does not say the output is an input", strings.TrimSpace(r.stderr))
			}
		})
	}
	if got := readFile(t, ct); string(got) != string(ctBytes) {
		t.Errorf("the input CT was modified")
	}
	if got := readFile(t, pt); string(got) != string(readFile(t, model)) {
		t.Errorf("the weights were modified")
	}
	if got := dirEntries(t, dir); strings.Join(got, " ") != strings.Join(before, " ") {
		t.Errorf("folder changed from %v to %v", before, got)
	}
}

// TestFailureLeavesNoOutput: a failure after the output checks (bad weights, a write that
// is refused half-way) leaves no file, and an existing output kept with --force stays as it
// was when the run fails before writing.
func TestFailureLeavesNoOutput(t *testing.T) {
	model := smallModel(t)
	dir, out := t.TempDir(), t.TempDir()
	ct := writeFile(t, filepath.Join(dir, "ct.nii"), ctNii().bytes())
	bad := writeFile(t, filepath.Join(dir, "bad.pt"), []byte("<html>404</html>"))

	t.Run("segment with bad weights", func(t *testing.T) {
		r := ctseg(t, "segment", "--input", ct, "--output", filepath.Join(out, "l.nii.gz"), "--stats", filepath.Join(out, "s.json"),
			"--weights", bad, "--device", "cpu", "--spacing", "3", "--roi", "16")
		checkOneLineError(t, r, "segment")
	})
	t.Run("segment with --force and bad weights keeps the old outputs", func(t *testing.T) {
		d := t.TempDir()
		old := writeFile(t, filepath.Join(d, "l.nii.gz"), []byte("old labels"))
		oldTable := writeFile(t, filepath.Join(d, "l.labels.txt"), []byte("old table"))
		r := ctseg(t, "segment", "--input", ct, "--output", old, "--weights", bad, "--device", "cpu", "--spacing", "3", "--roi", "16", "--force")
		checkOneLineError(t, r, "segment")
		if string(readFile(t, old)) != "old labels" || string(readFile(t, oldTable)) != "old table" {
			t.Errorf("a failed run changed the existing outputs")
		}
		if got := dirEntries(t, d); len(got) != 2 {
			t.Errorf("folder holds %v", got)
		}
	})
	t.Run("segment with a bad CT after the weights loaded", func(t *testing.T) {
		b := ctNii().bytes()
		short := writeFile(t, filepath.Join(dir, "short.nii"), b[:len(b)-1])
		r := ctseg(t, "segment", "--input", short, "--output", filepath.Join(out, "l.nii.gz"), "--stats", filepath.Join(out, "s.csv"),
			"--weights", model, "--device", "cpu", "--spacing", "3", "--roi", "16")
		checkOneLineError(t, r, "segment")
	})
	t.Run("forward with bad weights", func(t *testing.T) {
		in := writeFile(t, filepath.Join(dir, "in.f32"), make([]byte, 4*8*8*8))
		r := ctseg(t, "forward", "--weights", bad, "--input", in, "--shape", "8,8,8", "--output", filepath.Join(out, "o.f32"), "--device", "cpu")
		checkOneLineError(t, r, "forward")
	})
	t.Run("convert --f16 of weights outside the f16 range", func(t *testing.T) {
		ts := cloneTensors(smallStateDict(t))
		ts[0].Data[0] = 1e6
		w := writeFile(t, filepath.Join(dir, "big.safetensors"), rawSafetensors(t, ts))
		r := ctseg(t, "convert", "--input", w, "--output", filepath.Join(out, "w.safetensors"), "--f16")
		checkOneLineError(t, r, "convert")
		if !strings.Contains(r.stderr, "float16 range") {
			t.Errorf("error %q does not name the f16 range", r.stderr)
		}
	})
	t.Run("missing output folder", func(t *testing.T) {
		r := ctseg(t, "preprocess", "--input", ct, "--output", filepath.Join(out, "no", "such", "pre.nii"), "--spacing", "3")
		checkOneLineError(t, r, "preprocess")
		if !strings.Contains(r.stderr, "does not exist") {
			t.Errorf("error %q", r.stderr)
		}
	})
	t.Run("output is a directory", func(t *testing.T) {
		d := filepath.Join(t.TempDir(), "x.nii.gz")
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		r := ctseg(t, "segment", "--input", ct, "--output", d, "--weights", model, "--device", "cpu", "--spacing", "3", "--roi", "16", "--force")
		checkOneLineError(t, r, "segment")
	})
	t.Run("existing colour table without --force", func(t *testing.T) {
		d := t.TempDir()
		table := writeFile(t, filepath.Join(d, "l.labels.txt"), []byte("mine"))
		r := ctseg(t, "segment", "--input", ct, "--output", filepath.Join(d, "l.nii.gz"), "--weights", model, "--device", "cpu", "--spacing", "3", "--roi", "16")
		checkOneLineError(t, r, "segment")
		if string(readFile(t, table)) != "mine" || len(dirEntries(t, d)) != 1 {
			t.Errorf("the colour table was touched or the label map written: %v", dirEntries(t, d))
		}
	})
	t.Run("existing stats file without --force", func(t *testing.T) {
		d := t.TempDir()
		writeFile(t, filepath.Join(d, "s.json"), []byte("{}"))
		r := ctseg(t, "segment", "--input", ct, "--output", filepath.Join(d, "l.nii.gz"), "--stats", filepath.Join(d, "s.json"),
			"--weights", model, "--device", "cpu", "--spacing", "3", "--roi", "16")
		checkOneLineError(t, r, "segment")
		if len(dirEntries(t, d)) != 1 {
			t.Errorf("folder holds %v", dirEntries(t, d))
		}
	})
	if got := dirEntries(t, out); len(got) > 0 {
		t.Errorf("output folder holds %v after failures", got)
	}
}

// TestSegmentOutputs: segment writes the label map on the input's grid, its colour table,
// and the statistics as JSON or CSV; --dry-run writes nothing.
func TestSegmentOutputs(t *testing.T) {
	model := smallModel(t)
	dir := t.TempDir()
	ct := writeFile(t, filepath.Join(dir, "ct.nii"), ctNii().bytes())
	out := t.TempDir()
	lab := filepath.Join(out, "labels.nii.gz")
	r := mustRun(t, "segment", "--input", ct, "--output", lab, "--stats", filepath.Join(out, "stats.json"),
		"--weights", model, "--device", "cpu", "--spacing", "3", "--roi", "16")
	if !strings.Contains(r.stderr, "wrote "+lab+", "+filepath.Join(out, "labels.labels.txt")+", "+filepath.Join(out, "stats.json")+"\n") {
		t.Errorf("stderr %q does not report the files written", r.stderr)
	}
	if got := strings.Join(dirEntries(t, out), " "); got != "labels.labels.txt labels.nii.gz stats.json" {
		t.Errorf("outputs: %s", got)
	}
	l, h, err := volume.ReadLabels(lab)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := volume.ReadHeader(ct)
	if err != nil {
		t.Fatal(err)
	}
	if h.Dims != ref.Dims || h.Affine != ref.Affine || len(l) != 16*16*16 {
		t.Errorf("label map %v %v, input %v %v", h.Dims, h.Affine, ref.Dims, ref.Affine)
	}
	for i, v := range l {
		if v >= 9 {
			t.Fatalf("label %d at voxel %d from a 9-class model", v, i)
		}
	}
	names := volume.LabelNames(h)
	if len(names) != 9 || names[1] == "" {
		t.Errorf("embedded label names %q", names)
	}
	table := string(readFile(t, filepath.Join(out, "labels.labels.txt")))
	for _, n := range names[1:] {
		if !strings.Contains(table, n) {
			t.Errorf("colour table lacks %q", n)
		}
	}
	var stats map[string]struct {
		Label  int     `json:"label"`
		Voxels int64   `json:"voxels"`
		Volume float64 `json:"volume"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(out, "stats.json")), &stats); err != nil {
		t.Fatalf("stats.json: %v", err)
	}
	var voxels int64
	for _, s := range stats {
		voxels += s.Voxels
	}
	if len(stats) == 0 || voxels > 16*16*16 {
		t.Errorf("stats.json: %d structures, %d voxels", len(stats), voxels)
	}

	// CSV statistics, replacing the label map with --force.
	mustRun(t, "segment", "--input", ct, "--output", lab, "--stats", filepath.Join(out, "stats.csv"),
		"--weights", model, "--device", "cpu", "--spacing", "3", "--roi", "16", "--force")
	rows, err := csv.NewReader(strings.NewReader(string(readFile(t, filepath.Join(out, "stats.csv"))))).ReadAll()
	if err != nil || len(rows) < 1 {
		t.Fatalf("stats.csv: %v %v", rows, err)
	}
	if got := strings.Join(dirEntries(t, out), " "); got != "labels.labels.txt labels.nii.gz stats.csv stats.json" {
		t.Errorf("outputs: %s", got)
	}
	if len(stats) != len(rows)-1 {
		t.Errorf("%d JSON records, %d CSV rows", len(stats), len(rows)-1)
	}

	// Unknown stats extension: refused before anything is written.
	d := t.TempDir()
	r = ctseg(t, "segment", "--input", ct, "--output", filepath.Join(d, "l.nii.gz"), "--stats", filepath.Join(d, "s.txt"),
		"--weights", model, "--device", "cpu", "--spacing", "3", "--roi", "16")
	checkOneLineError(t, r, "segment")
	if len(dirEntries(t, d)) > 0 {
		t.Errorf("refused run wrote %v", dirEntries(t, d))
	}

	// --dry-run, even with --output and --stats named, writes nothing.
	d = t.TempDir()
	r = mustRun(t, "segment", "--input", ct, "--output", filepath.Join(d, "l.nii.gz"), "--stats", filepath.Join(d, "s.json"),
		"--dry-run", "--spacing", "3", "--device", "cpu")
	if !strings.Contains(r.stdout, "planned GPU peak") {
		t.Errorf("dry-run output %q", r.stdout)
	}
	if got := dirEntries(t, d); len(got) > 0 {
		t.Errorf("dry-run wrote %v", got)
	}
}

// TestConvertRoundTrip: the converted file reads back as the same tensors (f32 exactly,
// f16 within half precision).
func TestConvertRoundTrip(t *testing.T) {
	model := smallModel(t)
	want := smallStateDict(t)
	d := t.TempDir()
	for _, f16 := range []bool{false, true} {
		out := filepath.Join(d, map[bool]string{false: "f32.safetensors", true: "f16.safetensors"}[f16])
		args := []string{"convert", "--input", model, "--output", out}
		if f16 {
			args = append(args, "--f16")
		}
		r := mustRun(t, args...)
		if !strings.Contains(r.stdout, "SegResNet F=8 K=9") || !strings.Contains(r.stdout, "wrote "+out) {
			t.Errorf("convert output %q", r.stdout)
		}
		got, err := weights.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Tensors) != len(want.Tensors) {
			t.Fatalf("%d tensors, want %d", len(got.Tensors), len(want.Tensors))
		}
		for i, ts := range want.Tensors {
			g := got.Get(ts.Name)
			if g == nil {
				t.Fatalf("tensor %s missing", ts.Name)
			}
			for k, v := range ts.Data {
				d := g.Data[k] - v
				if (!f16 && d != 0) || (f16 && (d > 1e-3*max(1, abs32(v)) || -d > 1e-3*max(1, abs32(v)))) {
					t.Fatalf("f16=%v tensor %d %s[%d] = %v, want %v", f16, i, ts.Name, k, g.Data[k], v)
				}
			}
		}
	}
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}
