//go:build !js

package cli_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ctseg/internal/dicomtest"
	"ctseg/internal/shared"
	"ctseg/volume"
	"ctseg/volume/dicom"
	"ctseg/weights"
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
	r := mustRun(t, "segment", "--input", dir, "--output", out, "--weights", smallModel(t), "--spacing", "3", "--roi", "32", "--verbose", "--device", "gpu")
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
	checkSegmentation(t, dir, out, lab, h)
}

// checkSegmentation: `segment --dicom-seg` and `dicom-seg` (converting the label map segment
// wrote) give DICOM Segmentations with the same frames, one segment per structure in the label
// map, and bad requests end in one line without output. What a segmentation holds, bit by bit and
// where, and that it is a valid Segmentation IOD, is volume/dicom's test.
func checkSegmentation(t *testing.T, dir, labelFile string, lab []uint8, h *volume.Header) {
	d := t.TempDir()
	seg1, seg2 := filepath.Join(d, "a.dcm"), filepath.Join(d, "b.dcm")
	r := mustRun(t, "segment", "--input", dir, "--dicom-seg", seg1, "--weights", smallModel(t), "--spacing", "3", "--roi", "32", "--device", "gpu")
	present := map[uint8]bool{}
	for _, l := range lab {
		if l != 0 {
			present[l] = true
		}
	}
	want := fmt.Sprintf("(DICOM Segmentation: %d structures, ", len(present))
	if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "note: the series has no Series Instance UID") {
		t.Errorf("segment --dicom-seg says %q, want %q and a note on the anonymised series", r.stderr, want)
	}
	r = mustRun(t, "dicom-seg", "--labels", labelFile, "--reference", dir, "--output", seg2)
	if !strings.Contains(r.stderr, want) {
		t.Errorf("dicom-seg says %q, want %q", r.stderr, want)
	}
	pixels := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if p := dicomtest.PixelData(b); p != nil {
			return p
		}
		t.Fatalf("%s: not a DICOM file ending in its pixel data", path)
		return nil
	}
	if !bytes.Equal(pixels(seg1), pixels(seg2)) {
		t.Error("segment --dicom-seg and dicom-seg wrote different frames")
	}
	empty := filepath.Join(d, "empty.nii.gz")
	if err := volume.WriteLabels(empty, h.Dims, h.Affine, make([]uint8, len(lab)), nil, nil); err != nil {
		t.Fatal(err)
	}

	bad := [][]string{
		// refused before anything runs: no weights are read
		{"segment", "--input", exampleCT(t), "--dicom-seg", filepath.Join(d, "c.dcm"), "--weights", filepath.Join(d, "missing.pt")},
		{"segment", "--input", dir, "--weights", smallModel(t)},
		{"segment", "--input", dir, "--output", filepath.Join(d, "x.nii.gz"), "--dicom-seg", filepath.Join(d, "x.nii.gz"), "--weights", filepath.Join(d, "missing.pt")},
		{"dicom-seg", "--labels", labelFile, "--reference", exampleCT(t), "--output", filepath.Join(d, "c.dcm")},
		{"dicom-seg", "--labels", exampleSeg(t), "--reference", dir, "--output", filepath.Join(d, "c.dcm")},
		{"dicom-seg", "--labels", labelFile, "--reference", dir, "--output", seg2},
		{"dicom-seg", "--labels", empty, "--reference", dir, "--output", filepath.Join(d, "c.dcm")},
	}
	wants := []string{"not a DICOM folder", "--output", "the same file", "give the folder", "it is a map of other classes", "exists", "no structure in the label map"}
	for i, args := range bad {
		r := ctseg(t, args...)
		checkOneLineError(t, r, args[0])
		if !strings.Contains(r.stderr, wants[i]) {
			t.Errorf("ctseg %s: %q does not mention %q", strings.Join(args, " "), r.stderr, wants[i])
		}
	}
	if left := dirEntries(t, d); len(left) != 3 {
		t.Errorf("after the refusals the folder holds %v", left)
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

// TestDICOMSegOfNothing: where the network finds no structure, `segment --dicom-seg` still
// writes the label map (all background) and says why there is no DICOM Segmentation (it needs
// a structure) instead of failing every output.
func TestDICOMSegOfNothing(t *testing.T) {
	sd, err := weights.Load(smallModel(t))
	if err != nil {
		t.Fatal(err)
	}
	bias := sd.Get("conv_final.2.conv.bias")
	if bias == nil {
		t.Fatal("no head bias in the small model")
	}
	bias.Data[0] = 1e4 // background wins everywhere
	d := t.TempDir()
	wpath := filepath.Join(d, "background.safetensors")
	if err := weights.Save(wpath, sd, weights.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	out, seg := filepath.Join(d, "labels.nii.gz"), filepath.Join(d, "seg.dcm")
	r := mustRun(t, "segment", "--input", exampleDICOM(t), "--output", out, "--dicom-seg", seg,
		"--weights", wpath, "--spacing", "3", "--roi", "32", "--device", "cpu")
	if !strings.Contains(r.stderr, "note: no structure was found, so no DICOM Segmentation was written") {
		t.Errorf("no note on the missing segmentation: %q", r.stderr)
	}
	lab, _, err := volume.ReadLabels(out)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range lab {
		if l != 0 {
			t.Fatalf("voxel %d is labelled %d: the test's weights should find nothing", i, l)
		}
	}
	if _, err := os.Stat(seg); !os.IsNotExist(err) {
		t.Errorf("%s exists (%v): a segmentation of nothing was written", seg, err)
	}
}
