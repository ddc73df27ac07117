package dicom

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// testFile builds a DICOM Part 10 file byte by byte, so tests control every element.
type testFile struct {
	syntax   string
	implicit bool
	elems    []testElem
}

type testElem struct {
	tag uint32
	vr  string
	val []byte
	raw []byte // written as is after the tag (for undefined lengths and hostile headers)
}

func (f *testFile) add(tag uint32, vr string, val []byte) *testFile {
	f.elems = append(f.elems, testElem{tag: tag, vr: vr, val: val})
	return f
}

func (f *testFile) str(tag uint32, vr, s string) *testFile {
	return f.add(tag, vr, text(tag, vr, s).val)
}

func (f *testFile) us(tag uint32, v int) *testFile {
	return f.add(tag, "US", binary.LittleEndian.AppendUint16(nil, uint16(v)))
}

func (f *testFile) ds(tag uint32, vals ...float64) *testFile {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fmt.Sprint(v)
	}
	return f.str(tag, "DS", strings.Join(parts, `\`))
}

// bytes encodes the file: preamble, meta group (explicit VR LE), then the dataset.
func (f *testFile) bytes() []byte {
	b := make([]byte, 128, 4096)
	b = append(b, "DICM"...)
	syn := f.syntax
	if len(syn)%2 == 1 {
		syn += "\x00"
	}
	b = appendElem(b, false, testElem{tag: 0x00020001, vr: "OB", val: []byte{0, 1}})
	b = appendElem(b, false, testElem{tag: 0x00020002, vr: "UI", val: []byte("1.2.840.10008.5.1.4.1.1.2\x00")})
	b = appendElem(b, false, testElem{tag: 0x00020010, vr: "UI", val: []byte(syn)})
	for _, e := range f.elems {
		b = appendElem(b, f.implicit, e)
	}
	return b
}

// appendElem encodes e as it is: odd lengths included, as malformed files have them.
func appendElem(b []byte, implicit bool, e testElem) []byte {
	if e.raw == nil {
		return append(appendHeader(b, implicit, e.tag, e.vr, len(e.val)), e.val...)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(e.tag>>16))
	b = binary.LittleEndian.AppendUint16(b, uint16(e.tag))
	return append(b, e.raw...)
}

// ctSlice describes one synthetic CT image.
type ctSlice struct {
	uid, modality string
	instance      int // 0: no InstanceNumber
	pos           [3]float64
	orient        [6]float64
	spacing       [2]float64 // row spacing, column spacing
	rows, cols    int
	bitsStored    int // of 16 allocated
	signed        bool
	slope, inter  float64
	stored        []int // stored values, column fastest
}

func (c ctSlice) file(syntax string) *testFile {
	f := &testFile{syntax: syntax, implicit: syntax == implicitLE}
	f.str(0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.2").str(0x00080018, "UI", fmt.Sprintf("%s.%d", c.uid, c.instance))
	f.str(0x00080060, "CS", c.modality).str(0x0020000E, "UI", c.uid)
	if c.instance != 0 {
		f.str(0x00200013, "IS", fmt.Sprint(c.instance))
	}
	f.ds(0x00200032, c.pos[:]...).ds(0x00200037, c.orient[:]...)
	f.us(0x00280002, 1).str(0x00280004, "CS", "MONOCHROME2").us(0x00280010, c.rows).us(0x00280011, c.cols)
	f.ds(0x00280030, c.spacing[:]...).us(0x00280100, 16).us(0x00280101, c.bitsStored).us(0x00280102, c.bitsStored-1)
	repr := 0
	if c.signed {
		repr = 1
	}
	f.us(0x00280103, repr).ds(0x00281052, c.inter).ds(0x00281053, c.slope)
	words := make([]byte, 0, 2*len(c.stored))
	for _, v := range c.stored {
		words = binary.LittleEndian.AppendUint16(words, uint16(v)&(1<<c.bitsStored-1))
	}
	switch syntax {
	case rleLossless:
		f.elems = append(f.elems, testElem{tag: tagPixelData, raw: encapsulate(rle16(words))})
	default:
		f.add(tagPixelData, "OW", words)
	}
	return f
}

// encapsulate wraps one frame as encapsulated pixel data: OB, undefined length, an empty basic
// offset table item, the frame as one fragment, the sequence delimiter.
func encapsulate(frame []byte) []byte {
	b := append([]byte("OB"), 0, 0)
	b = binary.LittleEndian.AppendUint32(b, undefinedLen)
	b = appendItem(b, nil)
	b = appendItem(b, frame)
	b = binary.LittleEndian.AppendUint16(b, 0xFFFE)
	b = binary.LittleEndian.AppendUint16(b, 0xE0DD)
	return binary.LittleEndian.AppendUint32(b, 0)
}

func appendItem(b, val []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, 0xFFFE)
	b = binary.LittleEndian.AppendUint16(b, 0xE000)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(val)))
	return append(b, val...)
}

// rle16 encodes 16-bit little-endian words as RLE Lossless: a high-byte and a low-byte
// segment, each PackBits with both literal and repeat runs.
func rle16(words []byte) []byte {
	n := len(words) / 2
	var segs [2][]byte
	for s := 0; s < 2; s++ {
		plane := make([]byte, n)
		for i := range plane {
			plane[i] = words[2*i+1-s]
		}
		segs[s] = packBits(plane)
	}
	h := make([]byte, 64)
	binary.LittleEndian.PutUint32(h, 2)
	binary.LittleEndian.PutUint32(h[4:], 64)
	binary.LittleEndian.PutUint32(h[8:], uint32(64+len(segs[0])))
	out := append(h, segs[0]...)
	out = append(out, segs[1]...)
	if len(out)%2 == 1 {
		out = append(out, 0)
	}
	return out
}

func packBits(p []byte) []byte {
	var out []byte
	for i := 0; i < len(p); {
		j := i
		for j < len(p) && j-i < 128 && p[j] == p[i] {
			j++
		}
		if j-i >= 2 {
			out = append(out, byte(int8(1-(j-i))), p[i])
			i = j
			continue
		}
		j = i + 1
		for j < len(p) && j-i < 128 && (j+1 >= len(p) || p[j] != p[j+1]) {
			j++
		}
		out = append(out, byte(j-i-1))
		out = append(out, p[i:j]...)
		i = j
	}
	return out
}

// sources turns encoded files into in-memory sources.
func sources(files ...[]byte) []Source {
	srcs := make([]Source, len(files))
	for i, b := range files {
		srcs[i] = Source{Name: fmt.Sprintf("f%02d", i), Open: func() ([]byte, error) { return b, nil }}
	}
	return srcs
}
