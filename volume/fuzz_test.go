package volume

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math"
	"os"
	"testing"

	"ctseg/internal/shared"
)

// fuzzMaxVoxels keeps the fuzzer's allocations small: a header may claim at most 1M voxels
// (4 MiB of float32) however its bytes are mutated.
const fuzzMaxVoxels = 1 << 20

// exampleHeaderSeeds returns the real header of example_ct_sm (NIfTI-1, int16, sform code 2)
// twice: as it is, with its data cut off (the truncation path), and with the dims patched to
// 4x3x2 and that many voxels appended, so its genuine sform and scaling reach a success.
func exampleHeaderSeeds(f *testing.F) [][]byte {
	raw, err := os.ReadFile(shared.Path(f, "data", "ct", "example_ct_sm.nii.gz"))
	if err != nil {
		f.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		f.Fatal(err)
	}
	hdr := make([]byte, 352)
	if _, err := io.ReadFull(zr, hdr); err != nil {
		f.Fatal(err)
	}
	small := append([]byte(nil), hdr...)
	for i, d := range []int16{3, 4, 3, 2} {
		binary.LittleEndian.PutUint16(small[40+2*i:], uint16(d))
	}
	for i := 0; i < 4*3*2; i++ {
		small = binary.LittleEndian.AppendUint16(small, uint16(int16(i*37-400)))
	}
	return [][]byte{hdr, small}
}

// niftiSeeds are small valid files covering both versions, both byte orders, the three
// affine sources, scaling, extensions, a 4-D single volume, and their gzip variants.
func niftiSeeds(t testing.TB) [][]byte {
	le, be := binary.LittleEndian, binary.BigEndian
	var out [][]byte
	add := func(r *rawNii) {
		b := r.bytes(t)
		out = append(out, b, gz(t, b))
	}
	add(newRawNii([3]int{2, 2, 2}, dtUint8, []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	r := newRawNii([3]int{3, 2, 2}, dtInt16, encode(t, le, []int16{-1024, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3000}))
	r.slope, r.inter = 2, -1024
	add(r)
	r = newRawNii([3]int{2, 2, 2}, dtFloat32, encode(t, be, []float32{0.5, -1, 2, 3, 4, 5, 6, 7}))
	r.bo, r.v2 = be, true
	add(r)
	r = newRawNii([3]int{2, 3, 1}, dtFloat64, encode(t, le, []float64{1, 2, 3, 4, 5, 6}))
	r.sform, r.qform = 0, 1
	r.quat, r.qoff = [3]float64{0, 0, 0.3}, [3]float64{-10, 5, 2}
	r.pixdim = [8]float64{-1, 0.8, 0.8, 2.5, 1, 1, 1, 1}
	add(r)
	r = newRawNii([3]int{2, 2, 1}, dtUint16, encode(t, le, []uint16{1, 2, 3, 65535}))
	r.sform, r.qform = 0, 0
	r.pixdim = [8]float64{1, 1.5, 1.5, 3, 1, 1, 1, 1}
	r.dim[0], r.dim[4] = 4, 1
	add(r)
	r = newRawNii([3]int{1, 1, 2}, dtInt32, encode(t, le, []int32{7, -7}))
	r.voxOff = 400 // an extension area: extender 0 0 0 0, then padding
	add(r)
	// A real extension (esize 16, ecode 6) between the header and the data.
	b := newRawNii([3]int{1, 1, 1}, dtInt8, []byte{5}).bytes(t)
	ext := []byte{1, 0, 0, 0, 16, 0, 0, 0, 6, 0, 0, 0, 'c', 't', 's', 'e', 'g', 0, 0, 0}
	b = append(append(append([]byte(nil), b[:348]...), ext...), 5)
	binary.LittleEndian.PutUint32(b[108:], math.Float32bits(float32(348+len(ext))))
	out = append(out, b, gz(t, b))
	return out
}

// checkVolume asserts what every accepted file must satisfy.
func checkVolume(t *testing.T, dims [3]int, n int, h *Header, max int64) {
	t.Helper()
	p := int64(1)
	for _, d := range dims {
		if d <= 0 {
			t.Fatalf("accepted non-positive dims %v", dims)
		}
		p *= int64(d)
	}
	if p > max {
		t.Fatalf("accepted %v = %d voxels over the cap %d", dims, p, max)
	}
	if int64(n) != p {
		t.Fatalf("%d values for dims %v", n, dims)
	}
	if h == nil || h.Dims != dims {
		t.Fatalf("header dims %v, volume dims %v", h, dims)
	}
	for i := range h.Affine {
		for j := range h.Affine[i] {
			if math.IsNaN(h.Affine[i][j]) || math.IsInf(h.Affine[i][j], 0) {
				t.Fatalf("accepted a non-finite affine %v", h.Affine)
			}
		}
	}
	if h.Affine[3] != [4]float64{0, 0, 0, 1} {
		t.Fatalf("affine's last row is %v", h.Affine[3])
	}
	if det3(block3(h.Affine)) == 0 {
		t.Fatalf("accepted a singular affine %v", h.Affine)
	}
	if _, err := elemSize(h.Datatype); err != nil {
		t.Fatalf("accepted datatype %d", h.Datatype)
	}
	if hs := map[int]int64{1: nii1HeaderSize, 2: nii2HeaderSize}[h.Version]; hs == 0 || h.VoxOffset < hs {
		t.Fatalf("version %d with vox_offset %d", h.Version, h.VoxOffset)
	}
}

func FuzzParseNIfTI(f *testing.F) {
	for _, s := range exampleHeaderSeeds(f) {
		f.Add(s)
		f.Add(gz(f, s))
	}
	for _, s := range niftiSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opt := ReadOptions{MaxVoxels: fuzzMaxVoxels}
		v, h, err := ParseNIfTIWith(data, opt)
		if err != nil {
			if v != nil || h != nil {
				t.Fatalf("error %v with a result", err)
			}
			if bytes.ContainsRune([]byte(err.Error()), '\n') {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		checkVolume(t, v.Dims, len(v.Data), h, fuzzMaxVoxels)
		if v.Affine != h.Affine {
			t.Fatalf("volume affine %v differs from the header's %v", v.Affine, h.Affine)
		}
		if err := v.check(); err != nil {
			t.Fatalf("accepted volume fails its own check: %v", err)
		}
	})
}

// storedGzip wraps data in a gzip stream of stored (uncompressed) deflate blocks: no
// compressor state to allocate per run, so the fuzzer can afford to gzip every input.
func storedGzip(data []byte) []byte {
	out := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), 0xffff)
		final := byte(0)
		if n == len(data) {
			final = 1
		}
		out = append(out, final)
		out = binary.LittleEndian.AppendUint16(out, uint16(n))
		out = binary.LittleEndian.AppendUint16(out, ^uint16(n))
		out = append(out, data[:n]...)
		data = data[n:]
	}
	return out
}

// FuzzParseNIfTIGzip fuzzes the uncompressed bytes and gzips them inside the target, so
// every mutation reaches the header checks and the gzip size bounds through a valid gzip
// stream (mutating a compressed seed mostly scrambles it). The trailer (CRC, size) is fuzzed
// too: it is taken from the input's last byte as a choice of correct, wrong or missing.
func FuzzParseNIfTIGzip(f *testing.F) {
	for _, s := range exampleHeaderSeeds(f) {
		f.Add(s, uint8(0))
	}
	for i, s := range niftiSeeds(f) {
		if i%2 == 0 { // the uncompressed ones
			f.Add(s, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, trailer uint8) {
		z := storedGzip(data)
		crc, size := crc32.ChecksumIEEE(data), uint32(len(data))
		switch trailer % 4 {
		case 1:
			crc++
		case 2:
			size++
		}
		if trailer%4 != 3 {
			z = binary.LittleEndian.AppendUint32(z, crc)
			z = binary.LittleEndian.AppendUint32(z, size)
		}
		v, h, err := ParseNIfTIWith(z, ReadOptions{MaxVoxels: fuzzMaxVoxels})
		if err != nil {
			if bytes.ContainsRune([]byte(err.Error()), '\n') {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if trailer%4 != 0 {
			t.Fatalf("accepted a gzip stream with a bad trailer (%d)", trailer%4)
		}
		checkVolume(t, v.Dims, len(v.Data), h, fuzzMaxVoxels)
		// The same bytes uncompressed must give the same volume.
		v2, _, err := ParseNIfTIWith(data, ReadOptions{MaxVoxels: fuzzMaxVoxels})
		if err != nil {
			t.Fatalf("accepted gzipped but not plain: %v", err)
		}
		if v2.Dims != v.Dims || v2.Affine != v.Affine || len(v2.Data) != len(v.Data) {
			t.Fatalf("gzip and plain differ")
		}
		for i := range v.Data {
			if math.Float32bits(v.Data[i]) != math.Float32bits(v2.Data[i]) {
				t.Fatalf("voxel %d: gzip %v, plain %v", i, v.Data[i], v2.Data[i])
			}
		}
	})
}

// FuzzParseLabels runs the label reader (ParseLabels has the default 1024^3 cap, but the
// size check against the input bounds what a small fuzz input can make it allocate).
func FuzzParseLabels(f *testing.F) {
	for _, s := range niftiSeeds(f) {
		f.Add(s)
	}
	var lab bytes.Buffer
	if err := EncodeLabels(&lab, false, [3]int{3, 2, 2}, obliqueAffine(), []uint8{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 104},
		LabelOptions{Names: []string{"background", "a", "b"}}); err != nil {
		f.Fatal(err)
	}
	f.Add(lab.Bytes())
	f.Add(gz(f, lab.Bytes()))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, h, err := ParseLabels(data)
		if err != nil {
			if l != nil || h != nil {
				t.Fatalf("error %v with a result", err)
			}
			if bytes.ContainsRune([]byte(err.Error()), '\n') {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		checkVolume(t, h.Dims, len(l), h, DefaultMaxVoxels)
		_ = LabelNames(h) // must not panic on any accepted header's extensions
	})
}

// hugeVoxelSeed is a valid 4x4x4 file whose sform claims 10 m voxels. The reader accepts it,
// and Preprocess used to plan (and allocate) a 10001^3 grid at 3 mm from its 64 voxels, until
// planSpacing capped the resampled grid. Kept as a regression seed.
func hugeVoxelSeed(t testing.TB) []byte {
	r := newRawNii([3]int{2, 2, 2}, dtUint8, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	r.dim[1], r.dim[2], r.dim[3] = 4, 4, 4
	r.data = make([]byte, 64)
	r.srow = [3][4]float64{{-1e4, 0, 0, 0}, {0, 1e4, 0, 0}, {0, 0, 1e4, 0}}
	return r.bytes(t)
}

// FuzzPlanPreprocess goes one step past the reader: whatever header it accepts, planning the
// bundle's preprocessing (reorientation, resampling to 1.5 and 3 mm) and its inversion must
// fail cleanly or describe a grid within the voxel cap, without panicking. Nothing is
// resampled, so this stays cheap.
func FuzzPlanPreprocess(f *testing.F) {
	for _, s := range exampleHeaderSeeds(f) {
		f.Add(s)
	}
	for i, s := range niftiSeeds(f) {
		if i%2 == 0 {
			f.Add(s)
		}
	}
	f.Add(hugeVoxelSeed(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, h, err := ParseNIfTIWith(data, ReadOptions{MaxVoxels: fuzzMaxVoxels})
		if err != nil {
			return
		}
		for _, sp := range []float64{1.5, 3} {
			inv, err := InversionFor(h, sp)
			if err != nil {
				if bytes.ContainsRune([]byte(err.Error()), '\n') {
					t.Fatalf("multi-line error %q", err)
				}
				continue
			}
			pd := inv.PreprocessedDims()
			if _, err := voxelCount(pd, DefaultMaxVoxels); err != nil {
				t.Fatalf("%v grid at %v mm accepted: %v", pd, sp, err)
			}
			if inv.OrigDims() != h.Dims || inv.OrigAffine() != h.Affine {
				t.Fatalf("inversion maps back to %v %v, not the input's %v %v", inv.OrigDims(), inv.OrigAffine(), h.Dims, h.Affine)
			}
			if err := checkAffine(inv.PreprocessedAffine()); err != nil {
				t.Fatalf("preprocessed affine: %v", err)
			}
		}
	})
}
