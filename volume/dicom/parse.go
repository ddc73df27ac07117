// Package dicom reads a CT series of DICOM files into a volume.Volume as MONAI's
// PydicomReader does for the wholeBody_ct_segmentation bundle (LoadImage on a folder): one
// float32 array indexed (column, row, slice), slices in InstanceNumber order, HU =
// stored value × RescaleSlope + RescaleIntercept, and the RAS affine built from
// ImageOrientationPatient, PixelSpacing and the first and last ImagePositionPatient
// (shared/golden/pipeline/dicom_series.json records what MONAI gives for the shared series).
//
// DICOM files are untrusted input. The parser walks the file's bytes in place, checks every
// length against what is left before using it, and copies nothing but the few values it
// keeps, so a hostile length can neither allocate nor read out of bounds.
package dicom

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Transfer syntaxes ctseg decodes. Others are named in the error (see syntaxNames).
const (
	implicitLE     = "1.2.840.10008.1.2"
	explicitLE     = "1.2.840.10008.1.2.1"
	explicitBE     = "1.2.840.10008.1.2.2"
	deflatedLE     = "1.2.840.10008.1.2.1.99"
	jpegLossless   = "1.2.840.10008.1.2.4.57"
	jpegSV1        = "1.2.840.10008.1.2.4.70"
	jpegLSLossless = "1.2.840.10008.1.2.4.80"
	jpegLSNear     = "1.2.840.10008.1.2.4.81"
	j2kLossless    = "1.2.840.10008.1.2.4.90"
	j2kAny         = "1.2.840.10008.1.2.4.91"
	htj2kLossless  = "1.2.840.10008.1.2.4.201" // High-Throughput JPEG 2000 (Part 15)
	htj2kRPCL      = "1.2.840.10008.1.2.4.202"
	htj2kAny       = "1.2.840.10008.1.2.4.203"
	rleLossless    = "1.2.840.10008.1.2.5"
	maxNesting     = 32 // sequences nested deeper than this are refused (a hostile file could recurse)
	undefinedLen   = 0xFFFFFFFF
)

var syntaxNames = map[string]string{
	explicitBE:               "Explicit VR Big Endian",
	deflatedLE:               "Deflated Explicit VR Little Endian",
	"1.2.840.10008.1.2.4.50": "JPEG Baseline",
	"1.2.840.10008.1.2.4.51": "JPEG Extended",
	"1.2.840.10008.1.2.4.57": "JPEG Lossless",
	"1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
	"1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
	"1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
}

// errNotDICOM marks a file without the Part 10 preamble: skipped when reading a folder.
var errNotDICOM = errors.New("not a DICOM file (no DICM marker at byte 128)")

// header is what ctseg keeps of one DICOM file: the series and geometry attributes, and where
// the pixel data lies in the file's bytes.
type header struct {
	syntax         string
	modality       string
	seriesUID      string
	seriesDesc     string
	sopClass       string
	sopInstance    string
	copied         map[uint32][]byte // patient, study and frame of reference attributes (copiedTags)
	instance       int
	hasInstance    bool
	position       []float64 // ImagePositionPatient (LPS mm)
	orientation    []float64 // ImageOrientationPatient: row cosine, column cosine
	pixelSpacing   []float64 // row spacing (between rows), column spacing (between columns)
	samples        int
	photometric    string
	frames         int
	rows, cols     int
	bitsAllocated  int
	bitsStored     int
	highBit        int
	signed         bool
	slope, inter   float64
	pixels         []byte   // native pixel data (defined length)
	fragments      [][]byte // encapsulated pixel data, without the basic offset table
	hasPixels      bool
	hasBitsStored  bool
	hasHighBit     bool
	hasSamples     bool
	hasPixelRepr   bool
	hasPhotometric bool
	unsupported    error // a transfer syntax whose pixel data cannot be decoded
	encapsulated   bool  // pixel data in fragments (compressed)
	payload        int64 // bytes of pixel data (kept when the bytes are dropped after a scan)
}

// reader walks a byte slice; every read checks the remaining length first.
type reader struct {
	b        []byte
	off      int
	implicit bool
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) take(n int) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, fmt.Errorf("truncated at byte %d: an element needs %d bytes, %d left", r.off, n, r.left())
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s, nil
}

func (r *reader) u16() (uint16, error) {
	s, err := r.take(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

func (r *reader) u32() (uint32, error) {
	s, err := r.take(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

// element is one data element's header; value is the element's bytes (nil for undefined length).
type element struct {
	tag       uint32 // group<<16 | element
	vr        string
	undefined bool
	value     []byte
}

// longVR are the explicit VRs with a 2-byte reserved field and a 4-byte length.
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// next reads one element header and, for defined lengths, its value.
func (r *reader) next() (element, error) {
	var e element
	g, err := r.u16()
	if err != nil {
		return e, err
	}
	el, err := r.u16()
	if err != nil {
		return e, err
	}
	e.tag = uint32(g)<<16 | uint32(el)
	var n uint32
	// Item and delimiter tags have no VR in either encoding.
	if r.implicit || g == 0xFFFE {
		if n, err = r.u32(); err != nil {
			return e, err
		}
	} else {
		vr, err := r.take(2)
		if err != nil {
			return e, err
		}
		e.vr = string(vr)
		if longVR(e.vr) {
			if _, err := r.take(2); err != nil {
				return e, err
			}
			if n, err = r.u32(); err != nil {
				return e, err
			}
		} else {
			v, err := r.u16()
			if err != nil {
				return e, err
			}
			n = uint32(v)
		}
	}
	if n == undefinedLen {
		e.undefined = true
		return e, nil
	}
	if uint64(n) > uint64(r.left()) {
		return e, fmt.Errorf("element (%04X,%04X) claims %d bytes at byte %d, only %d left", e.tag>>16, e.tag&0xFFFF, n, r.off, r.left())
	}
	e.value, _ = r.take(int(n))
	return e, nil
}

const (
	tagItem          = 0xFFFEE000
	tagItemDelim     = 0xFFFEE00D
	tagSequenceDelim = 0xFFFEE0DD
	tagPixelData     = 0x7FE00010
)

// skipUndefined skips the items of an undefined-length sequence up to its delimiter. Item
// contents are datasets; those of an undefined-length UN are implicit VR (PS3.5 6.2.2).
func (r *reader) skipUndefined(depth int, implicitItems bool) error {
	if depth > maxNesting {
		return fmt.Errorf("sequences nested more than %d deep", maxNesting)
	}
	for {
		e, err := r.next()
		if err != nil {
			return err
		}
		switch e.tag {
		case tagSequenceDelim:
			return nil
		case tagItem:
			if !e.undefined {
				continue // a defined-length item: its bytes are already skipped
			}
			saved := r.implicit
			r.implicit = r.implicit || implicitItems
			err := r.skipDataset(depth+1, tagItemDelim)
			r.implicit = saved
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected element (%04X,%04X) in a sequence at byte %d", e.tag>>16, e.tag&0xFFFF, r.off)
		}
	}
}

// skipDataset skips elements up to the delimiter tag (an item delimiter inside an item).
func (r *reader) skipDataset(depth int, delim uint32) error {
	for {
		e, err := r.next()
		if err != nil {
			return err
		}
		if e.tag == delim {
			return nil
		}
		if e.undefined {
			if err := r.skipUndefined(depth, e.vr == "UN"); err != nil {
				return err
			}
		}
	}
}

// fragments reads encapsulated pixel data (PS3.5 A.4): items up to the sequence delimiter,
// the first being the basic offset table.
func (r *reader) fragments() ([][]byte, error) {
	var out [][]byte
	for first := true; ; first = false {
		e, err := r.next()
		if err != nil {
			return nil, err
		}
		switch {
		case e.tag == tagSequenceDelim:
			if first {
				return nil, fmt.Errorf("encapsulated pixel data without a basic offset table item")
			}
			return out, nil
		case e.tag != tagItem || e.undefined:
			return nil, fmt.Errorf("malformed encapsulated pixel data at byte %d", r.off)
		case !first:
			out = append(out, e.value)
		}
	}
}

// IsDICOM reports whether b starts like a DICOM Part 10 file (the DICM marker at byte 128).
func IsDICOM(b []byte) bool { return len(b) >= 132 && string(b[128:132]) == "DICM" }

// parse reads a DICOM Part 10 file held in memory. It stops at the pixel data.
func parse(b []byte) (*header, error) {
	if !IsDICOM(b) {
		return nil, errNotDICOM
	}
	h := &header{slope: 1, samples: 1, frames: 1}
	r := &reader{b: b, off: 132}
	// File meta information: explicit VR little endian, group 0002 only.
	for r.left() >= 4 && binary.LittleEndian.Uint16(r.b[r.off:]) == 0x0002 {
		e, err := r.next()
		if err != nil {
			return nil, fmt.Errorf("file meta information: %w", err)
		}
		if e.undefined {
			return nil, fmt.Errorf("file meta information: element (%04X,%04X) of undefined length", e.tag>>16, e.tag&0xFFFF)
		}
		switch e.tag {
		case 0x00020010:
			h.syntax = str(e.value)
		case 0x00020002:
			h.sopClass = str(e.value) // the dataset's own, when it has one, replaces these
		case 0x00020003:
			h.sopInstance = str(e.value)
		}
	}
	switch h.syntax {
	case "":
		return nil, fmt.Errorf("no transfer syntax in the file meta information")
	case implicitLE:
		r.implicit = true
	case explicitLE, jpegLossless, jpegSV1, jpegLSLossless, jpegLSNear, j2kLossless, j2kAny, htj2kLossless, htj2kRPCL, htj2kAny, rleLossless:
	default:
		name := syntaxNames[h.syntax]
		if name == "" {
			name = "unknown"
		}
		h.unsupported = fmt.Errorf("transfer syntax %s (%s) is not supported: convert the series to uncompressed (e.g. gdcmconv --raw)", h.syntax, name)
		// Every other syntax but two encodes its dataset as explicit VR little endian, so the
		// file can still be placed in its series: it is refused only if that series is read
		// (a dose report in JPEG Baseline must not stop the CT beside it).
		if h.syntax == explicitBE || h.syntax == deflatedLE {
			return nil, h.unsupported
		}
	}
	for r.left() > 0 {
		e, err := r.next()
		if err != nil {
			return nil, err
		}
		if e.tag == tagPixelData {
			h.hasPixels = true
			if e.undefined {
				if h.fragments, err = r.fragments(); err != nil {
					return nil, err
				}
				h.encapsulated = true
				for _, f := range h.fragments {
					h.payload += int64(len(f))
				}
			} else {
				h.pixels, h.payload = e.value, int64(len(e.value))
			}
			return h, nil
		}
		if e.undefined {
			if err := r.skipUndefined(0, e.vr == "UN"); err != nil {
				return nil, err
			}
			continue
		}
		if err := h.set(e.tag, e.value); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// set keeps the attributes ctseg needs. Numeric strings (IS, DS) are parsed here so that a
// malformed one is reported with its tag.
func (h *header) set(tag uint32, v []byte) error {
	var err error
	if vr, ok := copiedTags[tag]; ok {
		// A copy, not a view (the file's bytes are dropped after the scan), padded to the even
		// length a malformed file may lack. A value its VR does not allow (too long, a UID that
		// is not one) is dropped: written into a segmentation it would make that invalid, and
		// kept for every file of a folder it would hold memory a header merely claims.
		if validValue(vr, str(v)) {
			if h.copied == nil {
				h.copied = map[uint32][]byte{}
			}
			h.copied[tag] = text(tag, vr, str(v)).val
		}
		return nil
	}
	switch tag {
	case 0x00080016:
		if str(v) != "" { // anonymisers may empty these and keep the file meta's copies
			h.sopClass = str(v)
		}
	case 0x00080018:
		if str(v) != "" {
			h.sopInstance = str(v)
		}
	case 0x00080060:
		h.modality = str(v)
	case 0x0008103E:
		h.seriesDesc = str(v)
	case 0x0020000E:
		h.seriesUID = str(v)
	case 0x00200013:
		// An IS value; "1.0" is accepted as pydicom does. A malformed one leaves the slice
		// without a number (ordered by position then), it does not fail the file.
		if f, perr := strconv.ParseFloat(str(v), 64); perr == nil && f == math.Trunc(f) && math.Abs(f) < 1<<31 {
			h.instance, h.hasInstance = int(f), true
		}
	case 0x00200032:
		h.position, err = decimals(v, 3)
	case 0x00200037:
		h.orientation, err = decimals(v, 6)
	case 0x00280030:
		h.pixelSpacing, err = decimals(v, 2)
	case 0x00280008:
		if s := str(v); s != "" {
			h.frames, err = strconv.Atoi(s)
		}
	case 0x00281052:
		var d []float64
		if d, err = decimals(v, 1); err == nil {
			h.inter = d[0]
		}
	case 0x00281053:
		var d []float64
		if d, err = decimals(v, 1); err == nil {
			h.slope = d[0]
		}
	case 0x00280004:
		h.photometric, h.hasPhotometric = str(v), true
	case 0x00280002:
		h.samples, h.hasSamples, err = us(v)
	case 0x00280010:
		h.rows, _, err = us(v)
	case 0x00280011:
		h.cols, _, err = us(v)
	case 0x00280100:
		h.bitsAllocated, _, err = us(v)
	case 0x00280101:
		h.bitsStored, h.hasBitsStored, err = us(v)
	case 0x00280102:
		h.highBit, h.hasHighBit, err = us(v)
	case 0x00280103:
		var p int
		p, h.hasPixelRepr, err = us(v)
		h.signed = p == 1
	}
	if err != nil {
		return fmt.Errorf("attribute (%04X,%04X): %w", tag>>16, tag&0xFFFF, err)
	}
	return nil
}

// validValue reports whether s is a valid value of a string VR among copiedTags (PS3.5 6.2):
// within the VR's length, dates of 8 digits, times of digits and a point, code strings of
// capitals, digits, space and underscore, UIDs of digits and dots. Each backslash-separated
// value is checked. A UID is kept even with a leading zero in a component: it must still match
// the one the PACS holds.
func validValue(vr, s string) bool {
	if len(s) > 1024 {
		return false
	}
	for _, part := range strings.Split(s, `\`) {
		var limit int
		var chars string
		switch vr {
		case "CS":
			limit, chars = 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _"
		case "DA":
			if part != "" && len(part) != 8 {
				return false
			}
			limit, chars = 8, "0123456789"
		case "TM":
			limit, chars = 16, "0123456789."
		case "SH":
			limit = 16
		case "LO":
			limit = 64
		case "PN":
			limit = 3*64 + 2
		case "UI":
			limit, chars = 64, "0123456789."
		}
		if len(part) > limit || (chars != "" && strings.Trim(part, chars) != "") {
			return false
		}
	}
	return true
}

// str trims the space and NUL padding DICOM strings carry.
func str(v []byte) string { return strings.Trim(string(v), " \x00") }

// us reads an unsigned short (VR US, little endian).
func us(v []byte) (int, bool, error) {
	if len(v) < 2 {
		return 0, false, fmt.Errorf("expected 2 bytes, got %d", len(v))
	}
	return int(binary.LittleEndian.Uint16(v)), true, nil
}

// decimals parses a backslash-separated decimal string (VR DS) of exactly n values.
func decimals(v []byte, n int) ([]float64, error) {
	parts := strings.Split(str(v), `\`)
	if len(parts) != n {
		return nil, fmt.Errorf("expected %d values, got %q", n, str(v))
	}
	out := make([]float64, n)
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f != f || f > 1e300 || f < -1e300 {
			return nil, fmt.Errorf("bad decimal %q", p)
		}
		out[i] = f
	}
	return out, nil
}
