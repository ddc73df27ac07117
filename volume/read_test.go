package volume

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ctseg/internal/shared"
)

func TestReadDatatypes(t *testing.T) {
	cases := []struct {
		name string
		dt   int
		vals any
		want []float32
	}{
		{"uint8", dtUint8, []uint8{0, 1, 127, 128, 200, 255, 3, 4}, []float32{0, 1, 127, 128, 200, 255, 3, 4}},
		{"int8", dtInt8, []int8{-128, -1, 0, 1, 127, 5, 6, 7}, []float32{-128, -1, 0, 1, 127, 5, 6, 7}},
		{"int16", dtInt16, []int16{-32768, -1024, 0, 1, 32767, 5, 6, 7}, []float32{-32768, -1024, 0, 1, 32767, 5, 6, 7}},
		{"uint16", dtUint16, []uint16{0, 65535, 1, 2, 3, 4, 5, 6}, []float32{0, 65535, 1, 2, 3, 4, 5, 6}},
		{"int32", dtInt32, []int32{math.MinInt32, 16777217, -3382, 0, 1, 2, 3, math.MaxInt32},
			[]float32{math.MinInt32, 16777216, -3382, 0, 1, 2, 3, 2147483648}},
		{"uint32", dtUint32, []uint32{math.MaxUint32, 16777217, 0, 1, 2, 3, 4, 5},
			[]float32{4294967296, 16777216, 0, 1, 2, 3, 4, 5}},
		{"int64", dtInt64, []int64{math.MinInt64, 1<<62 + 1, -1, 0, 1, 2, 3, 4},
			[]float32{-9223372036854775808, 4611686018427387904, -1, 0, 1, 2, 3, 4}},
		{"uint64", dtUint64, []uint64{math.MaxUint64, 1 << 40, 0, 1, 2, 3, 4, 5},
			[]float32{18446744073709551616, 1099511627776, 0, 1, 2, 3, 4, 5}},
		{"float32", dtFloat32, []float32{1.5, -2.25, 0, float32(math.Inf(1)), 1e-40, 3, 4, 5},
			[]float32{1.5, -2.25, 0, float32(math.Inf(1)), 1e-40, 3, 4, 5}},
		{"float64", dtFloat64, []float64{math.Pi, -1e-50, 1e300, 0.1, 0, 1, 2, 3},
			[]float32{float32(math.Pi), float32(-1e-50), float32(math.Inf(1)), 0.1, 0, 1, 2, 3}},
	}
	for _, c := range cases {
		for _, v2 := range []bool{false, true} {
			for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
				r := newRawNii([3]int{2, 2, 2}, c.dt, encode(t, bo, c.vals))
				r.v2, r.bo = v2, bo
				v, h, err := ParseNIfTI(r.bytes(t))
				if err != nil {
					t.Fatalf("%s v2=%v %v: %v", c.name, v2, bo, err)
				}
				if h.Datatype != c.dt || h.ByteOrder != bo || (h.Version == 2) != v2 {
					t.Errorf("%s: header %+v", c.name, h)
				}
				for i, w := range c.want {
					if v.Data[i] != w && !(math.IsNaN(float64(w)) && math.IsNaN(float64(v.Data[i]))) {
						t.Errorf("%s v2=%v %v: voxel %d = %v, want %v", c.name, v2, bo, i, v.Data[i], w)
					}
				}
			}
		}
	}
}

// TestReadScaling checks scl_slope/scl_inter, in the float type nibabel computes in.
func TestReadScaling(t *testing.T) {
	raw16 := []int16{-1000, 0, 1, 2, 3000, 1234, -5, 7}
	r := newRawNii([3]int{2, 2, 2}, dtInt16, encode(t, binary.LittleEndian, raw16))
	r.slope, r.inter = 2, -1024
	v, _, err := ParseNIfTI(r.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range raw16 {
		if want := float32(x)*2 - 1024; v.Data[i] != want {
			t.Errorf("int16 slope 2 inter -1024: voxel %d = %v, want %v", i, v.Data[i], want)
		}
	}
	// A float32-only rounding case: 16777215*3 is not representable in float32; nibabel
	// computes uint16*float32 in float32, so the product rounds before the intercept is added.
	r = newRawNii([3]int{2, 2, 2}, dtUint16, encode(t, binary.LittleEndian, []uint16{65535, 1, 2, 3, 4, 5, 6, 7}))
	r.slope, r.inter = 0.1, 0.3
	v, _, err = ParseNIfTI(r.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := float32(float32(65535)*float32(0.1)) + float32(0.3); v.Data[0] != want {
		t.Errorf("uint16 scaled in float32: %v, want %v", v.Data[0], want)
	}
	// int32 promotes to float64 with a float32 slope.
	r = newRawNii([3]int{2, 2, 2}, dtInt32, encode(t, binary.LittleEndian, []int32{123456789, 1, 2, 3, 4, 5, 6, 7}))
	r.slope, r.inter = 0.1, 0.3
	v, _, err = ParseNIfTI(r.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := float32(123456789*float64(float32(0.1)) + float64(float32(0.3))); v.Data[0] != want {
		t.Errorf("int32 scaled in float64: %v, want %v", v.Data[0], want)
	}
	// Slope 0 means no scaling, whatever the intercept.
	r = newRawNii([3]int{2, 2, 2}, dtInt16, encode(t, binary.LittleEndian, raw16))
	r.slope, r.inter = 0, 100
	v, h, err := ParseNIfTI(r.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	if v.Data[0] != -1000 || h.SclSlope != 0 {
		t.Errorf("slope 0: voxel 0 = %v", v.Data[0])
	}
	// NIfTI-2 scale factors are float64.
	r = newRawNii([3]int{2, 2, 2}, dtInt16, encode(t, binary.LittleEndian, raw16))
	r.v2, r.slope, r.inter = true, 0.1, 0.3
	v, _, err = ParseNIfTI(r.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := float32(3000*0.1 + 0.3); v.Data[4] != want {
		t.Errorf("NIfTI-2 scaling: %v, want %v", v.Data[4], want)
	}
}

func TestRead4DSingleVolume(t *testing.T) {
	r := newRawNii([3]int{2, 2, 2}, dtUint8, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	r.dim[0], r.dim[4] = 4, 1
	v, _, err := ParseNIfTI(r.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	if v.Dims != [3]int{2, 2, 2} || v.Data[7] != 8 {
		t.Errorf("4-D with dim4=1: %v %v", v.Dims, v.Data)
	}
}

// TestReadRefusals: every malformed input is refused with a one-line error, nothing panics.
func TestReadRefusals(t *testing.T) {
	ok := func() *rawNii { return newRawNii([3]int{2, 2, 2}, dtInt16, make([]byte, 16)) }
	cases := []struct {
		name string
		data func() []byte
		want string
	}{
		{"5-D", func() []byte { r := ok(); r.dim[0] = 5; return r.bytes(t) }, "5-D"},
		{"4-D two volumes", func() []byte { r := ok(); r.dim[0], r.dim[4] = 4, 2; r.data = make([]byte, 32); return r.bytes(t) }, "2 volumes"},
		{"2-D", func() []byte { r := ok(); r.dim[0] = 2; return r.bytes(t) }, "only 3-D"},
		{"complex", func() []byte { r := ok(); r.datatype = 32; return r.bytes(t) }, "complex64"},
		{"rgb", func() []byte { r := ok(); r.datatype = 128; return r.bytes(t) }, "RGB24"},
		{"bad datatype", func() []byte { r := ok(); r.datatype = 77; return r.bytes(t) }, "unsupported NIfTI datatype 77"},
		{"zero dim", func() []byte { r := ok(); r.dim[2] = 0; return r.bytes(t) }, "must be positive"},
		{"negative dim", func() []byte { r := ok(); r.dim[3] = -4; return r.bytes(t) }, "must be positive"},
		{"truncated data", func() []byte { b := ok().bytes(t); return b[:len(b)-1] }, "truncated"},
		{"truncated header", func() []byte { return ok().bytes(t)[:200] }, "truncated"},
		{"truncated gzip data", func() []byte { b := ok().bytes(t); return gz(t, b[:len(b)-3]) }, "truncated"},
		{"cut gzip stream", func() []byte { b := gz(t, ok().bytes(t)); return b[:len(b)/2] }, "truncated"},
		{"NaN pixdim in qform", func() []byte {
			r := ok()
			r.sform, r.qform, r.pixdim[2] = 0, 1, math.NaN()
			return r.bytes(t)
		}, "pixdim[2]"},
		{"zero pixdim fallback", func() []byte { r := ok(); r.sform, r.qform, r.pixdim[1] = 0, 0, 0; return r.bytes(t) }, "pixdim[1]"},
		{"singular sform", func() []byte { r := ok(); r.srow = [3][4]float64{}; return r.bytes(t) }, "singular"},
		{"NaN sform", func() []byte { r := ok(); r.srow[1][1] = math.NaN(); return r.bytes(t) }, "non-finite"},
		{"bad quaternion", func() []byte { r := ok(); r.sform, r.qform, r.quat = 0, 1, [3]float64{1, 1, 0}; return r.bytes(t) }, "quaternion"},
		{"vox_offset beyond file", func() []byte { r := ok(); r.voxOff = 4096; b := r.bytes(t); return b[:400] }, "truncated"},
		{"vox_offset inside header", func() []byte { r := ok(); r.voxOff = 100; return r.bytes(t) }, "inside"},
		{"invalid scl_inter", func() []byte { r := ok(); r.slope, r.inter = 2, math.Inf(1); return r.bytes(t) }, "scl_inter"},
		{"bad magic", func() []byte { b := ok().bytes(t); copy(b[344:], "xyz\x00"); return b }, "magic"},
		{"pair header", func() []byte { b := ok().bytes(t); copy(b[344:], "ni1\x00"); return b }, "pair"},
		{"not nifti", func() []byte { return []byte("hello, this is not a NIfTI file at all") }, "not a NIfTI"},
		{"empty", func() []byte { return nil }, "truncated"},
		{"gzip bomb: stream keeps expanding", func() []byte {
			b := append(ok().bytes(t), make([]byte, 8<<20)...)
			return gz(t, b)
		}, "gzip bomb"},
		{"gzip bomb: header claims more than gzip can hold", func() []byte {
			r := ok()
			r.dim[1], r.dim[2], r.dim[3] = 1000, 1000, 1000
			return gz(t, r.bytes(t))
		}, "expand to at most"},
	}
	for _, c := range cases {
		_, _, err := ParseNIfTI(c.data())
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q, want one line containing %q", c.name, err, c.want)
		}
	}
	// A NaN pixdim that nothing uses (sform present) is fine.
	r := ok()
	r.pixdim[2] = math.NaN()
	if _, _, err := ParseNIfTI(r.bytes(t)); err != nil {
		t.Errorf("unused NaN pixdim refused: %v", err)
	}
	// The voxel cap is checked before allocation.
	r = newRawNii([3]int{8, 8, 8}, dtUint8, make([]byte, 512))
	if _, _, err := ParseNIfTIWith(r.bytes(t), ReadOptions{MaxVoxels: 100}); err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("voxel cap: %v", err)
	}
	// Files on disk: the size check uses the file size, and errors name the file.
	dir := t.TempDir()
	p := filepath.Join(dir, "short.nii")
	b := ok().bytes(t)
	if err := os.WriteFile(p, b[:len(b)-2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadNIfTI(p); err == nil || !strings.Contains(err.Error(), "short.nii") || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("short file: %v", err)
	}
	if _, _, err := ReadNIfTI(filepath.Join(dir, "missing.nii")); err == nil {
		t.Errorf("missing file accepted")
	}
}

// TestAffineChoice checks nibabel's rule: sform if sform_code != 0, else qform, else the
// pixdim fallback (x flipped, origin at the centre).
func TestAffineChoice(t *testing.T) {
	th := 10 * math.Pi / 180
	// Quaternion of a rotation by th about z.
	r := newRawNii([3]int{10, 20, 30}, dtUint8, make([]byte, 6000))
	r.sform, r.qform = 0, 1
	r.quat = [3]float64{0, 0, math.Sin(th / 2)}
	r.qoff = [3]float64{-10, 20, 30.5}
	r.pixdim = [8]float64{-1, 1, 1.2, -3, 1, 1, 1, 1} // qfac -1; a negative pixdim is made positive
	_, h, err := ParseNIfTI(r.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	c, s := math.Cos(th), math.Sin(th)
	want := [4][4]float64{{c * 1, -s * 1.2, 0, -10}, {s, c * 1.2, 0, 20}, {0, 0, -3, 30.5}, {0, 0, 0, 1}}
	if h.AffineSource != "qform" || affineDiff(h.Affine, want) > 1e-6 {
		t.Errorf("qform affine %v (%s), want %v", h.Affine, h.AffineSource, want)
	}
	r.qform = 0
	_, h, err = ParseNIfTI(r.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	want = [4][4]float64{{-1, 0, 0, 4.5}, {0, 1.2, 0, -11.4}, {0, 0, 3, -43.5}, {0, 0, 0, 1}}
	if h.AffineSource != "pixdim" || affineDiff(h.Affine, want) > 1e-6 {
		t.Errorf("fallback affine %v (%s), want %v", h.Affine, h.AffineSource, want)
	}
	r.sform = -1 // nibabel tests != 0, not > 0
	r.srow = [3][4]float64{{2, 0, 0, 1}, {0, 2, 0, 2}, {0, 0, 2, 3}}
	_, h, err = ParseNIfTI(r.bytes(t))
	if err != nil {
		t.Fatal(err)
	}
	if h.AffineSource != "sform" || h.Affine[0][0] != 2 {
		t.Errorf("sform_code -1: %s %v", h.AffineSource, h.Affine)
	}
}

func TestParseMatchesRead(t *testing.T) {
	p := shared.Path(t, "data", "ct", "example_ct_sm.nii.gz")
	a, ha, err := ReadNIfTI(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	c, hc, err := ParseNIfTI(b)
	if err != nil {
		t.Fatal(err)
	}
	if a.Dims != c.Dims || a.Affine != c.Affine || !equalF32(a.Data, c.Data) || ha.Datatype != hc.Datatype {
		t.Errorf("ParseNIfTI differs from ReadNIfTI")
	}
	if a.Dims != [3]int{122, 101, 30} || ha.Datatype != dtInt16 {
		t.Errorf("example_ct_sm: %v datatype %d", a.Dims, ha.Datatype)
	}
	h, err := ReadHeader(p)
	if err != nil || h.Dims != a.Dims || h.Affine != a.Affine {
		t.Errorf("ReadHeader: %v %v", h, err)
	}
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

var _ = bytes.NewReader
