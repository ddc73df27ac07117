package dicom

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"ctseg/internal/shared"
)

// obliqueSeries makes n slices of a small signed 12-bit CT with an oblique plane, instance
// numbers running against the slice normal, and a non-trivial rescale.
func obliqueSeries(n int, rng *rand.Rand) []ctSlice {
	a := 0.3
	orient := [6]float64{math.Cos(a), math.Sin(a), 0, 0, 0, -1} // rows along x/y, columns down z
	row, col := orient[:3], orient[3:]
	normal := cross(row, col)
	out := make([]ctSlice, n)
	for k := range out {
		c := ctSlice{uid: "1.2.3", modality: "CT", instance: n - k, orient: orient, spacing: [2]float64{0.8, 0.7},
			rows: 5, cols: 7, bitsStored: 12, signed: true, slope: 0.7, inter: -1000.3}
		for a := 0; a < 3; a++ {
			c.pos[a] = []float64{-100, 20, 300}[a] + float64(k)*2.5*normal[a]
		}
		c.stored = make([]int, c.rows*c.cols)
		for i := range c.stored {
			c.stored[i] = rng.Intn(4096) - 2048
		}
		out[k] = c
	}
	return out
}

// expectedHU is the volume MONAI's rules give: slices in InstanceNumber order, column
// fastest, HU = data.astype(np.float32) * slope + offset, which NumPy computes in float32.
// It also counts the voxels where float64 arithmetic would round differently, so that a test
// can check it tells the two apart.
func expectedHU(sl []ctSlice) (out []float32, differ int) {
	byInstance := make([]ctSlice, len(sl))
	for _, s := range sl {
		byInstance[s.instance-1] = s
	}
	for _, s := range byInstance {
		for _, v := range s.stored {
			f32 := float32(float32(v)*float32(s.slope)) + float32(s.inter)
			if f32 != float32(float64(v)*s.slope+s.inter) {
				differ++
			}
			out = append(out, f32)
		}
	}
	return out, differ
}

func TestNativeAndRLESeries(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	sl := obliqueSeries(6, rng)
	want, differ := expectedHU(sl)
	if differ == 0 {
		t.Fatal("the test series cannot tell float32 from float64 rescaling")
	}
	for _, syntax := range []string{implicitLE, explicitLE, rleLossless} {
		var files [][]byte
		for _, s := range sl {
			files = append(files, s.file(syntax).bytes())
		}
		var calls []int
		s, err := Open(sources(files...), Options{Progress: func(done, total int) { calls = append(calls, done, total) }})
		if err != nil {
			t.Fatalf("%s: %v", syntax, err)
		}
		v, err := s.Volume()
		if fmt.Sprint(calls) != "[1 6 2 6 3 6 4 6 5 6 6 6]" {
			t.Fatalf("%s: progress calls %v", syntax, calls)
		}
		if err != nil {
			t.Fatalf("%s: %v", syntax, err)
		}
		if v.Dims != [3]int{7, 5, 6} {
			t.Fatalf("%s: dims %v", syntax, v.Dims)
		}
		for i := range want {
			if v.Data[i] != want[i] {
				t.Fatalf("%s: voxel %d = %v, want %v", syntax, i, v.Data[i], want[i])
			}
		}
		// Slice 0 of the volume is instance 1, the last written; the step runs back along the normal.
		first := sl[len(sl)-1]
		normal := cross(first.orient[:3], first.orient[3:])
		wantAffine := [4][4]float64{}
		for a := 0; a < 3; a++ {
			sign := 1.0
			if a < 2 {
				sign = -1
			}
			wantAffine[a] = [4]float64{sign * first.orient[a] * 0.7, sign * first.orient[3+a] * 0.8, sign * -2.5 * normal[a], sign * first.pos[a]}
		}
		wantAffine[3][3] = 1
		for r := range wantAffine {
			for c := range wantAffine[r] {
				if math.Abs(v.Affine[r][c]-wantAffine[r][c]) > 1e-9 {
					t.Fatalf("%s: affine row %d %v, want %v", syntax, r, v.Affine[r], wantAffine[r])
				}
			}
		}
		if h := s.Header(); h.Dims != v.Dims || h.Affine != v.Affine || h.SformCode != 1 || h.XYZTUnits != 2 {
			t.Fatalf("%s: header %+v", syntax, h)
		}
	}
}

// TestSkippedSequencesAndFiles: nested undefined-length sequences (explicit SQ and UN, whose
// items are implicit VR) are skipped; files without the DICOM marker or without pixel data
// are named in Skipped, not read as slices.
func TestSkippedSequencesAndFiles(t *testing.T) {
	sl := obliqueSeries(3, rand.New(rand.NewSource(2)))
	var files [][]byte
	for _, c := range sl {
		f := c.file(explicitLE)
		// An undefined-length SQ holding an undefined-length item with a nested UN sequence.
		un := append([]byte("UN"), 0, 0)
		un = binary.LittleEndian.AppendUint32(un, undefinedLen)
		un = appendItem(un, nil)
		un = append(un, delim(0xE0DD)...)
		seq := append([]byte("SQ"), 0, 0)
		seq = binary.LittleEndian.AppendUint32(seq, undefinedLen)
		seq = binary.LittleEndian.AppendUint16(seq, 0xFFFE)
		seq = binary.LittleEndian.AppendUint16(seq, 0xE000)
		seq = binary.LittleEndian.AppendUint32(seq, undefinedLen)
		seq = appendElem(seq, false, testElem{tag: 0x00081155, vr: "UI", val: []byte("1.2.3.4.")})
		seq = binary.LittleEndian.AppendUint16(seq, 0x0009)
		seq = binary.LittleEndian.AppendUint16(seq, 0x1001)
		seq = append(seq, un...)
		seq = append(seq, delim(0xE00D)...)
		seq = append(seq, delim(0xE0DD)...)
		f.elems = append([]testElem{{tag: 0x00081140, raw: seq}}, f.elems...)
		files = append(files, f.bytes())
	}
	noPixels := (&testFile{syntax: explicitLE}).str(0x00041130, "CS", "DICOMDIR").bytes()
	files = append(files, []byte("not a dicom file at all"), noPixels)
	s, err := Open(sources(files...), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Dims[2] != 3 || strings.Join(s.Skipped, ",") != "f03,f04" {
		t.Fatalf("dims %v, skipped %v", s.Dims, s.Skipped)
	}
	if _, err := s.Volume(); err != nil {
		t.Fatal(err)
	}
}

func delim(el uint16) []byte {
	b := binary.LittleEndian.AppendUint16(nil, 0xFFFE)
	b = binary.LittleEndian.AppendUint16(b, el)
	return binary.LittleEndian.AppendUint32(b, 0)
}

// TestSeriesRefusals: every way a folder is not one regular CT series gets a clear error.
func TestSeriesRefusals(t *testing.T) {
	enc := func(sl []ctSlice) [][]byte {
		var out [][]byte
		for _, s := range sl {
			out = append(out, s.file(explicitLE).bytes())
		}
		return out
	}
	base := func() []ctSlice { return obliqueSeries(5, rand.New(rand.NewSource(3))) }
	cases := []struct {
		name string
		edit func([]ctSlice) []ctSlice
		opt  Options
		want string
	}{
		{"missing slice", func(s []ctSlice) []ctSlice { return append(s[:2], s[3:]...) }, Options{}, "missing slice"},
		{"one image", func(s []ctSlice) []ctSlice { return s[:1] }, Options{}, "at least 2 slices"},
		{"MR", func(s []ctSlice) []ctSlice {
			for i := range s {
				s[i].modality = "MR"
			}
			return s
		}, Options{}, "no CT series"},
		{"two CT series", func(s []ctSlice) []ctSlice { s[0].uid = "9.9"; s[1].uid = "9.9"; return s }, Options{}, "several CT series (2)"},
		{"unknown series", func(s []ctSlice) []ctSlice { return s }, Options{Series: "7.7"}, "no series 7.7"},
		{"sizes differ", func(s []ctSlice) []ctSlice { s[2].rows, s[2].stored = 4, s[2].stored[:28]; return s }, Options{}, "one image size"},
		{"orientation differs", func(s []ctSlice) []ctSlice { s[1].orient[0], s[1].orient[1] = 1, 0; return s }, Options{}, "ImageOrientationPatient"},
		{"same position", func(s []ctSlice) []ctSlice {
			for i := range s {
				s[i].pos = s[0].pos
			}
			return s
		}, Options{}, "one position"},
		{"too many voxels", func(s []ctSlice) []ctSlice { return s }, Options{MaxVoxels: 100}, "exceeds the voxel limit of 100"},
	}
	for _, c := range cases {
		_, err := Open(sources(enc(c.edit(base()))...), c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want a one-line error containing %q", c.name, err, c.want)
		}
	}
	// With two series, the error lists them; naming one reads it.
	sl := base()
	sl[0].uid, sl[1].uid = "9.9", "9.9"
	_, err := Open(sources(enc(sl)...), Options{})
	var several *SeveralSeriesError
	if !errors.As(err, &several) || !errors.Is(err, ErrSeveralSeries) ||
		fmt.Sprint(several.Series) != "[{9.9  2} {1.2.3  3}]" {
		t.Fatalf("two series: %v", err)
	}
	s, err := Open(sources(enc(sl)...), Options{Series: "9.9"})
	if err != nil || s.Dims[2] != 2 {
		t.Fatalf("--series 9.9: %v, %+v", err, s)
	}
	// A series without a UID is listed, and chosen, as NoUID.
	sl = base()
	sl[0].uid, sl[1].uid = "", ""
	_, err = Open(sources(enc(sl)...), Options{})
	if !errors.As(err, &several) || several.Series[0].UID != NoUID {
		t.Fatalf("a series without a UID: %v", err)
	}
	if s, err = Open(sources(enc(sl)...), Options{Series: NoUID}); err != nil || s.Dims[2] != 2 {
		t.Fatalf("choosing the series without a UID: %v", err)
	}
	// Instance numbers against the positions: ordered by position, with a note.
	sl = base()
	sl[1].instance, sl[3].instance = sl[3].instance, sl[1].instance
	s, err = Open(sources(enc(sl)...), Options{})
	if err != nil || len(s.Notes) != 1 {
		t.Fatalf("shuffled instances: %v, notes %v", err, s.Notes)
	}
}

func TestUnsupportedFiles(t *testing.T) {
	c := obliqueSeries(2, rand.New(rand.NewSource(4)))[0]
	baseline := c.file(explicitLE)
	baseline.syntax = "1.2.840.10008.1.2.4.50"
	multi := c.file(explicitLE)
	px := multi.elems[len(multi.elems)-1]
	multi.elems = multi.elems[:len(multi.elems)-1]
	multi.str(0x00280008, "IS", "3").elems = append(multi.elems, px)
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"JPEG Baseline": {baseline.bytes(), "JPEG Baseline) is not supported"},
		"multi-frame":   {multi.bytes(), "3 frames"},
	} {
		b2 := obliqueSeries(2, rand.New(rand.NewSource(4)))[1].file(explicitLE).bytes()
		_, err := Open(sources(tc.b, b2), Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
	}
}

// TestHostileLengths: lengths larger than the file, and every truncation of a valid file, give
// errors, never a panic or an allocation of the claimed size.
func TestHostileLengths(t *testing.T) {
	c := obliqueSeries(2, rand.New(rand.NewSource(5)))[0]
	good := c.file(rleLossless).bytes()
	for n := 0; n < len(good); n++ {
		if h, err := parse(good[:n]); err == nil && h.hasPixels {
			if err := h.checkPixelFormat(); err == nil {
				out := make([]float32, h.rows*h.cols)
				if err := h.decode(out); err == nil {
					t.Fatalf("a file cut at byte %d of %d decoded without error", n, len(good))
				}
			}
		}
	}
	huge := (&testFile{syntax: explicitLE}).bytes()
	huge = append(huge, 0x08, 0x00, 0x60, 0x00, 'U', 'T', 0, 0, 0xF0, 0xFF, 0xFF, 0xFF)
	if _, err := parse(huge); err == nil || !strings.Contains(err.Error(), "claims 4294967280 bytes") {
		t.Fatalf("huge length: %v", err)
	}
	deep := (&testFile{syntax: explicitLE}).bytes()
	for i := 0; i < 100; i++ {
		deep = binary.LittleEndian.AppendUint16(deep, 0x0008)
		deep = binary.LittleEndian.AppendUint16(deep, 0x1140)
		deep = append(deep, 'S', 'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF)
		deep = append(deep, 0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF)
	}
	if _, err := parse(deep); err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Fatalf("deep nesting: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	c := obliqueSeries(2, rand.New(rand.NewSource(6)))[0]
	for _, syn := range []string{implicitLE, explicitLE, rleLossless} {
		f.Add(c.file(syn).bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parse(b)
		if err != nil || !h.hasPixels || h.checkPixelFormat() != nil || h.rows*h.cols > 1<<16 {
			return
		}
		_ = h.decode(make([]float32, h.rows*h.cols))
	})
}

// FuzzJPEG2000 feeds mutated codestreams of the shared series to the JPEG 2000 path, whose
// decoder is a dependency: it must return errors (or wrong pixels), never crash the program.
func FuzzJPEG2000(f *testing.F) {
	h := sharedSlice(f, 0)
	f.Add(h.fragments[0])
	f.Fuzz(func(t *testing.T, frame []byte) {
		g := *h
		g.fragments = [][]byte{frame}
		if g.checkPixelFormat() == nil {
			_ = g.decode(make([]float32, g.rows*g.cols))
		}
	})
}

// TestClaimedSizeNotAllocated: headers that claim a huge image over a few bytes of pixel data
// are refused before anything of the claimed size is allocated (native, RLE and lossless JPEG
// payloads bound the image; compressed ones are decoded one slice first, see Volume).
func TestClaimedSizeNotAllocated(t *testing.T) {
	for _, syntax := range []string{explicitLE, rleLossless, jpegSV1} {
		sl := obliqueSeries(2, rand.New(rand.NewSource(11)))
		var files [][]byte
		for _, c := range sl {
			f := c.file(explicitLE)
			f.syntax = syntax
			for i, e := range f.elems {
				if e.tag == 0x00280010 || e.tag == 0x00280011 { // Rows, Columns
					f.elems[i].val = binary.LittleEndian.AppendUint16(nil, 16384)
				}
				if e.tag == tagPixelData && syntax != explicitLE {
					f.elems[i] = testElem{tag: tagPixelData, raw: encapsulate(make([]byte, 64))}
				}
			}
			files = append(files, f.bytes())
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s, err := Open(sources(files...), Options{})
		if err == nil {
			_, err = s.Volume()
		}
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "too few for a 16384x16384 image") {
			t.Errorf("%s: %v", syntax, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
			t.Errorf("%s: %d MB allocated for %d bytes of files", syntax, got>>20, len(files[0])+len(files[1]))
		}
	}
}

// TestOtherFilesInTheFolder: a file whose transfer syntax ctseg cannot decode is refused only
// when it belongs to the series being read; a file too large to be a CT image is skipped; an
// InstanceNumber written "2.0" is a number.
func TestOtherFilesInTheFolder(t *testing.T) {
	sl := obliqueSeries(3, rand.New(rand.NewSource(12)))
	var files [][]byte
	for _, c := range sl {
		files = append(files, c.file(explicitLE).bytes())
	}
	other := sl[0]
	other.uid, other.modality = "9.9", "OT"
	baseline := other.file(explicitLE)
	baseline.syntax = "1.2.840.10008.1.2.4.50"
	s, err := Open(sources(append(files, baseline.bytes())...), Options{})
	if err != nil || s.UID != "1.2.3" || s.Dims[2] != 3 {
		t.Fatalf("a JPEG Baseline file of another series: %v", err)
	}
	var jpegs [][]byte
	for _, c := range sl[:2] {
		c.uid = "9.9"
		f := c.file(explicitLE)
		f.syntax = "1.2.840.10008.1.2.4.50"
		jpegs = append(jpegs, f.bytes())
	}
	if _, err := Open(sources(append(files, jpegs...)...), Options{Series: "9.9"}); err == nil ||
		!strings.Contains(err.Error(), "JPEG Baseline) is not supported") {
		t.Fatalf("reading a JPEG Baseline series: %v", err)
	}

	dir := t.TempDir()
	for i, b := range files {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("s%d.dcm", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	big, err := os.Create(filepath.Join(dir, "huge.dcm"))
	if err != nil {
		t.Fatal(err)
	}
	big.Write(files[0][:132])
	if err := big.Truncate(MaxFileBytes + 1); err != nil { // sparse: no disk space used
		t.Fatal(err)
	}
	big.Close()
	srcs, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s, err = Open(srcs, Options{}); err != nil || len(s.Skipped) != 1 || !strings.HasSuffix(s.Skipped[0], "huge.dcm") {
		t.Fatalf("a 1 GiB file beside the series: %v, skipped %v", err, s)
	}

	c := sl[0]
	f := c.file(explicitLE)
	for i, e := range f.elems {
		if e.tag == 0x00200013 {
			f.elems[i].val = []byte(fmt.Sprintf("%d.0 ", c.instance))
		}
	}
	h, err := parse(f.bytes())
	if err != nil || !h.hasInstance || h.instance != c.instance {
		t.Fatalf("InstanceNumber %q: %v %+v", fmt.Sprintf("%d.0", c.instance), err, h)
	}
}

// TestLinkedFolderAndFiles: a folder given through a symbolic link, and links to files, are read.
func TestLinkedFolderAndFiles(t *testing.T) {
	sl := obliqueSeries(3, rand.New(rand.NewSource(13)))
	real, links := t.TempDir(), t.TempDir()
	for i, c := range sl {
		p := filepath.Join(real, fmt.Sprintf("s%d.dcm", i))
		if err := os.WriteFile(p, c.file(explicitLE).bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(links, fmt.Sprintf("l%d.dcm", i))); err != nil {
			t.Fatal(err)
		}
	}
	dirLink := filepath.Join(t.TempDir(), "series")
	if err := os.Symlink(real, dirLink); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{dirLink, links} {
		v, _, err := ReadDir(dir, Options{})
		if err != nil || v.Dims[2] != 3 {
			t.Errorf("%s: %v", dir, err)
		}
	}
}

// sharedSlice parses the k-th file of the shared JPEG 2000 series.
func sharedSlice(t testing.TB, k int) *header {
	srcs, err := Dir(shared.Path(t, "data", "ct", "example_ct_dicom"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := srcs[k].Open()
	if err != nil {
		t.Fatal(err)
	}
	h, err := parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
