package dicom

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// elem is one data element to encode: a value, or for VR SQ a sequence of items.
type elem struct {
	tag   uint32
	vr    string
	val   []byte
	items []dataset
}

// dataset is the elements of a dataset or of a sequence item, in any order: appendDataset
// writes them in ascending tag order, as the standard requires.
type dataset []elem

// Constructors for the value representations a writer needs.

// text is a string element; the value is padded to an even length (UIDs with NUL, other
// strings with a space).
func text(tag uint32, vr, s string) elem {
	if len(s)%2 == 1 {
		if vr == "UI" {
			s += "\x00"
		} else {
			s += " "
		}
	}
	return elem{tag: tag, vr: vr, val: []byte(s)}
}

// ushort is a US element with one or more values.
func ushort(tag uint32, vs ...int) elem {
	b := make([]byte, 0, 2*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	return elem{tag: tag, vr: "US", val: b}
}

// ulong is a UL element.
func ulong(tag uint32, v uint32) elem {
	return elem{tag: tag, vr: "UL", val: binary.LittleEndian.AppendUint32(nil, v)}
}

// attrTag is an AT element: the value is a tag (group, then element).
func attrTag(tag, v uint32) elem {
	b := binary.LittleEndian.AppendUint16(nil, uint16(v>>16))
	return elem{tag: tag, vr: "AT", val: binary.LittleEndian.AppendUint16(b, uint16(v))}
}

// decimal is a DS element with one or more values.
func decimal(tag uint32, vs ...float64) elem {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = formatDS(v)
	}
	return text(tag, "DS", strings.Join(parts, `\`))
}

// integer is an IS element.
func integer(tag uint32, v int) elem { return text(tag, "IS", strconv.Itoa(v)) }

// seq is a sequence (VR SQ) of items.
func seq(tag uint32, items ...dataset) elem { return elem{tag: tag, vr: "SQ", items: items} }

// formatDS writes v as a decimal string of at most 16 characters (the VR's limit) with as many
// significant digits as fit: positions in millimetres keep sub-micrometre precision.
func formatDS(v float64) string {
	s := strconv.FormatFloat(v, 'g', -1, 64)
	for prec := 15; len(s) > 16; prec-- {
		s = strconv.FormatFloat(v, 'g', prec, 64)
	}
	return s
}

// appendDataset encodes d as explicit VR little endian, elements in ascending tag order, every
// length defined (sequences and items included, which every reader accepts).
func appendDataset(b []byte, d dataset) []byte {
	d = slices.Clone(d)
	slices.SortStableFunc(d, func(a, b elem) int { return cmp.Compare(a.tag, b.tag) })
	for i := 1; i < len(d); i++ {
		if d[i].tag == d[i-1].tag {
			panic(fmt.Sprintf("dicom: element (%04X,%04X) twice in one dataset", d[i].tag>>16, d[i].tag&0xFFFF)) // a writer bug
		}
	}
	for _, e := range d {
		b = appendElement(b, false, e)
	}
	return b
}

// appendElement encodes one element; implicit drops the VR (implicit VR little endian).
func appendElement(b []byte, implicit bool, e elem) []byte {
	val := e.val
	if e.vr == "SQ" {
		val = nil
		for _, it := range e.items {
			body := appendDataset(nil, it)
			val = binary.LittleEndian.AppendUint16(val, 0xFFFE)
			val = binary.LittleEndian.AppendUint16(val, 0xE000)
			val = binary.LittleEndian.AppendUint32(val, uint32(len(body)))
			val = append(val, body...)
		}
	}
	if len(val)%2 == 1 {
		panic(fmt.Sprintf("dicom: element (%04X,%04X) has an odd length %d", e.tag>>16, e.tag&0xFFFF, len(val))) // a writer bug
	}
	return append(appendHeader(b, implicit, e.tag, e.vr, len(val)), val...)
}

// appendHeader encodes an element's tag, VR (unless implicit) and length n.
func appendHeader(b []byte, implicit bool, tag uint32, vr string, n int) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(tag>>16))
	b = binary.LittleEndian.AppendUint16(b, uint16(tag))
	switch {
	case implicit:
		return binary.LittleEndian.AppendUint32(b, uint32(n))
	case longVR(vr):
		b = append(b, vr...)
		b = append(b, 0, 0)
		return binary.LittleEndian.AppendUint32(b, uint32(n))
	default:
		if n > 0xFFFF {
			panic(fmt.Sprintf("dicom: element (%04X,%04X) of VR %s cannot hold %d bytes", tag>>16, tag&0xFFFF, vr, n)) // a writer bug
		}
		b = append(b, vr...)
		return binary.LittleEndian.AppendUint16(b, uint16(n))
	}
}

// appendFile encodes a Part 10 file: the preamble, the file meta information (group 0002, with
// its group length) and the dataset, explicit VR little endian.
func appendFile(b []byte, sopClass, sopInstance string, d dataset) []byte {
	meta := appendDataset(nil, dataset{
		{tag: 0x00020001, vr: "OB", val: []byte{0, 1}},
		text(0x00020002, "UI", sopClass),
		text(0x00020003, "UI", sopInstance),
		text(0x00020010, "UI", explicitLE),
		text(0x00020012, "UI", implementationUID),
		text(0x00020013, "SH", implementationName),
	})
	b = append(b, make([]byte, 128)...)
	b = append(b, "DICM"...)
	b = appendElement(b, false, ulong(0x00020000, uint32(len(meta))))
	b = append(b, meta...)
	return appendDataset(b, d)
}
