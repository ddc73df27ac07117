package volume

import (
	"bytes"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"ctseg/internal/shared"
)

func loadCTsm(t *testing.T) *Volume {
	t.Helper()
	v, _, err := ReadNIfTI(shared.Path(t, "data", "ct", "example_ct_sm.nii.gz"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// storeLPS and storePIR re-store a RAS volume in another axis order with an affine that keeps
// every voxel's world position (written independently of the package's orientation code).
func storeLPS(h *Volume) *Volume {
	X, Y, Z := h.Dims[0], h.Dims[1], h.Dims[2]
	e := &Volume{Dims: [3]int{X, Y, Z}, Data: make([]float32, len(h.Data))}
	for c := 0; c < Z; c++ {
		for b := 0; b < Y; b++ {
			for a := 0; a < X; a++ {
				e.Data[a+X*(b+Y*c)] = h.Data[h.Index(X-1-a, Y-1-b, c)]
			}
		}
	}
	A := h.Affine
	e.Affine = A
	for i := 0; i < 3; i++ {
		e.Affine[i][0], e.Affine[i][1] = -A[i][0], -A[i][1]
		e.Affine[i][3] = A[i][3] + A[i][0]*float64(X-1) + A[i][1]*float64(Y-1)
	}
	return e
}

func storePIR(h *Volume) *Volume {
	X, Y, Z := h.Dims[0], h.Dims[1], h.Dims[2]
	e := &Volume{Dims: [3]int{Y, Z, X}, Data: make([]float32, len(h.Data))}
	for c := 0; c < X; c++ {
		for b := 0; b < Z; b++ {
			for a := 0; a < Y; a++ {
				e.Data[a+Y*(b+Z*c)] = h.Data[h.Index(c, Y-1-a, Z-1-b)]
			}
		}
	}
	A := h.Affine
	e.Affine = A
	for i := 0; i < 3; i++ {
		e.Affine[i][0], e.Affine[i][1], e.Affine[i][2] = -A[i][1], -A[i][2], A[i][0]
		e.Affine[i][3] = A[i][3] + A[i][1]*float64(Y-1) + A[i][2]*float64(Z-1)
	}
	return e
}

// TestPermutedOrientationSameResult: the same world grid stored as LPS or PIR must give the
// same preprocessed volume as the RAS original, and the inversion must land on the same world
// voxels.
func TestPermutedOrientationSameResult(t *testing.T) {
	h := loadCTsm(t)
	dir := t.TempDir()
	for _, p := range []float64{3.0, 1.5} {
		ref, refInv, err := Preprocess(h, p)
		if err != nil {
			t.Fatal(err)
		}
		// A label map on the preprocessed grid with structure on every axis.
		lab := make([]uint8, len(ref.Data))
		for i, x := range ref.Data {
			lab[i] = uint8(int((x+1)*52)%100) ^ uint8(i%7)
		}
		refLab, err := refInv.Invert(lab)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			codes string
			v     *Volume
			back  func(i [3]int) [3]int // stored index -> RAS index
		}{
			{"LPS", storeLPS(h), func(i [3]int) [3]int { return [3]int{h.Dims[0] - 1 - i[0], h.Dims[1] - 1 - i[1], i[2]} }},
			{"PIR", storePIR(h), func(i [3]int) [3]int { return [3]int{i[2], h.Dims[1] - 1 - i[0], h.Dims[2] - 1 - i[1]} }},
		} {
			// Through a NIfTI-2 file so the float64 affine survives exactly.
			path := filepath.Join(dir, c.codes+".nii.gz")
			if err := WriteNIfTI(path, c.v, WriteOptions{NIfTI2: true, GzipLevel: 1}); err != nil {
				t.Fatal(err)
			}
			v, hdr, err := ReadNIfTI(path)
			if err != nil {
				t.Fatal(err)
			}
			ov, o, err := Orient(v)
			if err != nil {
				t.Fatal(err)
			}
			if o.Codes() != c.codes || ov.Dims != h.Dims || ov.Affine != h.Affine || !equalF32(ov.Data, h.Data) {
				t.Fatalf("%s: Orient gives %s %v %v", c.codes, o.Codes(), ov.Dims, ov.Affine)
			}
			back, err := o.Undo(ov.Data)
			if err != nil || !equalF32(back, v.Data) {
				t.Errorf("%s: Undo does not restore the stored order", c.codes)
			}
			pre, inv, err := Preprocess(v, p)
			if err != nil {
				t.Fatal(err)
			}
			if pre.Dims != ref.Dims || pre.Affine != ref.Affine || !equalF32(pre.Data, ref.Data) {
				t.Errorf("%s at %v mm: preprocessed differs from the RAS original", c.codes, p)
			}
			got, err := inv.Invert(lab)
			if err != nil {
				t.Fatal(err)
			}
			inv2, err := InversionFor(hdr, p)
			if err != nil {
				t.Fatal(err)
			}
			if got2, _ := inv2.Invert(lab); string(got2) != string(got) {
				t.Errorf("%s: InversionFor differs", c.codes)
			}
			d := v.Dims
			bad := 0
			for z := 0; z < d[2]; z++ {
				for y := 0; y < d[1]; y++ {
					for x := 0; x < d[0]; x++ {
						r := c.back([3]int{x, y, z})
						if got[x+d[0]*(y+d[1]*z)] != refLab[h.Index(r[0], r[1], r[2])] {
							bad++
						}
					}
				}
			}
			if bad != 0 {
				t.Errorf("%s at %v mm: %d inverted labels differ from the RAS inversion", c.codes, p, bad)
			}
		}
	}
}

// TestPreprocessKeepsInput: the no-op Spacingd path must copy, not normalise the caller's data.
func TestPreprocessKeepsInput(t *testing.T) {
	h := loadCTsm(t)
	before := append([]float32(nil), h.Data...)
	pre, inv, err := Preprocess(h, 3.0)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Spacing.Resampled || !equalF32(h.Data, before) || pre.Dims != h.Dims {
		t.Errorf("input modified or resampled")
	}
	if _, _, err := Preprocess(h, 0); err == nil {
		t.Errorf("spacing 0 accepted")
	}
	if _, _, err := Preprocess(h, math.NaN()); err == nil {
		t.Errorf("NaN spacing accepted")
	}
	if _, err := inv.Invert(make([]uint8, 10)); err == nil {
		t.Errorf("wrong label count accepted")
	}
	if _, _, err := Preprocess(&Volume{Dims: [3]int{2, 2, 2}, Affine: identity4(), Data: make([]float32, 7)}, 1); err == nil {
		t.Errorf("inconsistent volume accepted")
	}
}

// TestSpacingCentered exercises the centred-origin branch: a sheared affine where no input
// corner has the smallest output offsets.
func TestSpacingCentered(t *testing.T) {
	a := [4][4]float64{{1, 0.01, 0, 5}, {-0.01, 1, 0, 6}, {0.002, 0, 1, 7}, {0, 0, 0, 1}}
	a[0][1], a[1][0] = 0.05, 0.02 // shear: not a rotation
	dims := [3]int{20, 30, 10}
	si, err := planSpacing(dims, a, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !si.Centered || !si.Resampled {
		t.Fatalf("expected the centred branch: %+v", si)
	}
	// origin = B (N/2) + t - A_out (S/2)
	for i := 0; i < 3; i++ {
		var want float64
		for k := 0; k < 3; k++ {
			want += a[i][k]*float64(dims[k])/2 - si.OutAffine[i][k]*float64(si.OutDims[k])/2
		}
		want += a[i][3]
		if math.Abs(si.OutAffine[i][3]-want) > 1e-9 {
			t.Errorf("origin[%d] = %v, want %v", i, si.OutAffine[i][3], want)
		}
	}
	// The output 3x3 is orthogonal with columns of length 2.
	n := colNorms(si.OutAffine)
	for i := range n {
		if math.Abs(n[i]-2) > 1e-12 {
			t.Errorf("column %d norm %v", i, n[i])
		}
	}
}

func TestNormalizeScaleEdgeCases(t *testing.T) {
	v := &Volume{Data: []float32{0, 0, 0}}
	NormalizeScale(v)
	if v.Data[0] != 0 || v.Data[2] != 0 {
		t.Errorf("all zero: %v", v.Data)
	}
	v = &Volume{Data: []float32{5, 5, 0}}
	NormalizeScale(v)
	if v.Data[0] != 0 || v.Data[2] != 0 {
		t.Errorf("constant: %v", v.Data)
	}
	v = &Volume{Data: []float32{-100, 0, 300, 100}}
	st := NormalizeScale(v)
	// mean 100 over non-zero voxels; zero voxel -> 2*(mean - vmin)/(vmax - vmin) - 1 = 0.
	want := []float32{-1, 0, 1, 0}
	for i := range want {
		if math.Abs(float64(v.Data[i]-want[i])) > 1e-7 {
			t.Errorf("voxel %d = %v, want %v (%+v)", i, v.Data[i], want[i], st)
		}
	}
}

func TestLayout(t *testing.T) {
	v := &Volume{Dims: [3]int{4, 3, 2}, Affine: identity4(), Data: make([]float32, 24)}
	for i := range v.Data {
		v.Data[i] = float32(i)
	}
	d := v.ToDHW()
	for x := 0; x < 4; x++ {
		for y := 0; y < 3; y++ {
			for z := 0; z < 2; z++ {
				if d[(x*3+y)*2+z] != v.Data[v.Index(x, y, z)] {
					t.Fatalf("ToDHW wrong at %d,%d,%d", x, y, z)
				}
			}
		}
	}
	l := make([]uint8, 24)
	for i := range l {
		l[i] = uint8(d[i])
	}
	back := LabelsFromDHW(l, v.Dims)
	for i := range back {
		if back[i] != uint8(i) {
			t.Fatalf("LabelsFromDHW wrong at %d", i)
		}
	}
	if LabelsFromDHW(l[:5], v.Dims) != nil {
		t.Errorf("wrong length accepted")
	}
}

func TestLabelStats(t *testing.T) {
	ct := &Volume{Dims: [3]int{2, 2, 2}, Affine: [4][4]float64{{2, 0, 0, 0}, {0, -3, 0, 0}, {0, 0, 5, 0}, {0, 0, 0, 1}},
		Data: []float32{-1000, 40, 60, 100, 0, 0, 300, 500}}
	labels := []uint8{0, 1, 1, 1, 0, 0, 2, 7}
	names := []string{"background", "liver", "spleen", "kidney"}
	st := LabelStats(labels, ct, names)
	if len(st) != 4 { // 1, 2, 3 (empty, named) and 7 (unnamed, present)
		t.Fatalf("stats %+v", st)
	}
	l := st[0]
	if l.Name != "liver" || l.Voxels != 3 || math.Abs(l.VolumeML-0.09) > 1e-12 || math.Abs(l.MeanHU-200.0/3) > 1e-9 ||
		math.Abs(l.StdHU-math.Sqrt((math.Pow(40-200.0/3, 2)+math.Pow(60-200.0/3, 2)+math.Pow(100-200.0/3, 2))/3)) > 1e-9 {
		t.Errorf("liver %+v", l)
	}
	if st[2].Name != "kidney" || st[2].Voxels != 0 || st[2].MeanHU != 0 || st[3].Name != "label_7" || st[3].MeanHU != 500 {
		t.Errorf("stats %+v", st)
	}
	var jb bytes.Buffer
	if err := WriteStatsJSON(&jb, st); err != nil {
		t.Fatal(err)
	}
	var parsed map[string]map[string]float64
	if err := json.Unmarshal(jb.Bytes(), &parsed); err != nil {
		t.Fatalf("JSON: %v\n%s", err, jb.String())
	}
	if parsed["liver"]["volume"] != 0.09 || parsed["liver"]["intensity"] != 66.6667 || parsed["spleen"]["label"] != 2 {
		t.Errorf("JSON %s", jb.String())
	}
	if strings.Index(jb.String(), "liver") > strings.Index(jb.String(), "spleen") {
		t.Errorf("JSON not in label order")
	}
	var cb bytes.Buffer
	if err := WriteStatsCSV(&cb, st); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cb.String(), "label,name,voxels,volume_ml,mean_hu,std_hu\n1,liver,3,0.09,66.6667,") {
		t.Errorf("CSV %s", cb.String())
	}
	if LabelStats(labels[:3], ct, names) != nil {
		t.Errorf("size mismatch accepted")
	}
}

// BorderLabels against a brute-force check of every voxel, on grids with sides of 1, 2 and 5
// voxels (a face row, or a whole grid of faces), each label placed at one voxel.
func TestBorderLabels(t *testing.T) {
	for _, dims := range [][3]int{{5, 4, 3}, {1, 5, 5}, {5, 2, 5}, {5, 5, 1}, {3, 3, 3}} {
		nx, ny, nz := dims[0], dims[1], dims[2]
		n := nx * ny * nz
		lab := make([]uint8, n)
		want := []int{}
		for i := 0; i < n && i < 250; i++ {
			lab[i] = uint8(i + 1)
			x, y, z := i%nx, (i/nx)%ny, i/(nx*ny)
			if x == 0 || y == 0 || z == 0 || x == nx-1 || y == ny-1 || z == nz-1 {
				want = append(want, i+1)
			}
		}
		got := BorderLabels(lab, dims)
		if len(got) != len(want) {
			t.Fatalf("%v: %v, want %v", dims, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%v: %v, want %v", dims, got, want)
			}
		}
	}
	if got := BorderLabels(make([]uint8, 27), [3]int{3, 3, 3}); len(got) != 0 {
		t.Errorf("background only: %v", got)
	}
	if BorderLabels(make([]uint8, 26), [3]int{3, 3, 3}) != nil {
		t.Errorf("size mismatch accepted")
	}
}
