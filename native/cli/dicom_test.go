//go:build !js

package cli_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ctseg/internal/shared"
	"ctseg/volume"
	"ctseg/volume/dicom"
)

func exampleDICOM(t testing.TB) string { return shared.Path(t, "data", "ct", "example_ct_dicom") }

// TestDICOMFolderIsTheSameCT: a DICOM folder given as --input is the same CT as a NIfTI file
// holding the series' voxels and affine. preprocess gives the same network input (voxel for
// voxel), dry-run the same plan, and segment a label map on the series' own grid.
func TestDICOMFolderIsTheSameCT(t *testing.T) {
	dir := exampleDICOM(t)
	d := t.TempDir()
	v, s, err := dicom.ReadDir(dir, dicom.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nii := filepath.Join(d, "series.nii")
	if err := volume.WriteNIfTI(nii, v, volume.WriteOptions{Ref: s.Header()}); err != nil {
		t.Fatal(err)
	}
	fromDir, fromNii := filepath.Join(d, "pre_dir.nii"), filepath.Join(d, "pre_nii.nii")
	mustRun(t, "preprocess", "--input", dir, "--spacing", "3", "--output", fromDir)
	mustRun(t, "preprocess", "--input", nii, "--spacing", "3", "--output", fromNii)
	a, ha, err := volume.ReadNIfTI(fromDir)
	if err != nil {
		t.Fatal(err)
	}
	b, hb, err := volume.ReadNIfTI(fromNii)
	if err != nil {
		t.Fatal(err)
	}
	if a.Dims != b.Dims || ha.Affine != hb.Affine || len(a.Data) != len(b.Data) {
		t.Fatalf("preprocessed grids differ: %v %v and %v %v", a.Dims, ha.Affine, b.Dims, hb.Affine)
	}
	for i := range a.Data {
		if a.Data[i] != b.Data[i] {
			t.Fatalf("preprocessed voxel %d: %v from the folder, %v from the NIfTI", i, a.Data[i], b.Data[i])
		}
	}

	plan := func(in string) string {
		r := mustRun(t, "segment", "--input", in, "--dry-run", "--spacing", "3", "--device", "cpu")
		return strings.SplitN(r.stdout, "\n", 2)[1] // all but the input's name
	}
	if p, q := plan(dir), plan(nii); p != q {
		t.Fatalf("dry-run of the folder:\n%s\nof the NIfTI:\n%s", p, q)
	}

	out := filepath.Join(d, "labels.nii.gz")
	r := mustRun(t, "segment", "--input", dir, "--output", out, "--weights", smallModel(t), "--spacing", "3", "--roi", "32", "--verbose")
	if !strings.Contains(r.stderr, `"CT Body 3.0": 512x512x20 voxels`) {
		t.Errorf("--verbose does not describe the series: %q", r.stderr)
	}
	lab, h, err := volume.ReadLabels(out)
	if err != nil {
		t.Fatal(err)
	}
	if h.Dims != v.Dims || h.Affine != v.Affine || h.SformCode != 1 {
		t.Fatalf("label map grid %v %v (sform code %d), the series' %v %v", h.Dims, h.Affine, h.SformCode, v.Dims, v.Affine)
	}
	if len(lab) != v.NumVoxels() {
		t.Fatalf("%d labels for %d voxels", len(lab), v.NumVoxels())
	}
}

// TestBadDICOMFolder: a folder that is not one readable CT series ends in one error line and
// leaves no output.
func TestBadDICOMFolder(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(exampleDICOM(t), "*"))
	if err != nil || len(files) < 3 {
		t.Fatalf("series files: %v %v", files, err)
	}
	copyTo := func(dir string, n int, edit func(i int, b []byte) []byte) {
		for i, f := range files[:n] {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), edit(i, b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	keep := func(i int, b []byte) []byte { return b }
	cases := []struct {
		name string
		fill func(dir string)
		want string
	}{
		{"empty folder", func(string) {}, "no files"},
		{"no DICOM", func(dir string) { os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello"), 0o644) }, "no DICOM images"},
		{"one slice", func(dir string) { copyTo(dir, 1, keep) }, "at least 2 slices"},
		{"missing slice", func(dir string) {
			copyTo(dir, 5, keep)
			os.Remove(filepath.Join(dir, filepath.Base(files[2])))
		}, "missing slice"},
		{"truncated pixel data", func(dir string) {
			copyTo(dir, 3, func(i int, b []byte) []byte {
				if i == 1 {
					return b[:len(b)-5000]
				}
				return b
			})
		}, "truncated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, out := t.TempDir(), t.TempDir()
			c.fill(in)
			r := ctseg(t, "segment", "--input", in, "--output", filepath.Join(out, "l.nii.gz"), "--weights", smallModel(t), "--device", "cpu")
			checkOneLineError(t, r, "segment")
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("error %q does not mention %q", strings.TrimSpace(r.stderr), c.want)
			}
			if left := dirEntries(t, out); len(left) > 0 {
				t.Errorf("output folder holds %v after a failure", left)
			}
		})
	}
	r := ctseg(t, "segment", "--input", exampleCT(t), "--series", "1.2.3", "--output", filepath.Join(t.TempDir(), "l.nii.gz"))
	checkOneLineError(t, r, "segment")
}

// TestDICOMNotesAndSingleFile: what the reading of a series has to say (here, slices ordered
// by position for want of instance numbers) comes after a successful command, never before
// an error, which stays one line; a single DICOM file given as the CT asks for its folder.
func TestDICOMNotesAndSingleFile(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(exampleDICOM(t), "*"))
	if err != nil || len(files) < 3 {
		t.Fatalf("series files: %v %v", files, err)
	}
	dir := t.TempDir()
	tag := []byte{0x20, 0x00, 0x13, 0x00, 'I', 'S'} // InstanceNumber, explicit VR
	for _, f := range files[:3] {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, tag)
		if i < 0 {
			t.Fatalf("%s: no InstanceNumber", f)
		}
		n := int(b[i+6]) | int(b[i+7])<<8
		copy(b[i+8:i+8+n], bytes.Repeat([]byte(" "), n)) // blank it
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := mustRun(t, "segment", "--input", dir, "--dry-run", "--spacing", "3", "--device", "cpu")
	if !strings.Contains(r.stderr, "note: instance numbers missing or repeated; slices ordered by position") {
		t.Errorf("no note after the dry-run: %q", r.stderr)
	}
	r = ctseg(t, "segment", "--input", dir, "--dry-run", "--weights", filepath.Join(dir, "missing.pt"))
	checkOneLineError(t, r, "segment")

	r = ctseg(t, "segment", "--input", files[0], "--output", filepath.Join(t.TempDir(), "l.nii.gz"), "--weights", smallModel(t), "--device", "cpu")
	checkOneLineError(t, r, "segment")
	if !strings.Contains(r.stderr, "is a single DICOM image: give the folder that holds the whole series") {
		t.Errorf("a single DICOM file: %q", r.stderr)
	}
}
