// Package cohorttest writes small cohorts of the shared CTs for the tests of ctseg batch and of
// the job files in deploy/: crops of example_ct_sm (NIfTI), the DICOM series, a broken file.
package cohorttest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ctseg/internal/shared"
	"ctseg/volume"
)

// Case is a row of a test manifest. Input is "crop:X0,Y0" (a 48x48 crop of example_ct_sm from
// voxel X0,Y0, all 30 slices, as ct/ID.nii.gz), "cropnii:X0,Y0" (the same as ct/ID.nii),
// "dicom" (the shared DICOM series, by its absolute path) or "bad" (a truncated ct/ID.nii.gz).
type Case struct{ ID, Input, Age, Site string }

// CropSize is the side of the crops: at 3 mm with 32³ windows, 4 windows each.
const CropSize = 48

// Write writes the CTs and a manifest (case_id,input,age,site) of cases in dir/cohort, inputs
// under ct/ relative to the manifest, and returns the manifest's path.
func Write(t testing.TB, dir string, cases []Case) string {
	t.Helper()
	cdir := filepath.Join(dir, "cohort")
	if err := os.MkdirAll(filepath.Join(cdir, "ct"), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("case_id,input,age,site\n")
	for _, c := range cases {
		in := c.Input
		switch {
		case in == "dicom":
			in = shared.Path(t, "data", "ct", "example_ct_dicom")
		case in == "bad":
			in = "ct/" + c.ID + ".nii.gz"
			whole, err := os.ReadFile(ExampleCT(t))
			if err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(cdir, in), whole[:len(whole)/3])
		default:
			var kind string
			var x0, y0 int
			if _, err := fmt.Sscanf(strings.Replace(in, ":", " ", 1), "%s %d,%d", &kind, &x0, &y0); err != nil {
				t.Fatalf("case %s: input %q: %v", c.ID, in, err)
			}
			in = "ct/" + c.ID + ".nii.gz"
			if kind == "cropnii" {
				in = "ct/" + c.ID + ".nii"
			}
			Crop(t, filepath.Join(cdir, in), x0, y0, CropSize, CropSize)
		}
		fmt.Fprintf(&b, "%s,%s,%s,\"%s\"\n", c.ID, in, c.Age, c.Site)
	}
	path := filepath.Join(cdir, "manifest.csv")
	write(t, path, []byte(b.String()))
	return path
}

// ExampleCT is example_ct_sm.nii.gz (122x101x30 at 3 mm).
func ExampleCT(t testing.TB) string { return shared.Path(t, "data", "ct", "example_ct_sm.nii.gz") }

// Crop writes the part of example_ct_sm from voxel (x0, y0, 0), nx by ny by all its slices,
// with the affine that keeps it where it was in space.
func Crop(t testing.TB, path string, x0, y0, nx, ny int) {
	t.Helper()
	v, _, err := volume.ReadNIfTI(ExampleCT(t))
	if err != nil {
		t.Fatal(err)
	}
	if x0 < 0 || y0 < 0 || x0+nx > v.Dims[0] || y0+ny > v.Dims[1] {
		t.Fatalf("crop %d,%d of %dx%d is outside %v", x0, y0, nx, ny, v.Dims)
	}
	nz := v.Dims[2]
	c := &volume.Volume{Dims: [3]int{nx, ny, nz}, Affine: v.Affine, Data: make([]float32, nx*ny*nz)}
	for z := 0; z < nz; z++ {
		for y := 0; y < ny; y++ {
			for x := 0; x < nx; x++ {
				c.Data[x+nx*(y+ny*z)] = v.Data[v.Index(x0+x, y0+y, z)]
			}
		}
	}
	for r := 0; r < 3; r++ {
		c.Affine[r][3] += v.Affine[r][0]*float64(x0) + v.Affine[r][1]*float64(y0)
	}
	if err := volume.WriteNIfTI(path, c, volume.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
