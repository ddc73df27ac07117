package dicom

import (
	"encoding/binary"
	"math/bits"
	"math/rand"
	"strings"
	"testing"
)

// encodeLossless is a minimal lossless JPEG encoder (predictor 1, all 17 difference categories
// coded in 5 bits, restart markers every ri samples) for what DCMTK cannot be asked to write:
// restart intervals, and streams cut short. The decoder is checked against DCMTK's files in
// TestDCMTKEncodedSeries; this encoder is checked against the decoder without restarts there.
func encodeLossless(samples []uint16, rows, cols, precision, ri int) []byte {
	out := []byte{0xFF, 0xD8}
	seg := func(m byte, b []byte) {
		out = append(out, 0xFF, m)
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)+2))
		out = append(out, b...)
	}
	seg(0xC3, []byte{byte(precision), byte(rows >> 8), byte(rows), byte(cols >> 8), byte(cols), 1, 1, 0x11, 0})
	dht := []byte{0x00, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	for c := 0; c <= 16; c++ {
		dht = append(dht, byte(c))
	}
	seg(0xC4, dht)
	if ri > 0 {
		seg(0xDD, []byte{byte(ri >> 8), byte(ri)})
	}
	seg(0xDA, []byte{1, 1, 0x00, 1, 0, 0})
	var acc uint64
	n := 0
	emit := func(v uint32, l int) {
		acc = acc<<l | uint64(v)&(1<<l-1)
		n += l
		for n >= 8 {
			b := byte(acc >> (n - 8))
			out = append(out, b)
			if b == 0xFF {
				out = append(out, 0)
			}
			n -= 8
		}
	}
	flush := func() {
		if n > 0 {
			emit(0xFF, 8-n)
		}
	}
	rst := 0
	for i, v := range samples {
		x, y := i%cols, i/cols
		first := y == 0 || (ri > 0 && y*cols%ri == 0)
		if ri > 0 && i > 0 && i%ri == 0 {
			flush()
			out = append(out, 0xFF, 0xD0+byte(rst%8))
			rst++
		}
		var p int
		switch {
		case x == 0 && first:
			p = 1 << (precision - 1)
		case x == 0:
			p = int(samples[i-cols])
		default:
			p = int(samples[i-1])
		}
		d := (int(v) - p) & 0xFFFF
		if d > 32768 {
			d -= 65536
		}
		s := bits.Len(uint(max(d, -d)))
		emit(uint32(s), 5)
		if s > 0 && s < 16 {
			if d < 0 {
				d += 1<<s - 1
			}
			emit(uint32(d), s)
		}
	}
	flush()
	return append(out, 0xFF, 0xD9)
}

func TestLosslessJPEGRestartsAndTruncation(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	rows, cols := 12, 10
	samples := make([]uint16, rows*cols)
	for i := range samples {
		samples[i] = uint16(rng.Intn(1 << 16))
	}
	samples[3], samples[4] = 0, 0xFFFF // a jump of 2^16-1: the difference wraps
	for _, ri := range []int{0, cols, 3 * cols} {
		f := encodeLossless(samples, rows, cols, 16, ri)
		got := make([]uint16, len(samples))
		if err := decodeLosslessJPEG(f, rows, cols, func(i int, v int64) { got[i] = uint16(v) }); err != nil {
			t.Fatalf("restart interval %d: %v", ri, err)
		}
		for i := range got {
			if got[i] != samples[i] {
				t.Fatalf("restart interval %d: sample %d = %d, want %d", ri, i, got[i], samples[i])
			}
		}
		// Cut anywhere inside the scan: an error, never a panic or a silent success.
		sos := strings.Index(string(f), "\xff\xda") + 10
		for cut := sos; cut < len(f)-2; cut += 3 {
			if err := decodeLosslessJPEG(f[:cut], rows, cols, func(int, int64) {}); err == nil {
				t.Fatalf("restart interval %d: a stream cut at %d of %d bytes decoded", ri, cut, len(f))
			}
		}
	}
	f := encodeLossless(samples, rows, cols, 16, 0)
	for _, c := range []struct {
		rows, cols int
		want       string
	}{{rows + 1, cols, "the DICOM header says"}, {rows, cols + 1, "the DICOM header says"}} {
		if err := decodeLosslessJPEG(f, c.rows, c.cols, func(int, int64) {}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%dx%d: %v", c.cols, c.rows, err)
		}
	}
	if err := decodeLosslessJPEG(encodeLossless(samples, rows, cols, 16, 7), rows, cols, func(int, int64) {}); err == nil {
		t.Error("a restart interval that splits lines was accepted")
	}
}

func FuzzLosslessJPEG(f *testing.F) {
	samples := make([]uint16, 64)
	for i := range samples {
		samples[i] = uint16(i * 1000)
	}
	f.Add(encodeLossless(samples, 8, 8, 16, 0))
	f.Add(encodeLossless(samples, 8, 8, 16, 16))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeLosslessJPEG(b, 8, 8, func(int, int64) {})
	})
}

// BenchmarkLosslessJPEG decodes one 512×512 16-bit slice of CT-like values.
func BenchmarkLosslessJPEG(b *testing.B) {
	rng := rand.New(rand.NewSource(10))
	samples := make([]uint16, 512*512)
	for i := range samples {
		x, y := i%512, i/512
		samples[i] = uint16(1024 + (x*y)%900 + rng.Intn(30))
	}
	f := encodeLossless(samples, 512, 512, 16, 0)
	for b.Loop() {
		if err := decodeLosslessJPEG(f, 512, 512, func(int, int64) {}); err != nil {
			b.Fatal(err)
		}
	}
}
