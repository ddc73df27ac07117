package dicom

import (
	"encoding/binary"
	"fmt"
)

// JPEG-LS (ITU-T T.87), the single-component case DICOM uses (transfer syntaxes
// 1.2.840.10008.1.2.4.80 lossless and .81 near-lossless). No pure-Go decoder is on the module
// proxy. This one follows T.87 annex A (context modelling, regular and run modes, limited-length
// Golomb codes); the tests check it against files DCMTK's dcmcjpls encoded.

func jlsErr(format string, a ...any) error {
	return fmt.Errorf("JPEG-LS: "+format, a...)
}

// jlsParams are a scan's coding parameters (T.87 A.2.1 and C.2.4.1).
type jlsParams struct {
	maxval, near, t1, t2, t3, reset int
	rng, qbpp, limit                int
}

// defaults fills the parameters left at 0 by the frame and an LSE segment (T.87 C.2.4.1.1).
func (p *jlsParams) defaults(precision int) {
	if p.maxval == 0 {
		p.maxval = 1<<precision - 1
	}
	clamp := func(i, j int) int {
		if i > p.maxval || i < j {
			return j
		}
		return i
	}
	if p.maxval >= 128 {
		f := (min(p.maxval, 4095) + 128) / 256
		if p.t1 == 0 {
			p.t1 = clamp(f*(3-2)+2+3*p.near, p.near+1)
		}
		if p.t2 == 0 {
			p.t2 = clamp(f*(7-3)+3+5*p.near, p.t1)
		}
		if p.t3 == 0 {
			p.t3 = clamp(f*(21-4)+4+7*p.near, p.t2)
		}
	} else {
		f := 256 / (p.maxval + 1)
		if p.t1 == 0 {
			p.t1 = clamp(max(2, 3/f+3*p.near), p.near+1)
		}
		if p.t2 == 0 {
			p.t2 = clamp(max(3, 7/f+5*p.near), p.t1)
		}
		if p.t3 == 0 {
			p.t3 = clamp(max(4, 21/f+7*p.near), p.t2)
		}
	}
	if p.reset == 0 {
		p.reset = 64
	}
	p.rng = (p.maxval+2*p.near)/(2*p.near+1) + 1
	p.qbpp = bitLen(p.rng - 1)
	bpp := max(2, bitLen(p.maxval))
	p.limit = 2 * (bpp + max(8, bpp))
}

// bitLen is ceil(log2(x+1)): the bits needed for values 0..x.
func bitLen(x int) int {
	n := 0
	for x > 0 {
		n++
		x >>= 1
	}
	return n
}

// jlsBits reads a JPEG-LS bit stream: after a 0xFF byte the next byte carries 7 bits (its top
// bit is a stuffed 0); 0xFF followed by a byte with its top bit set is a marker, the end. Past
// the end it supplies zeros and counts them, as bitReader does.
type jlsBits struct {
	b       []byte
	off     int
	acc     uint64
	n       int
	prevFF  bool
	end     bool
	phantom int // zero bits supplied past the end
}

func (r *jlsBits) fill() {
	for r.n <= 56 {
		if !r.end && r.off < len(r.b) {
			c := r.b[r.off]
			if c == 0xFF && r.off+1 < len(r.b) && r.b[r.off+1]&0x80 != 0 { // a marker: the data ends
				r.end = true
				continue
			}
			if r.prevFF {
				r.acc |= uint64(c) << (64 - 7 - r.n)
				r.n += 7
			} else {
				r.acc |= uint64(c) << (64 - 8 - r.n)
				r.n += 8
			}
			r.prevFF = c == 0xFF
			r.off++
			continue
		}
		r.end = true
		r.phantom += 8
		r.n += 8
	}
}

func (r *jlsBits) read(k int) int {
	if k == 0 {
		return 0
	}
	if r.n < k {
		r.fill()
	}
	v := int(r.acc >> (64 - k))
	r.acc <<= k
	r.n -= k
	return v
}

// zeros counts 0 bits up to and including the next 1 (the unary part of a Golomb code).
func (r *jlsBits) zeros(max int) (int, error) {
	for q := 0; q <= max; q++ {
		if r.read(1) == 1 {
			return q, nil
		}
	}
	return 0, jlsErr("a code longer than its limit")
}

func (r *jlsBits) overrun() bool { return r.phantom > r.n }

// golomb decodes a limited-length Golomb code (T.87 A.5.3): unary q, then k bits, or after
// limit−qbpp−1 zeros an escape of qbpp bits holding the value − 1.
func (r *jlsBits) golomb(k, limit, qbpp int) (int, error) {
	q, err := r.zeros(limit - qbpp - 1)
	if err != nil {
		return 0, err
	}
	if q >= limit-qbpp-1 {
		return r.read(qbpp) + 1, nil
	}
	return q<<k | r.read(k), nil
}

// jlsContext holds one context's statistics (T.87 A.2.2): A sum of error magnitudes, B bias,
// C correction, N count, and for the two run-interruption contexts Nn (negative errors).
type jlsContext struct{ a, b, c, n, nn int }

// runJ is the order of the run-length codes (T.87 A.2.1, J).
var runJ = [32]int{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15}

// decodeJPEGLS decodes one frame of rows×cols samples, calling put with each in raster order.
func decodeJPEGLS(f []byte, rows, cols int, put func(int, int64)) error {
	var p jlsParams
	precision := 0
	return jpegSegments(f, jlsErr, func(m byte, seg, rest []byte) (bool, error) {
		switch m {
		case 0xF7: // SOF55: JPEG-LS frame
			if len(seg) < 9 {
				return true, jlsErr("short frame header")
			}
			precision = int(seg[0])
			y, x, nf := int(binary.BigEndian.Uint16(seg[1:])), int(binary.BigEndian.Uint16(seg[3:])), int(seg[5])
			if precision < 2 || precision > 16 {
				return true, jlsErr("sample precision %d", precision)
			}
			if nf != 1 {
				return true, jlsErr("%d components: a CT has 1", nf)
			}
			if y != rows || x != cols {
				return true, jlsErr("image is %dx%d, the DICOM header says %dx%d", x, y, cols, rows)
			}
		case 0xF8: // LSE: preset coding parameters (id 1); others (mapping tables) are refused
			if len(seg) < 11 || seg[0] != 1 {
				return true, jlsErr("LSE segment other than preset parameters")
			}
			p.maxval = int(binary.BigEndian.Uint16(seg[1:]))
			p.t1 = int(binary.BigEndian.Uint16(seg[3:]))
			p.t2 = int(binary.BigEndian.Uint16(seg[5:]))
			p.t3 = int(binary.BigEndian.Uint16(seg[7:]))
			p.reset = int(binary.BigEndian.Uint16(seg[9:]))
		case 0xDD: // DRI
			if len(seg) >= 2 && binary.BigEndian.Uint16(seg) != 0 {
				return true, jlsErr("restart intervals are not supported")
			}
		case 0xDA: // SOS
			if precision == 0 {
				return true, jlsErr("scan before the frame header")
			}
			if len(seg) < 6 || seg[0] != 1 {
				return true, jlsErr("scan of more than one component")
			}
			if seg[2] != 0 || seg[5]&15 != 0 {
				return true, jlsErr("mapping tables and point transforms are not supported")
			}
			p.near = int(seg[3])
			p.defaults(precision)
			if p.maxval >= 1<<precision || p.near > min(255, p.maxval/2) ||
				p.t1 < p.near+1 || p.t2 < p.t1 || p.t3 < p.t2 || p.t3 > p.maxval || p.reset < 3 {
				return true, jlsErr("coding parameters MAXVAL %d NEAR %d T1 %d T2 %d T3 %d RESET %d are not valid",
					p.maxval, p.near, p.t1, p.t2, p.t3, p.reset)
			}
			return true, scanJPEGLS(rest, rows, cols, &p, put)
		case 0xD9:
			return true, jlsErr("no scan before the end of the image")
		default:
			if m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC {
				return true, jlsErr("frame type 0xFF%02X is not JPEG-LS", m)
			}
		}
		return false, nil
	})
}

// scanJPEGLS undoes T.87's coding line by line. Lines carry one extra sample at each end: at
// the left the first sample of the line above (Ra of a line's first sample is the sample above
// it, and its Rc is the same edge value of the line before), at the right the line's last
// sample repeated (Rd at the right edge).
func scanJPEGLS(data []byte, rows, cols int, p *jlsParams, put func(int, int64)) error {
	r := &jlsBits{b: data}
	prev := make([]int, cols+2)
	cur := make([]int, cols+2)
	a0 := max(2, (p.rng+32)/64)
	var ctx [365]jlsContext
	for i := range ctx {
		ctx[i] = jlsContext{a: a0, n: 1}
	}
	run := [2]jlsContext{{a: a0, n: 1}, {a: a0, n: 1}}
	runIndex := 0
	step := 2*p.near + 1
	quant := func(d int) int {
		switch {
		case d <= -p.t3:
			return -4
		case d <= -p.t2:
			return -3
		case d <= -p.t1:
			return -2
		case d < -p.near:
			return -1
		case d <= p.near:
			return 0
		case d < p.t1:
			return 1
		case d < p.t2:
			return 2
		case d < p.t3:
			return 3
		}
		return 4
	}
	// reconstruct adds an error to a prediction, modulo the range, clamped to [0, MAXVAL].
	reconstruct := func(px, errval int) int {
		v := px + errval*step
		if v < -p.near {
			v += p.rng * step
		} else if v > p.maxval+p.near {
			v -= p.rng * step
		}
		return min(max(v, 0), p.maxval)
	}
	for y := 0; y < rows; y++ {
		cur[0] = prev[1]
		prev[cols+1] = prev[cols]
		for x := 1; x <= cols; {
			ra, rb, rc, rd := cur[x-1], prev[x], prev[x-1], prev[x+1]
			q1, q2, q3 := quant(rd-rb), quant(rb-rc), quant(rc-ra)
			if q1 == 0 && q2 == 0 && q3 == 0 {
				// Run mode (T.87 A.7): runs of Ra, coded by segments of 2^J[runIndex] samples.
				left := cols + 1 - x
				count := 0
				for count < left && r.read(1) == 1 {
					seg := min(1<<runJ[runIndex], left-count)
					count += seg
					if seg == 1<<runJ[runIndex] {
						runIndex = min(31, runIndex+1)
					}
				}
				if count < left {
					count += r.read(runJ[runIndex])
					if count > left {
						return jlsErr("a run overruns line %d", y+1)
					}
				}
				for i := 0; i < count; i++ {
					cur[x+i] = ra
				}
				x += count
				if count == left {
					continue
				}
				// The run-interruption sample.
				rb = prev[x]
				t, px, sign := 0, rb, 1
				if abs(ra-rb) <= p.near {
					t, px = 1, ra
				} else if rb < ra {
					sign = -1
				}
				c := &run[t]
				temp := c.a + (c.n>>1)*t
				k := 0
				for c.n<<k < temp && k < 24 {
					k++
				}
				em, err := r.golomb(k, p.limit-runJ[runIndex]-1, p.qbpp)
				if err != nil {
					return err
				}
				m := em + t
				mapped := m & 1
				e := (m + mapped) / 2
				if (k != 0 || 2*c.nn >= c.n) == (mapped == 1) {
					e = -e
				}
				if e < 0 {
					c.nn++
				}
				c.a += (em + 1 - t) >> 1
				if c.n == p.reset {
					c.a >>= 1
					c.n >>= 1
					c.nn >>= 1
				}
				c.n++
				cur[x] = reconstruct(px, sign*e)
				runIndex = max(0, runIndex-1)
				x++
				continue
			}
			// Regular mode (T.87 A.3 to A.6).
			sign := 1
			if q1 < 0 || (q1 == 0 && q2 < 0) || (q1 == 0 && q2 == 0 && q3 < 0) {
				sign, q1, q2, q3 = -1, -q1, -q2, -q3
			}
			c := &ctx[(q1*9+q2)*9+q3]
			var px int
			switch {
			case rc >= max(ra, rb):
				px = min(ra, rb)
			case rc <= min(ra, rb):
				px = max(ra, rb)
			default:
				px = ra + rb - rc
			}
			px = min(max(px+sign*c.c, 0), p.maxval)
			k := 0
			for c.n<<k < c.a && k < 24 {
				k++
			}
			m, err := r.golomb(k, p.limit, p.qbpp)
			if err != nil {
				return err
			}
			e := m >> 1
			if m&1 == 1 {
				e = -(m + 1) >> 1
			}
			if p.near == 0 && k == 0 && 2*c.b+c.n-1 < 0 {
				e = -e - 1
			}
			c.a += abs(e)
			c.b += e * step
			if c.n == p.reset {
				c.a >>= 1
				c.b >>= 1
				c.n >>= 1
			}
			c.n++
			if c.b+c.n <= 0 {
				c.b += c.n
				if c.b <= -c.n {
					c.b = -c.n + 1
				}
				if c.c > -128 {
					c.c--
				}
			} else if c.b > 0 {
				c.b -= c.n
				if c.b > 0 {
					c.b = 0
				}
				if c.c < 127 {
					c.c++
				}
			}
			cur[x] = reconstruct(px, sign*e)
			x++
		}
		if r.overrun() {
			return jlsErr("data ends in line %d of %d", y+1, rows)
		}
		for x := 1; x <= cols; x++ {
			put(y*cols+x-1, int64(cur[x]))
		}
		prev, cur = cur, prev
	}
	return nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
