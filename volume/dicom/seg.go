package dicom

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"time"
)

// A DICOM Segmentation (PS3.3 A.51) carries a label map back to where the CT came from: a PACS
// stores it beside the series, and DICOM viewers (OHIF, 3D Slicer, Weasis) show it over the
// images it refers to. ctseg writes the binary form: one segment per structure present, one
// 1-bit frame per segment and source image that holds it, each frame tied to its source image
// and to that image's position.

// Code is a coded concept (Code Value, Coding Scheme Designator, Code Meaning).
type Code struct {
	Value, Scheme, Meaning string
}

// Segment is one structure that a label map may hold.
type Segment struct {
	Value          uint8  // its voxel value in the label map
	Label          string // Segment Label, a short name
	Category, Type Code   // Segmented Property Category and Type
	Modifier       *Code  // Segmented Property Type Modifier (laterality), or nil
	Color          [3]uint8
}

// SegOptions describes a segmentation beyond its voxels.
type SegOptions struct {
	// Segments lists the structures; those without a voxel in the label map are left out, and
	// the others are numbered from 1 in this order (DICOM numbers segments from 1 without gaps).
	Segments []Segment
	// SeriesDescription, SeriesNumber: how the segmentation shows in a PACS (defaults below).
	SeriesDescription string
	SeriesNumber      int
	// Algorithm names the method (Segment Algorithm Name); Software its version.
	Algorithm, Software string
	// Now stamps the content date and time (default: the clock).
	Now time.Time
	// NewUID makes the segmentation's UIDs (default: random UUID-derived 2.25 UIDs, which need
	// no registered root).
	NewUID func() string
}

// SegSummary says what a written segmentation holds.
type SegSummary struct {
	Segments, Frames int
	Bytes            int64
	Notes            []string // where the source fell short of what a segmentation refers to
}

// Identities of the writer and the IOD.
const (
	segStorage         = "1.2.840.10008.5.1.4.1.1.66.4"
	implementationUID  = "2.25.339199886231058539800604999773196759859"
	implementationName = "CTSEG"
	defaultSeriesDesc  = "Segmentation"
	defaultSeriesNum   = 900
)

// copiedTags are the attributes a derived object shares with its source: patient, study and
// frame of reference, with their VRs (implicit VR files do not carry them). They are copied as
// bytes, with the character set they are encoded in.
var copiedTags = map[uint32]string{
	0x00080005: "CS", // Specific Character Set
	0x00080020: "DA", // Study Date
	0x00080030: "TM", // Study Time
	0x00080050: "SH", // Accession Number
	0x00080090: "PN", // Referring Physician's Name
	0x00081030: "LO", // Study Description
	0x00100010: "PN", // Patient's Name
	0x00100020: "LO", // Patient ID
	0x00100021: "LO", // Issuer of Patient ID
	0x00100030: "DA", // Patient's Birth Date
	0x00100040: "CS", // Patient's Sex
	0x0020000D: "UI", // Study Instance UID
	0x00200010: "SH", // Study ID
	0x00200052: "UI", // Frame of Reference UID
	0x00201040: "LO", // Position Reference Indicator
}

// required copied attributes: type 2 ones are written empty when the source lacks them, and the
// two UIDs are made anew (a segmentation of a source without them starts its own study).
var (
	copiedEmpty = []uint32{0x00080020, 0x00080030, 0x00080050, 0x00080090, 0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x00200010, 0x00201040}
	copiedUIDs  = []uint32{0x0020000D, 0x00200052}
)

// WriteSegmentation writes labels, a label map on the series' grid (indexed as Volume indexes
// the CT: column + C·(row + R·slice)), to w as a DICOM Segmentation of this series.
func (s *Series) WriteSegmentation(w io.Writer, labels []uint8, opt SegOptions) (SegSummary, error) {
	nx, ny, nz := s.Dims[0], s.Dims[1], s.Dims[2]
	plane := nx * ny
	if len(labels) != plane*nz {
		return SegSummary{}, fmt.Errorf("label map of %d voxels for a %dx%dx%d series", len(labels), nx, ny, nz)
	}
	if opt.NewUID == nil {
		opt.NewUID = randomUID
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	if opt.SeriesDescription == "" {
		opt.SeriesDescription = defaultSeriesDesc
	}
	if opt.SeriesNumber == 0 {
		opt.SeriesNumber = defaultSeriesNum
	}

	// which label values each slice holds
	present := make([][256]bool, nz)
	for k := range nz {
		for _, v := range labels[k*plane : (k+1)*plane] {
			present[k][v] = true
		}
	}
	type frame struct{ seg, k int } // segment number, slice
	var segs []Segment
	var frames []frame
	for _, sg := range opt.Segments {
		n := len(frames)
		for k := range nz {
			if present[k][sg.Value] {
				frames = append(frames, frame{len(segs) + 1, k})
			}
		}
		if len(frames) > n {
			segs = append(segs, sg)
		}
	}
	if len(frames) == 0 {
		return SegSummary{}, ErrNoStructures
	}

	first := s.slices[0].h
	date, clock := opt.Now.Format("20060102"), opt.Now.Format("150405")
	sopInstance := opt.NewUID()
	dimOrg := opt.NewUID()
	d := dataset{
		text(0x00080008, "CS", `DERIVED\PRIMARY`),
		text(0x00080016, "UI", segStorage),
		text(0x00080018, "UI", sopInstance),
		text(0x00080023, "DA", date),
		text(0x00080033, "TM", clock),
		text(0x00080060, "CS", "SEG"),
		text(0x00080070, "LO", "ctseg"),
		text(0x0008103E, "LO", opt.SeriesDescription),
		text(0x00081090, "LO", "ctseg"),
		text(0x00181000, "LO", "1"),
		text(0x00181020, "LO", opt.Software),
		text(0x0020000E, "UI", opt.NewUID()),
		integer(0x00200011, opt.SeriesNumber),
		integer(0x00200013, 1),
		seq(0x00209221, dataset{text(0x00209164, "UI", dimOrg)}),
		seq(0x00209222,
			dataset{text(0x00209164, "UI", dimOrg), attrTag(0x00209165, 0x0062000B), attrTag(0x00209167, 0x0062000A),
				text(0x00209421, "LO", "Segment")},
			dataset{text(0x00209164, "UI", dimOrg), attrTag(0x00209165, 0x00200032), attrTag(0x00209167, 0x00209113),
				text(0x00209421, "LO", "Image position")}),
		ushort(0x00280002, 1),
		text(0x00280004, "CS", "MONOCHROME2"),
		integer(0x00280008, len(frames)),
		ushort(0x00280010, ny),
		ushort(0x00280011, nx),
		ushort(0x00280100, 1),
		ushort(0x00280101, 1),
		ushort(0x00280102, 0),
		ushort(0x00280103, 0),
		text(0x00282110, "CS", "00"),
		text(0x00620001, "CS", "BINARY"),
		text(0x00700080, "CS", "CTSEG"),
		text(0x00700081, "LO", opt.Algorithm),
		text(0x00700084, "PN", ""),
	}
	for _, tag := range copiedEmpty {
		if _, ok := first.copied[tag]; !ok {
			d = append(d, text(tag, copiedTags[tag], ""))
		}
	}
	var notes []string
	for _, tag := range copiedUIDs {
		if str(first.copied[tag]) == "" { // absent, or emptied by an anonymiser
			d = append(d, text(tag, "UI", s.derivedUID(tag)))
			notes = append(notes, fmt.Sprintf("the series has no %s: the segmentation has one made from its images", map[uint32]string{0x0020000D: "Study Instance UID", 0x00200052: "Frame of Reference UID"}[tag]))
		}
	}
	for tag, v := range first.copied {
		if copiedTags[tag] != "UI" || str(v) != "" {
			d = append(d, elem{tag: tag, vr: copiedTags[tag], val: v})
		}
	}

	// the source images, in the series' order. A series that cannot be named (no series or
	// study UID, an image without its UIDs: an anonymiser's work) is referred to by frame of
	// reference and positions only, which a valid segmentation allows.
	refer, why := s.referable()
	if refer {
		refs := make([]dataset, nz)
		for k, sl := range s.slices {
			refs[k] = dataset{text(0x00081150, "UI", sl.h.sopClass), text(0x00081155, "UI", sl.h.sopInstance)}
		}
		d = append(d, seq(0x00081115, dataset{text(0x0020000E, "UI", s.UID), seq(0x0008114A, refs...)}))
	} else {
		notes = append(notes, why+": the segmentation refers to its images by position only")
	}

	// segments
	items := make([]dataset, len(segs))
	for i, sg := range segs {
		typ := codeItem(sg.Type)
		if sg.Modifier != nil {
			typ = append(typ, seq(0x00620011, codeItem(*sg.Modifier)))
		}
		items[i] = dataset{
			ushort(0x00620004, i+1),
			text(0x00620005, "LO", sg.Label),
			text(0x00620008, "CS", "AUTOMATIC"),
			text(0x00620009, "LO", opt.Algorithm),
			ushort(0x0062000D, cieLab(sg.Color)...),
			seq(0x00620003, codeItem(sg.Category)),
			seq(0x0062000F, typ),
		}
	}
	d = append(d, seq(0x00620002, items...))

	// geometry shared by every frame, then each frame's segment, position and source image
	spacingZ := s.sliceStep()
	d = append(d, seq(0x52009229, dataset{
		seq(0x00289110, dataset{decimal(0x00280030, first.pixelSpacing...), decimal(0x00180050, spacingZ), decimal(0x00180088, spacingZ)}),
		seq(0x00209116, dataset{decimal(0x00200037, first.orientation...)}),
	}))
	perFrame := make([]dataset, len(frames))
	for i, f := range frames {
		h := s.slices[f.k].h
		perFrame[i] = dataset{
			seq(0x00209111, dataset{elem{tag: 0x00209157, vr: "UL", val: binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(f.seg)), uint32(f.k+1))}}),
			seq(0x00209113, dataset{decimal(0x00200032, h.position...)}),
			seq(0x0062000A, dataset{ushort(0x0062000B, f.seg)}),
		}
		if refer {
			perFrame[i] = append(perFrame[i], seq(0x00089124, dataset{
				seq(0x00082112, dataset{
					text(0x00081150, "UI", h.sopClass), text(0x00081155, "UI", h.sopInstance),
					seq(0x0040A170, codeItem(Code{"121322", "DCM", "Source image for image processing operation"})),
				}),
				seq(0x00089215, codeItem(Code{"113076", "DCM", "Segmentation"})),
			}))
		}
	}
	d = append(d, seq(0x52009230, perFrame...))

	// the pixel data: the frames' bits one after the other, first pixel in the lowest bit,
	// without padding between frames, the whole padded to an even length
	nbytes := (int64(len(frames))*int64(plane) + 7) / 8
	nbytes += nbytes % 2
	if nbytes > math.MaxUint32-1 {
		return SegSummary{}, fmt.Errorf("segmentation of %d frames exceeds the 4 GB a DICOM element can hold", len(frames))
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	head := appendFile(nil, segStorage, sopInstance, d)
	head = binary.LittleEndian.AppendUint16(head, 0x7FE0)
	head = binary.LittleEndian.AppendUint16(head, 0x0010)
	head = append(head, 'O', 'B', 0, 0)
	head = binary.LittleEndian.AppendUint32(head, uint32(nbytes))
	if _, err := bw.Write(head); err != nil {
		return SegSummary{}, err
	}
	var acc byte
	var nbit uint
	written := int64(0)
	for _, f := range frames {
		v := segs[f.seg-1].Value
		for _, l := range labels[f.k*plane : (f.k+1)*plane] {
			if l == v {
				acc |= 1 << nbit
			}
			if nbit++; nbit == 8 {
				bw.WriteByte(acc)
				acc, nbit, written = 0, 0, written+1
			}
		}
	}
	if nbit > 0 {
		bw.WriteByte(acc)
		written++
	}
	for ; written < nbytes; written++ {
		bw.WriteByte(0)
	}
	if err := bw.Flush(); err != nil {
		return SegSummary{}, err
	}
	return SegSummary{Segments: len(segs), Frames: len(frames), Bytes: int64(len(head)) + nbytes, Notes: notes}, nil
}

// codeItem is a Code Sequence Macro item.
func codeItem(c Code) dataset {
	return dataset{text(0x00080100, "SH", c.Value), text(0x00080102, "SH", c.Scheme), text(0x00080104, "LO", c.Meaning)}
}

// sliceStep is the distance between consecutive slices.
func (s *Series) sliceStep() float64 {
	n := len(s.slices)
	a, b := s.slices[0].h.position, s.slices[n-1].h.position
	return norm([]float64{b[0] - a[0], b[1] - a[1], b[2] - a[2]}) / float64(n-1)
}

// ErrNoStructures: a label map of background only has no segment, and a segmentation needs one.
var ErrNoStructures = errors.New("no structure in the label map: a DICOM Segmentation needs at least one")

// referable reports whether the segmentation can name the series' images, or why not.
func (s *Series) referable() (bool, string) {
	switch {
	case s.UID == "":
		return false, "the series has no Series Instance UID"
	case str(s.slices[0].h.copied[0x0020000D]) == "":
		return false, "the series has no Study Instance UID"
	}
	for _, sl := range s.slices {
		if sl.h.sopClass == "" || sl.h.sopInstance == "" {
			return false, fmt.Sprintf("%s has no SOP Instance UID", sl.src.Name)
		}
	}
	return true, ""
}

// derivedUID makes the UID the series lacks for tag from what identifies its images (their
// SOP Instance UIDs and positions): a name-based (version 5) UUID under 2.25, so that every
// segmentation of one anonymised series shares its study and frame of reference.
func (s *Series) derivedUID(tag uint32) string {
	h := sha1.New()
	h.Write([]byte(implementationUID))
	fmt.Fprintf(h, "|%08X", tag)
	for _, sl := range s.slices {
		fmt.Fprintf(h, "|%s|%v", sl.h.sopInstance, sl.h.position)
	}
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0F | 0x50
	u[8] = u[8]&0x3F | 0x80
	return "2.25." + new(big.Int).SetBytes(u[:]).String()
}

// randomUID is a UID under the 2.25 root: the decimal form of a random (version 4) UUID.
func randomUID() string {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	u[6] = u[6]&0x0F | 0x40
	u[8] = u[8]&0x3F | 0x80
	return "2.25." + new(big.Int).SetBytes(u[:]).String()
}

// cieLab converts an sRGB colour to DICOM's Recommended Display CIELab Value: CIELab in the
// ICC profile connection space (D50 white, PS3.3 C.10.7.1.1), L* from 0 to 100 and a*, b* from
// −128 to 127, each scaled to 0..65535.
func cieLab(c [3]uint8) []int {
	lin := func(v uint8) float64 {
		x := float64(v) / 255
		if x <= 0.04045 {
			return x / 12.92
		}
		return math.Pow((x+0.055)/1.055, 2.4)
	}
	r, g, b := lin(c[0]), lin(c[1]), lin(c[2])
	// sRGB to XYZ adapted to D50 (Bradford; the matrix of the ICC's sRGB profile), relative
	// to the D50 white
	x := (0.4360747*r + 0.3850649*g + 0.1430804*b) / 0.9642
	y := 0.2225045*r + 0.7168786*g + 0.0606169*b
	z := (0.0139322*r + 0.0971045*g + 0.7141733*b) / 0.8249
	f := func(t float64) float64 {
		if t > 216.0/24389 {
			return math.Cbrt(t)
		}
		return (24389.0/27*t + 16) / 116
	}
	fx, fy, fz := f(x), f(y), f(z)
	l, a, bb := 116*fy-16, 500*(fx-fy), 200*(fy-fz)
	scale := func(v, lo, hi float64) int {
		return int(math.Round(math.Max(0, math.Min(65535, (v-lo)/(hi-lo)*65535))))
	}
	return []int{scale(l, 0, 100), scale(a, -128, 127), scale(bb, -128, 127)}
}
