package volume

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func obliqueAffine() [4][4]float64 {
	th := 0.3
	c, s := math.Cos(th), math.Sin(th)
	return [4][4]float64{{c * 0.8, 0, s * 2.5, -100.25}, {0, -1.1, 0, 50.5}, {-s * 0.8, 0, c * 2.5, 12}, {0, 0, 0, 1}}
}

func randomVolume(dims [3]int, a [4][4]float64) *Volume {
	rng := rand.New(rand.NewPCG(1, 2))
	v := &Volume{Dims: dims, Affine: a, Data: make([]float32, dims[0]*dims[1]*dims[2])}
	for i := range v.Data {
		v.Data[i] = float32(rng.NormFloat64() * 500)
	}
	return v
}

func TestWriteNIfTIRoundTrip(t *testing.T) {
	dir := t.TempDir()
	v := randomVolume([3]int{7, 5, 4}, obliqueAffine())
	for _, v2 := range []bool{false, true} {
		var first *Volume
		for _, ext := range []string{".nii", ".nii.gz"} {
			p := filepath.Join(dir, "rt"+map[bool]string{false: "1", true: "2"}[v2]+ext)
			if err := WriteNIfTI(p, v, WriteOptions{NIfTI2: v2, Description: "ctseg test"}); err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(p)
			if isGzip(raw) != strings.HasSuffix(ext, ".gz") {
				t.Errorf("%s: gzip = %v", p, isGzip(raw))
			}
			r, h, err := ReadNIfTI(p)
			if err != nil {
				t.Fatal(err)
			}
			if h.Version != map[bool]int{false: 1, true: 2}[v2] || h.SformCode != 1 || h.QformCode != 1 ||
				h.Description != "ctseg test" || h.XYZTUnits != 2 || h.Datatype != dtFloat32 {
				t.Errorf("%s: header %+v", p, h)
			}
			if r.Dims != v.Dims || !equalF32(r.Data, v.Data) {
				t.Errorf("%s: data differ", p)
			}
			tol := 1e-5 // float32 sform in NIfTI-1
			if v2 {
				tol = 0
			}
			if d := affineDiff(r.Affine, v.Affine); d > tol {
				t.Errorf("%s: affine differs by %g", p, d)
			}
			// The qform carries the same (shear-free) affine.
			if d := affineDiff(h.Qform, v.Affine); d > 1e-5 {
				t.Errorf("%s: qform differs by %g: %v", p, d, h.Qform)
			}
			if first == nil {
				first = r
			} else if !equalF32(first.Data, r.Data) || first.Affine != r.Affine {
				t.Errorf(".nii and .nii.gz differ")
			}
		}
	}
}

// TestQformFromAffine covers axis permutations and flips (negative determinant -> qfac -1).
func TestQformFromAffine(t *testing.T) {
	dir := t.TempDir()
	affs := map[string][4][4]float64{
		"LPS": {{-0.7, 0, 0, 10}, {0, -0.7, 0, 20}, {0, 0, 2, 30}, {0, 0, 0, 1}},
		"PIR": {{0, 0, 1.5, 1}, {-2, 0, 0, 2}, {0, -3, 0, 3}, {0, 0, 0, 1}},
		"LAS": {{-1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}},
		"obl": obliqueAffine(),
	}
	for name, a := range affs {
		p := filepath.Join(dir, name+".nii")
		if err := WriteNIfTI(p, randomVolume([3]int{3, 4, 5}, a), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, h, err := ReadNIfTI(p)
		if err != nil {
			t.Fatal(err)
		}
		if d := affineDiff(h.Qform, a); d > 1e-5 {
			t.Errorf("%s: qform %v differs by %g", name, h.Qform, d)
		}
	}
}

func TestWriteLabels(t *testing.T) {
	dir := t.TempDir()
	dims := [3]int{6, 5, 4}
	labels := make([]uint8, 120)
	for i := range labels {
		labels[i] = uint8(i % 5)
	}
	names := []string{"background", "spleen", "kidney_right", "odd ]]> name", "<a & b>"}
	ref := &Header{SformCode: 2, QformCode: 0, XYZTUnits: 10, Description: "from ref"}
	a := obliqueAffine()
	for _, ext := range []string{".nii.gz", ".nii"} {
		p := filepath.Join(dir, "seg"+ext)
		if err := WriteLabels(p, dims, a, labels, names, ref); err != nil {
			t.Fatal(err)
		}
		got, h, err := ReadLabels(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(labels) || h.Datatype != dtUint8 {
			t.Errorf("%s: labels differ", p)
		}
		if h.IntentCode != 1002 || h.SformCode != 2 || h.QformCode != 2 || h.XYZTUnits != 10 || h.Description != "from ref" {
			t.Errorf("%s: header %+v", p, h)
		}
		if d := affineDiff(h.Affine, a); d > 1e-5 {
			t.Errorf("%s: affine differs by %g", p, d)
		}
		if len(h.Extensions) != 1 || h.Extensions[0].Code != 30 || (len(h.Extensions[0].Data)+8)%16 != 0 || strings.ContainsRune(string(h.Extensions[0].Data), 0) {
			t.Errorf("%s: extensions %d", p, len(h.Extensions))
		}
		got2 := LabelNames(h)
		if len(got2) != len(names) {
			t.Fatalf("%s: names %q", p, got2)
		}
		for i := 1; i < len(names); i++ {
			if got2[i] != names[i] {
				t.Errorf("%s: name %d = %q, want %q", p, i, got2[i], names[i])
			}
		}
	}
	// Errors: wrong length, bad extension; an existing file survives a failed write.
	p := filepath.Join(dir, "seg.nii.gz")
	before, _ := os.ReadFile(p)
	if err := WriteLabels(p, dims, a, labels[:10], names, nil); err == nil {
		t.Errorf("short labels accepted")
	}
	if err := WriteLabels(filepath.Join(dir, "seg.img"), dims, a, labels, names, nil); err == nil {
		t.Errorf(".img accepted")
	}
	if after, _ := os.ReadFile(p); string(after) != string(before) {
		t.Errorf("failed write touched the existing file")
	}
	// Without a reference both codes are 1.
	if err := WriteLabels(p, dims, a, labels, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, h, _ := ReadLabels(p); h.SformCode != 1 || h.QformCode != 1 || len(h.Extensions) != 0 {
		t.Errorf("no ref: codes %d/%d", h.SformCode, h.QformCode)
	}
	// ReadLabels refuses non-integer data.
	fp := filepath.Join(dir, "f.nii")
	v := randomVolume(dims, a)
	if err := WriteNIfTI(fp, v, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadLabels(fp); err == nil {
		t.Errorf("float data read as labels")
	}
}

func TestAtomicWriteCleansUp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.nii.gz")
	boom := errors.New("boom")
	err := writeAtomic(p, true, 0, func(w io.Writer) error {
		w.Write(make([]byte, 1000))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("error %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	if err := WriteNIfTI(filepath.Join(dir, "no", "such", "dir.nii"), randomVolume([3]int{2, 2, 2}, obliqueAffine()), WriteOptions{}); err == nil {
		t.Errorf("write into a missing directory succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

func TestWriteColorTable(t *testing.T) {
	dir := t.TempDir()
	names := []string{"background", "spleen", "kidney right", `bad"quote`}
	colors := [][3]uint8{{0, 0, 0}, {157, 108, 162}, {185, 102, 83}, {255, 255, 255}}
	want := map[string][]string{
		"labels.txt":  {"ITK-SnAP Label Description File", `    1   157  108  162        1  1  1    "spleen"`, `"bad'quote"`, `    0     0    0    0        0  0  0    "background"`},
		"labels.ctbl": {"1 spleen 157 108 162 255", "2 kidney_right 185 102 83 255", "0 background 0 0 0 0"},
		"labels.lut":  {"1 0.61569 0.42353 0.63529 spleen", "2 0.72549 0.40000 0.32549 kidney right"},
	}
	for name, lines := range want {
		p := filepath.Join(dir, name)
		if err := WriteColorTable(p, names, colors); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		for _, l := range lines {
			if !strings.Contains(string(b), l) {
				t.Errorf("%s lacks %q:\n%s", name, l, b)
			}
		}
	}
	if err := WriteColorTable(filepath.Join(dir, "x.txt"), names, colors[:2]); err == nil {
		t.Errorf("too few colours accepted")
	}
}

// TestEncodeNIfTIInt16IfExact: a CT of whole HU values goes out as int16 (half the bytes) and
// reads back equal, with its float64 affine exact in NIfTI-2; one fractional or out-of-range
// value keeps float32.
func TestEncodeNIfTIInt16IfExact(t *testing.T) {
	a := obliqueAffine()
	a[0][3] = -100.123456789012 // not a float32
	v := randomVolume([3]int{7, 5, 3}, a)
	for i := range v.Data {
		v.Data[i] = float32(math.Round(float64(v.Data[i])))
	}
	v.Data[0], v.Data[1] = -32768, 32767
	for _, tc := range []struct {
		name  string
		set   float32 // written at voxel 2
		bytes int     // of voxel data
	}{{"whole HU", 12, 2}, {"a fraction", 0.5, 4}, {"beyond int16", 40000, 4}} {
		w := *v
		w.Data = append([]float32(nil), v.Data...)
		w.Data[2] = tc.set
		var b strings.Builder
		if err := EncodeNIfTI(&b, false, &w, WriteOptions{NIfTI2: true, Int16IfExact: true}); err != nil {
			t.Fatal(err)
		}
		if got := b.Len() - 544; got != tc.bytes*len(w.Data) {
			t.Errorf("%s: %d bytes of voxels, want %d", tc.name, got, tc.bytes*len(w.Data))
		}
		r, _, err := ParseNIfTI([]byte(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		if r.Affine != w.Affine {
			t.Errorf("%s: affine %v, want %v", tc.name, r.Affine, w.Affine)
		}
		for i := range w.Data {
			if r.Data[i] != w.Data[i] {
				t.Fatalf("%s: voxel %d is %v, wrote %v", tc.name, i, r.Data[i], w.Data[i])
			}
		}
	}
}

// TestEncodeProbability: bytes with scl_slope 1/255 read back (with the scaling) as the
// probabilities, on the affine given.
func TestEncodeProbability(t *testing.T) {
	a := obliqueAffine()
	p := make([]uint8, 5*4*3)
	for i := range p {
		p[i] = uint8(i * 4)
	}
	var b strings.Builder
	if err := EncodeProbability(&b, true, [3]int{5, 4, 3}, a, p, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	v, h, err := ParseNIfTI([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if h.Datatype != dtUint8 || math.Abs(float64(h.SclSlope)-1.0/255) > 1e-9 {
		t.Errorf("datatype %d, slope %v", h.Datatype, h.SclSlope)
	}
	if affineDiff(v.Affine, a) > 1e-5 {
		t.Errorf("affine %v, want %v", v.Affine, a)
	}
	for i, x := range v.Data {
		if math.Abs(float64(x)-float64(p[i])/255) > 1e-6 {
			t.Fatalf("voxel %d reads %v, want %v", i, x, float64(p[i])/255)
		}
	}
	if err := EncodeProbability(&b, false, [3]int{5, 4, 4}, a, p, WriteOptions{}); err == nil {
		t.Error("a map of the wrong size was written")
	}
}
