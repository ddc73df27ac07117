package dicom

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ctseg/internal/shared"
)

// node is one element of a parsed test dataset: a value, or the items of a sequence.
type node struct {
	vr    string
	val   []byte
	items []tree
}

type tree map[uint32]node

// parseTree reads an explicit VR little endian dataset with defined lengths (what the writer
// emits) into a tree, failing on tags out of ascending order.
func parseTree(t *testing.T, b []byte) tree {
	t.Helper()
	r := &reader{b: b}
	out := tree{}
	last := uint32(0)
	for r.left() > 0 {
		e, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if e.undefined {
			t.Fatalf("(%04X,%04X): undefined length", e.tag>>16, e.tag&0xFFFF)
		}
		if e.tag <= last && last != 0 {
			t.Fatalf("(%04X,%04X) after (%04X,%04X): not in ascending order", e.tag>>16, e.tag&0xFFFF, last>>16, last&0xFFFF)
		}
		last = e.tag
		n := node{vr: e.vr, val: e.value}
		if e.vr == "SQ" {
			ir := &reader{b: e.value}
			for ir.left() > 0 {
				it, err := ir.next()
				if err != nil || it.tag != tagItem || it.undefined {
					t.Fatalf("(%04X,%04X): bad item: %v", e.tag>>16, e.tag&0xFFFF, err)
				}
				n.items = append(n.items, parseTree(t, it.value))
			}
		}
		out[e.tag] = n
	}
	return out
}

func (tr tree) str(tag uint32) string { return str(tr[tag].val) }

func (tr tree) item(tags ...uint32) tree {
	cur := tr
	for _, tag := range tags {
		n := cur[tag]
		if len(n.items) != 1 {
			panic(fmt.Sprintf("(%04X,%04X): %d items, want 1", tag>>16, tag&0xFFFF, len(n.items)))
		}
		cur = n.items[0]
	}
	return cur
}

func (tr tree) ds(t *testing.T, tag uint32, n int) []float64 {
	t.Helper()
	v, err := decimals(tr[tag].val, n)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readSeg splits a written segmentation into its meta group, its dataset and its pixel bytes.
func readSeg(t *testing.T, b []byte) (meta, ds tree, pixels []byte) {
	t.Helper()
	if !IsDICOM(b) {
		t.Fatal("no DICM marker")
	}
	r := &reader{b: b, off: 132}
	e, err := r.next()
	if err != nil || e.tag != 0x00020000 {
		t.Fatalf("no group length first: %v", err)
	}
	glen := int(binary.LittleEndian.Uint32(e.value))
	meta = parseTree(t, b[r.off:r.off+glen])
	ds = parseTree(t, b[r.off+glen:])
	return meta, ds, ds[tagPixelData].val
}

// segSeries opens the synthetic oblique series: 5x7 images (35 pixels, so frames do not end
// on byte boundaries), non-square pixels, instance numbers running against the normal.
func segSeries(t *testing.T, n int) *Series {
	t.Helper()
	var files [][]byte
	for _, c := range obliqueSeries(n, rand.New(rand.NewSource(3))) {
		f := c.file(explicitLE)
		pix := f.elems[len(f.elems)-1]
		f.elems = f.elems[:len(f.elems)-1]
		// an odd-length name, as a malformed file may hold: copied padded
		f.add(0x00100010, "PN", []byte("Doe^Jan")).str(0x0020000D, "UI", "1.2.9.9").str(0x00200052, "UI", "1.2.9.10")
		f.elems = append(f.elems, pix)
		files = append(files, f.bytes())
	}
	s, err := Open(sources(files...), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSegmentationGeometry writes a label map as a segmentation and reads it back the way a
// viewer does: every frame's pixels are placed in space by the frame's own position and the
// shared orientation and spacing, and looked up in the label map through the series' affine
// (which the golden test holds to MONAI's). So the test checks where each bit lands, not how
// the writer indexes.
func TestSegmentationGeometry(t *testing.T) {
	s := segSeries(t, 6)
	nx, ny, nz := s.Dims[0], s.Dims[1], s.Dims[2]
	labels := make([]uint8, nx*ny*nz)
	rng := rand.New(rand.NewSource(5))
	for i := range labels {
		labels[i] = []uint8{0, 0, 3, 7, 200}[rng.Intn(5)]
	}
	// value 7 only on slice 2; value 9 nowhere
	for i := range labels {
		if labels[i] == 7 && i/(nx*ny) != 2 {
			labels[i] = 0
		}
	}
	segs := []Segment{
		{Value: 9, Label: "absent", Category: Code{"1", "99T", "c"}, Type: Code{"2", "99T", "t"}},
		{Value: 7, Label: "seven", Category: Code{"123037004", "SCT", "Anatomical Structure"}, Type: Code{"64033007", "SCT", "Kidney"},
			Modifier: &Code{"7771000", "SCT", "Left"}, Color: [3]uint8{255, 0, 0}},
		{Value: 3, Label: "three", Category: Code{"123037004", "SCT", "Anatomical Structure"}, Type: Code{"10200004", "SCT", "Liver"}},
		{Value: 200, Label: "two hundred", Category: Code{"123037004", "SCT", "Anatomical Structure"}, Type: Code{"78961009", "SCT", "Spleen"}},
	}
	uid := 0
	var buf bytes.Buffer
	sum, err := s.WriteSegmentation(&buf, labels, SegOptions{Segments: segs, Algorithm: "test", Software: "0",
		Now: time.Date(2026, 11, 27, 10, 30, 5, 0, time.UTC), NewUID: func() string { uid++; return fmt.Sprintf("1.2.826.0.1.%d", uid) }})
	if err != nil {
		t.Fatal(err)
	}
	meta, ds, pixels := readSeg(t, buf.Bytes())
	if int64(buf.Len()) != sum.Bytes {
		t.Fatalf("summary says %d bytes, wrote %d", sum.Bytes, buf.Len())
	}
	if meta.str(0x00020002) != segStorage || meta.str(0x00020003) != ds.str(0x00080018) || meta.str(0x00020010) != explicitLE {
		t.Fatalf("meta %q %q %q", meta.str(0x00020002), meta.str(0x00020003), meta.str(0x00020010))
	}
	if ds.str(0x00080016) != segStorage || ds.str(0x00080060) != "SEG" || ds.str(0x00620001) != "BINARY" {
		t.Fatal("not a binary segmentation")
	}
	if ds.str(0x00100010) != "Doe^Jan" || ds.str(0x0020000D) != "1.2.9.9" || ds.str(0x00200052) != "1.2.9.10" {
		t.Fatalf("patient, study or frame of reference not copied: %q %q %q", ds.str(0x00100010), ds.str(0x0020000D), ds.str(0x00200052))
	}
	if ds.str(0x0020000E) == s.UID || ds.str(0x00080023) != "20261127" || ds.str(0x00080033) != "103005" {
		t.Fatal("series UID or content date")
	}
	// segments: the absent one left out, the others numbered from 1 in the given order
	seq := ds[0x00620002].items
	if len(seq) != 3 || sum.Segments != 3 {
		t.Fatalf("%d segments (summary %d), want 3", len(seq), sum.Segments)
	}
	wantValue := map[int]uint8{}
	for i, it := range seq {
		num := int(binary.LittleEndian.Uint16(it[0x00620004].val))
		if num != i+1 || it.str(0x00620005) != segs[i+1].Label {
			t.Fatalf("segment %d: number %d, label %q", i, num, it.str(0x00620005))
		}
		typ := it.item(0x0062000F)
		if typ.str(0x00080100) != segs[i+1].Type.Value || typ.str(0x00080102) != "SCT" || it.item(0x00620003).str(0x00080104) != "Anatomical Structure" {
			t.Fatalf("segment %d codes", num)
		}
		_, hasMod := typ[0x00620011]
		if hasMod != (segs[i+1].Modifier != nil) {
			t.Fatalf("segment %d: modifier %v", num, hasMod)
		}
		wantValue[num] = segs[i+1].Value
	}
	if lab := seq[0][0x0062000D].val; binary.LittleEndian.Uint16(lab) < 30000 || binary.LittleEndian.Uint16(lab[2:]) < 50000 {
		t.Fatalf("red as CIELab: %v", lab) // L* about 53, a* about +80
	}
	// references: every source image, in the series
	refs := ds.item(0x00081115)
	if refs.str(0x0020000E) != s.UID || len(refs[0x0008114A].items) != nz {
		t.Fatal("referenced series")
	}
	shared := ds.item(0x52009229)
	spacing := shared.item(0x00289110).ds(t, 0x00280030, 2) // row spacing, column spacing
	orient := shared.item(0x00209116).ds(t, 0x00200037, 6)
	rowDir, colDir := orient[:3], orient[3:]
	frames := ds[0x52009230].items
	n, err := parseInt(ds.str(0x00280008))
	if err != nil || n != len(frames) || n != sum.Frames {
		t.Fatalf("NumberOfFrames %q, %d frame items, summary %d", ds.str(0x00280008), len(frames), sum.Frames)
	}
	rows, cols := int(binary.LittleEndian.Uint16(ds[0x00280010].val)), int(binary.LittleEndian.Uint16(ds[0x00280011].val))
	if rows != ny || cols != nx || len(pixels) != (n*rows*cols+7)/8+((n*rows*cols+7)/8)%2 {
		t.Fatalf("%dx%d, %d pixel bytes for %d frames", rows, cols, len(pixels), n)
	}
	inv := invert4(s.Affine)
	covered := 0
	seen := map[[2]int]bool{} // (segment, position index) of the frames
	for f, fr := range frames {
		segNum := int(binary.LittleEndian.Uint16(fr.item(0x0062000A)[0x0062000B].val))
		dim := fr.item(0x00209111)[0x00209157].val
		if len(dim) != 8 || int(binary.LittleEndian.Uint32(dim)) != segNum {
			t.Fatalf("frame %d: dimension index %v, segment %d", f, dim, segNum)
		}
		posIndex := int(binary.LittleEndian.Uint32(dim[4:]))
		if seen[[2]int{segNum, posIndex}] {
			t.Fatalf("frame %d: dimension index values %v repeat an earlier frame's", f, dim)
		}
		seen[[2]int{segNum, posIndex}] = true
		pos := fr.item(0x00209113).ds(t, 0x00200032, 3)
		src := fr.item(0x00089124, 0x00082112).str(0x00081155)
		any := false
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				var ras [3]float64
				for a := 0; a < 3; a++ {
					ras[a] = pos[a] + float64(c)*spacing[1]*rowDir[a] + float64(r)*spacing[0]*colDir[a]
				}
				ras[0], ras[1] = -ras[0], -ras[1]
				ijk := apply(inv, ras)
				for a := range ijk {
					if math.Abs(ijk[a]-math.Round(ijk[a])) > 1e-6 {
						t.Fatalf("frame %d pixel (%d,%d) lands between voxels: %v", f, r, c, ijk)
					}
				}
				i, j, k := int(math.Round(ijk[0])), int(math.Round(ijk[1])), int(math.Round(ijk[2]))
				if i < 0 || j < 0 || k < 0 || i >= nx || j >= ny || k >= nz {
					t.Fatalf("frame %d pixel (%d,%d) outside the grid: %v", f, r, c, ijk)
				}
				if c == 0 && r == 0 && (src != s.slices[k].h.sopInstance || posIndex != k+1) {
					t.Fatalf("frame %d on slice %d refers to %s, position index %d", f, k, src, posIndex)
				}
				bit := f*rows*cols + r*cols + c
				set := pixels[bit/8]>>(bit%8)&1 == 1
				if set != (labels[i+nx*(j+ny*k)] == wantValue[segNum]) {
					t.Fatalf("frame %d (segment %d) pixel (%d,%d): bit %v, label %d", f, segNum, r, c, set, labels[i+nx*(j+ny*k)])
				}
				if set {
					covered++
					any = true
				}
			}
		}
		if !any {
			t.Fatalf("frame %d is empty", f)
		}
	}
	// and nothing of a written segment is missing: every voxel of 3, 7 and 200 is in a frame
	want := 0
	for _, l := range labels {
		if l == 3 || l == 7 || l == 200 {
			want++
		}
	}
	if covered != want {
		t.Fatalf("frames cover %d voxels, the segments hold %d", covered, want)
	}
	for _, b := range pixels[(n*rows*cols+7)/8:] {
		if b != 0 {
			t.Fatal("padding not zero")
		}
	}
	if last := n * rows * cols; last%8 != 0 && pixels[last/8]>>(last%8) != 0 {
		t.Fatal("bits past the last frame are set")
	}
}

func parseInt(s string) (int, error) {
	var n int
	_, err := fmt.Sscan(s, &n)
	return n, err
}

// invert4 inverts an affine matrix (rotation/scale part and translation).
func invert4(m [4][4]float64) [4][4]float64 {
	a := [3][3]float64{}
	for r := 0; r < 3; r++ {
		for c := 0; c < 3; c++ {
			a[r][c] = m[r][c]
		}
	}
	det := a[0][0]*(a[1][1]*a[2][2]-a[1][2]*a[2][1]) - a[0][1]*(a[1][0]*a[2][2]-a[1][2]*a[2][0]) + a[0][2]*(a[1][0]*a[2][1]-a[1][1]*a[2][0])
	var inv [4][4]float64
	for r := 0; r < 3; r++ {
		for c := 0; c < 3; c++ {
			// cofactor of (c, r)
			r1, r2 := (c+1)%3, (c+2)%3
			c1, c2 := (r+1)%3, (r+2)%3
			inv[r][c] = (a[r1][c1]*a[r2][c2] - a[r1][c2]*a[r2][c1]) / det
		}
	}
	for r := 0; r < 3; r++ {
		inv[r][3] = -(inv[r][0]*m[0][3] + inv[r][1]*m[1][3] + inv[r][2]*m[2][3])
	}
	inv[3][3] = 1
	return inv
}

func apply(m [4][4]float64, p [3]float64) [3]float64 {
	var out [3]float64
	for r := 0; r < 3; r++ {
		out[r] = m[r][0]*p[0] + m[r][1]*p[1] + m[r][2]*p[2] + m[r][3]
	}
	return out
}

// TestSegmentationRefusals: a label map of the wrong size or of background only is refused.
func TestSegmentationRefusals(t *testing.T) {
	s := segSeries(t, 3)
	if _, err := s.WriteSegmentation(&bytes.Buffer{}, make([]uint8, 5), SegOptions{}); err == nil || !strings.Contains(err.Error(), "label map of 5 voxels") {
		t.Fatalf("wrong size: %v", err)
	}
	segs := []Segment{{Value: 1, Label: "one"}}
	if _, err := s.WriteSegmentation(&bytes.Buffer{}, make([]uint8, 35*3), SegOptions{Segments: segs}); !errors.Is(err, ErrNoStructures) {
		t.Fatalf("background only: %v", err)
	}
}

// TestSegmentationOfDamagedSeries: what an anonymiser or a broken writer leaves out or gets
// wrong in the source does not make the segmentation invalid. Images without their UIDs are
// referred to by position; a series without a study or frame of reference UID gets one made
// from its images (the same every time); values their VR does not allow are not copied (a
// 70000-byte name would overflow its element's 16-bit length; a date or a code in another form
// makes the segmentation invalid).
func TestSegmentationOfDamagedSeries(t *testing.T) {
	var files [][]byte
	for _, c := range obliqueSeries(3, rand.New(rand.NewSource(1))) {
		f := c.file(explicitLE)
		pix := f.elems[len(f.elems)-1]
		f.elems = append(f.elems[2:len(f.elems)-1], // without the SOP Class and Instance UIDs
			testElem{tag: 0x00100010, vr: "UT", val: bytes.Repeat([]byte("A"), 70000)}, // UT: a long length
			testElem{tag: 0x0020000D, vr: "UI", val: []byte("not a uid ")},
			testElem{tag: 0x00080020, vr: "DA", val: []byte("2020-01-01")}, // a date in another format
			testElem{tag: 0x00100040, vr: "CS", val: []byte("m ")},         // a code in lower case
			pix)
		files = append(files, f.bytes())
	}
	s, err := Open(sources(files...), Options{})
	if err != nil {
		t.Fatal(err)
	}
	labels := make([]uint8, 35*3)
	labels[40] = 1
	var studies []string
	for range 2 {
		var buf bytes.Buffer
		sum, err := s.WriteSegmentation(&buf, labels, SegOptions{Segments: []Segment{{Value: 1, Label: "one"}}})
		if err != nil {
			t.Fatal(err)
		}
		_, ds, _ := readSeg(t, buf.Bytes())
		if _, ok := ds[0x00081115]; ok || len(sum.Notes) != 3 || !strings.Contains(sum.Notes[2], "no Study Instance UID: the segmentation refers to its images by position only") {
			t.Fatalf("references or notes: %q", sum.Notes)
		}
		if _, ok := ds.item(0x52009230)[0x00089124]; ok {
			t.Fatal("a frame refers to a source image")
		}
		for tag, vr := range map[uint32]string{0x00100010: "PN", 0x00080020: "DA", 0x00100040: "CS"} {
			if n := ds[tag]; len(n.val) != 0 || n.vr != vr {
				t.Fatalf("(%04X,%04X): %s %q, want it written empty", tag>>16, tag&0xFFFF, n.vr, n.val)
			}
		}
		studies = append(studies, ds.str(0x0020000D))
	}
	if studies[0] != studies[1] || !strings.HasPrefix(studies[0], "2.25.") || len(studies[0]) > 64 {
		t.Fatalf("made study UIDs %q", studies)
	}
}

func TestCIELab(t *testing.T) {
	for _, c := range []struct {
		rgb  [3]uint8
		want [3]int
	}{
		{[3]uint8{255, 255, 255}, [3]int{65535, 32896, 32896}}, // L* 100, a* = b* = 0 (D50 white)
		{[3]uint8{0, 0, 0}, [3]int{0, 32896, 32896}},
		{[3]uint8{255, 0, 0}, [3]int{35579, 53663, 50857}}, // sRGB red in D50 (Bradford): L* 54.29, a* 80.81, b* 69.89
	} {
		got := cieLab(c.rgb)
		for i := range 3 {
			if math.Abs(float64(got[i]-c.want[i])) > 40 { // 0.06 L*, 0.16 a*/b*
				t.Errorf("%v: %v, want %v", c.rgb, got, c.want)
			}
		}
	}
}

// TestSegmentationsValidate has dicom3tools' dciodvfy check two segmentations against the
// Segmentation IOD (every required module and attribute, their VRs, multiplicities and
// conditions): one of the shared series (bone and soft tissue by threshold), which an
// anonymiser left without Study and Series Instance UIDs, and one of a synthetic series that has
// them, so that the references to the source images are checked too. dciodvfy is installed by
// `make test` (scripts/install-deps.sh); the test fails without it.
func TestSegmentationsValidate(t *testing.T) {
	tool, err := exec.LookPath("dciodvfy")
	if err != nil {
		t.Fatal("dciodvfy (Debian package dicom3tools) is needed: run scripts/install-deps.sh")
	}
	anatomy := Code{"123037004", "SCT", "Anatomical Structure"}
	segs := []Segment{
		{Value: 5, Label: "liver", Category: anatomy, Type: Code{"10200004", "SCT", "Liver"}, Color: [3]uint8{200, 100, 50}},
		{Value: 25, Label: "vertebrae_T10", Category: anatomy, Type: Code{"7610001", "SCT", "T10 vertebra"}},
		{Value: 2, Label: "kidney_right", Category: anatomy, Type: Code{"64033007", "SCT", "Kidney"}, Modifier: &Code{"24028007", "SCT", "Right"}},
	}
	validate := func(t *testing.T, s *Series, labels []uint8) SegSummary {
		path := filepath.Join(t.TempDir(), "seg.dcm")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := s.WriteSegmentation(f, labels, SegOptions{Segments: segs, Algorithm: "threshold", Software: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		out, _ := exec.Command(tool, path).CombinedOutput()
		if !strings.Contains(string(out), "Segmentation") {
			t.Fatalf("dciodvfy did not recognise a segmentation:\n%s", out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "Error") {
				t.Fatalf("dciodvfy:\n%s", out)
			}
		}
		t.Logf("dciodvfy:\n%s", out)
		return sum
	}
	t.Run("shared series", func(t *testing.T) {
		v, s, err := ReadDir(shared.Path(t, "data", "ct", "example_ct_dicom"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		labels := make([]uint8, len(v.Data))
		for i, hu := range v.Data {
			switch {
			case hu > 300:
				labels[i] = 25
			case hu > 0 && hu < 80:
				labels[i] = 5
			}
		}
		sum := validate(t, s, labels)
		if sum.Segments != 2 || sum.Frames != 2*s.Dims[2] || len(sum.Notes) != 2 {
			t.Fatalf("%+v: want both present segments on all %d slices, and notes on the missing UIDs", sum, s.Dims[2])
		}
	})
	t.Run("synthetic series with UIDs", func(t *testing.T) {
		s := segSeries(t, 4)
		labels := make([]uint8, s.Dims[0]*s.Dims[1]*s.Dims[2])
		for i := range labels {
			labels[i] = []uint8{0, 2, 5}[i%3]
		}
		if sum := validate(t, s, labels); sum.Segments != 2 || len(sum.Notes) != 0 {
			t.Fatalf("%+v", sum)
		}
	})
}

// BenchmarkWriteSegmentation writes a whole-body-sized segmentation: 104 structures on a
// 512x512x120 series, each over a quarter of the slices (3120 frames, 102 MB), to io.Discard.
func BenchmarkWriteSegmentation(b *testing.B) {
	const n, side = 120, 512
	var files [][]byte
	for k := range n {
		c := ctSlice{uid: "1.2.3", modality: "CT", instance: k + 1, orient: [6]float64{1, 0, 0, 0, 1, 0}, spacing: [2]float64{0.8, 0.8},
			pos: [3]float64{0, 0, float64(k)}, rows: side, cols: side, bitsStored: 12, slope: 1, stored: make([]int, side*side)}
		files = append(files, c.file(explicitLE).bytes())
	}
	s, err := Open(sources(files...), Options{})
	if err != nil {
		b.Fatal(err)
	}
	labels := make([]uint8, side*side*n)
	var segs []Segment
	for v := 1; v <= 104; v++ {
		segs = append(segs, Segment{Value: uint8(v), Label: fmt.Sprint(v)})
	}
	for k := range n {
		for i := range side * side {
			// 26 structures per slice in vertical bands, the set shifting every 30 slices
			labels[k*side*side+i] = uint8(1 + (i%side)*26/side + 26*(k/30))
		}
	}
	b.SetBytes(int64(len(labels)))
	b.ResetTimer()
	for b.Loop() {
		sum, err := s.WriteSegmentation(io.Discard, labels, SegOptions{Segments: segs})
		if err != nil || sum.Frames != 104*30 {
			b.Fatalf("%+v %v", sum, err)
		}
		b.ReportMetric(float64(sum.Bytes)/1e6, "MB")
	}
}
