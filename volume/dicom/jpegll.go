package dicom

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Lossless JPEG (ITU T.81 process 14, Huffman coded, SOF3): the compression most PACS use for
// CT. Go's image/jpeg decodes only the DCT processes, and no maintained pure-Go decoder of
// this one is on the module proxy, so this is a decoder of the single-component case DICOM
// uses (transfer syntaxes 1.2.840.10008.1.2.4.57 and .70). Annex H of T.81 is the reference;
// the tests check it against files encoded by DCMTK's dcmcjpeg.

// errJPEG wraps every malformed-stream error, so callers can say "corrupt" once.
var errJPEG = errors.New("lossless JPEG")

func jpegErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errJPEG}, a...)...)
}

// huffman is a decoding table built as in T.81 F.2.2.3 (MAXCODE, VALPTR, MINCODE).
type huffman struct {
	maxcode [18]int32 // maxcode[l]: largest code of length l, -1 if none
	valptr  [17]int32
	mincode [17]int32
	vals    []byte
}

func newHuffman(counts [16]byte, vals []byte) (*huffman, error) {
	h := &huffman{vals: vals}
	code, k := int32(0), int32(0)
	for l := 1; l <= 16; l++ {
		n := int32(counts[l-1])
		h.valptr[l], h.mincode[l] = k, code
		code += n
		k += n
		h.maxcode[l] = -1
		if n > 0 {
			h.maxcode[l] = code - 1
		}
		if code > 1<<l {
			return nil, jpegErr("Huffman table has more codes of length %d than fit", l)
		}
		code <<= 1
	}
	h.maxcode[17] = 1 << 30 // sentinel: a code longer than 16 bits is an error
	return h, nil
}

// bitReader reads the entropy-coded segment: 0xFF00 is a stuffed 0xFF; any other marker ends the
// data. Past the end it supplies zero bytes and counts them, so overrun can tell whether the
// decoder used bits the stream does not have (a truncated stream) rather than only looked ahead.
type bitReader struct {
	b       []byte
	off     int
	acc     uint32
	n       int
	marker  bool // a marker (or the end) was reached
	phantom int  // zero bytes supplied past it
}

func (r *bitReader) fill() {
	for r.n <= 24 {
		var c byte
		if r.off >= len(r.b) {
			r.marker = true
		}
		if !r.marker {
			c = r.b[r.off]
			if c == 0xFF {
				if r.off+1 < len(r.b) && r.b[r.off+1] == 0x00 {
					r.off += 2
				} else {
					r.marker, c = true, 0
				}
			} else {
				r.off++
			}
		}
		if r.marker {
			r.phantom++
		}
		r.acc |= uint32(c) << (24 - r.n)
		r.n += 8
	}
}

func (r *bitReader) read(n int) int32 {
	if n == 0 {
		return 0
	}
	if r.n < n {
		r.fill()
	}
	v := int32(r.acc >> (32 - n))
	r.acc <<= n
	r.n -= n
	return v
}

func (r *bitReader) decode(h *huffman) (int, error) {
	code := r.read(1)
	l := 1
	for code > h.maxcode[l] {
		l++
		if l > 16 {
			return 0, jpegErr("invalid Huffman code")
		}
		code = code<<1 | r.read(1)
	}
	i := h.valptr[l] + code - h.mincode[l]
	if int(i) >= len(h.vals) {
		return 0, jpegErr("invalid Huffman code")
	}
	return int(h.vals[i]), nil
}

// overrun reports whether decoding consumed bits past the end of the segment.
func (r *bitReader) overrun() bool { return r.phantom*8 > r.n }

// restart skips to the byte after the next RSTn marker, dropping the bits left in the buffer
// (the interval's last byte is padded with ones).
func (r *bitReader) restart() error {
	if r.overrun() {
		return jpegErr("a restart interval ends early")
	}
	r.acc, r.n, r.marker, r.phantom = 0, 0, false, 0
	for r.off+1 < len(r.b) {
		if r.b[r.off] == 0xFF && r.b[r.off+1] >= 0xD0 && r.b[r.off+1] <= 0xD7 {
			r.off += 2
			return nil
		}
		r.off++
	}
	return jpegErr("restart marker missing")
}

// decodeLosslessJPEG decodes one frame of rows×cols samples and calls put for each, in
// raster order, with the reconstructed value (before DICOM's bits-stored masking).
func decodeLosslessJPEG(f []byte, rows, cols int, put func(int, int64)) error {
	var tables [4]*huffman
	precision, restartInterval := 0, 0
	return jpegSegments(f, jpegErr, func(m byte, seg, rest []byte) (bool, error) {
		switch {
		case m == 0xC3: // SOF3: lossless, Huffman
			if len(seg) < 9 {
				return true, jpegErr("short frame header")
			}
			precision = int(seg[0])
			y, x, nf := int(binary.BigEndian.Uint16(seg[1:])), int(binary.BigEndian.Uint16(seg[3:])), int(seg[5])
			if precision < 2 || precision > 16 {
				return true, jpegErr("sample precision %d", precision)
			}
			if nf != 1 {
				return true, jpegErr("%d components: a CT has 1", nf)
			}
			if y != rows || x != cols {
				return true, jpegErr("image is %dx%d, the DICOM header says %dx%d", x, y, cols, rows)
			}
		case m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC:
			return true, jpegErr("frame type 0xFF%02X is not lossless Huffman JPEG (SOF3)", m)
		case m == 0xC4: // DHT: one or more tables
			for len(seg) > 0 {
				if len(seg) < 17 {
					return true, jpegErr("short Huffman table")
				}
				tc, th := seg[0]>>4, seg[0]&15
				var counts [16]byte
				copy(counts[:], seg[1:17])
				total := 0
				for _, c := range counts {
					total += int(c)
				}
				if tc != 0 || th > 3 || total > 256 || 17+total > len(seg) {
					return true, jpegErr("bad Huffman table")
				}
				h, err := newHuffman(counts, seg[17:17+total])
				if err != nil {
					return true, err
				}
				tables[th] = h
				seg = seg[17+total:]
			}
		case m == 0xDD: // DRI
			if len(seg) < 2 {
				return true, jpegErr("short restart interval")
			}
			restartInterval = int(binary.BigEndian.Uint16(seg))
		case m == 0xDA: // SOS: the scan follows
			if precision == 0 {
				return true, jpegErr("scan before the frame header")
			}
			if len(seg) < 6 || seg[0] != 1 {
				return true, jpegErr("scan of more than one component")
			}
			td := seg[2] >> 4
			sv, pt := int(seg[3]), int(seg[5]&15)
			if td > 3 || tables[td] == nil {
				return true, jpegErr("scan uses a Huffman table that was not defined")
			}
			if sv < 1 || sv > 7 || pt >= precision {
				return true, jpegErr("predictor %d, point transform %d", sv, pt)
			}
			return true, scanLossless(rest, rows, cols, precision, sv, pt, restartInterval, tables[td], put)
		case m == 0xD9:
			return true, jpegErr("no scan before the end of the image")
		}
		// APPn, COM, DQT and other segments carry nothing a lossless decoder needs.
		return false, nil
	})
}

// jpegSegments walks the marker segments of a JPEG or JPEG-LS stream from its start-of-image
// marker (T.81 B.1, T.87 C.1), checking each length against the bytes left. visit gets the
// marker, the segment's payload and the bytes after it, and returns true to stop (at the
// scan, whose coded data follows the segment). fail words the errors for the caller's codec.
func jpegSegments(f []byte, fail func(string, ...any) error, visit func(m byte, seg, rest []byte) (bool, error)) error {
	if len(f) < 2 || f[0] != 0xFF || f[1] != 0xD8 {
		return fail("no start-of-image marker")
	}
	for off := 2; ; {
		if off+4 > len(f) || f[off] != 0xFF {
			return fail("truncated or misplaced marker at byte %d", off)
		}
		m := f[off+1]
		if m == 0xFF { // fill byte
			off++
			continue
		}
		n := int(binary.BigEndian.Uint16(f[off+2:]))
		if n < 2 || off+2+n > len(f) {
			return fail("marker segment 0xFF%02X claims %d bytes, %d left", m, n, len(f)-off-2)
		}
		seg := f[off+4 : off+2+n]
		off += 2 + n
		if stop, err := visit(m, seg, f[off:]); stop || err != nil {
			return err
		}
	}
}

// scanLossless decodes the differences and undoes the prediction (T.81 H.1.2): the first
// sample of the image and of each restart interval is predicted by 2^(P−Pt−1), the rest of its
// line by the sample to the left, the first sample of each later line by the one above, and
// every other sample by the scan's predictor. Sums are modulo 2^16.
func scanLossless(data []byte, rows, cols, precision, sv, pt, ri int, h *huffman, put func(int, int64)) error {
	// In lossless mode a restart interval is a whole number of lines (T.81 H.2).
	if ri%cols != 0 {
		return jpegErr("restart interval %d is not a whole number of %d-sample lines", ri, cols)
	}
	r := &bitReader{b: data}
	prev := make([]int32, cols) // the line above
	cur := make([]int32, cols)
	initial := int32(1) << (precision - pt - 1)
	for y, i := 0, 0; y < rows; y++ {
		first := y == 0
		if ri > 0 && y > 0 && y*cols%ri == 0 {
			if err := r.restart(); err != nil {
				return err
			}
			first = true
		}
		for x := 0; x < cols; x, i = x+1, i+1 {
			var p int32
			switch {
			case x == 0 && first:
				p = initial
			case first:
				p = cur[x-1]
			case x == 0:
				p = prev[0]
			default:
				ra, rb, rc := cur[x-1], prev[x], prev[x-1]
				switch sv {
				case 1:
					p = ra
				case 2:
					p = rb
				case 3:
					p = rc
				case 4:
					p = ra + rb - rc
				case 5:
					p = ra + (rb-rc)>>1
				case 6:
					p = rb + (ra-rc)>>1
				case 7:
					p = (ra + rb) >> 1
				}
			}
			s, err := r.decode(h)
			if err != nil {
				return err
			}
			var d int32
			switch {
			case s == 16:
				d = 32768
			case s > 16:
				return jpegErr("difference category %d", s)
			default:
				d = r.read(s)
				if s > 0 && d < 1<<(s-1) {
					d -= 1<<s - 1
				}
			}
			v := (p + d) & 0xFFFF
			cur[x] = v
			put(i, int64(v)<<pt)
		}
		if r.overrun() {
			return jpegErr("data ends in line %d of %d", y+1, rows)
		}
		prev, cur = cur, prev
	}
	return nil
}
