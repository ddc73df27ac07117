package dicom

import (
	"bytes"
	"encoding/binary"
	"fmt"

	jpeg2000 "github.com/mrjoshuak/go-jpeg2000"
)

// checkPixelFormat refuses what decode cannot turn into HU: colour, multi-frame, and
// bit layouts outside what CT scanners write.
func (h *header) checkPixelFormat() error {
	switch {
	case h.unsupported != nil:
		return h.unsupported
	case !h.hasPixels:
		return fmt.Errorf("no pixel data")
	case h.frames != 1:
		return fmt.Errorf("%d frames in one file (enhanced multi-frame CT is not supported; export the series as single-frame images)", h.frames)
	case h.samples != 1:
		return fmt.Errorf("%d samples per pixel: a CT has 1", h.samples)
	case h.hasPhotometric && h.photometric != "MONOCHROME2" && h.photometric != "MONOCHROME1":
		return fmt.Errorf("photometric interpretation %s: a CT is MONOCHROME2", h.photometric)
	case h.rows <= 0 || h.cols <= 0:
		return fmt.Errorf("image size %dx%d", h.cols, h.rows)
	case h.bitsAllocated != 8 && h.bitsAllocated != 16 && h.bitsAllocated != 32:
		return fmt.Errorf("%d bits allocated per pixel: want 8, 16 or 32", h.bitsAllocated)
	}
	if !h.hasBitsStored {
		h.bitsStored = h.bitsAllocated
	}
	if !h.hasHighBit {
		h.highBit = h.bitsStored - 1
	}
	if h.bitsStored < 1 || h.bitsStored > h.bitsAllocated || h.highBit != h.bitsStored-1 {
		return fmt.Errorf("bits stored %d, high bit %d with %d bits allocated: want stored ≤ allocated and high bit = stored − 1",
			h.bitsStored, h.highBit, h.bitsAllocated)
	}
	if h.slope == 0 {
		return fmt.Errorf("rescale slope is 0")
	}
	return h.checkPayload()
}

// checkPayload refuses pixel data too short for the image the header claims, before anything
// of that size is allocated: native data must hold every pixel; RLE needs at least two bytes
// per 128 bytes of each segment; lossless JPEG at least one bit per sample. JPEG-LS and JPEG
// 2000 can code a flat image in almost nothing, so Series.Volume decodes one slice before it
// allocates the volume.
func (h *header) checkPayload() error {
	n := int64(h.rows) * int64(h.cols)
	bpp := int64(h.bitsAllocated / 8)
	have, need := h.payload, int64(0)
	if !h.encapsulated {
		need = n * bpp
	} else {
		switch h.syntax {
		case rleLossless:
			need = 64 + bpp*2*((n+127)/128)
		case jpegLossless, jpegSV1:
			need = n / 8
		}
	}
	if have < need {
		return fmt.Errorf("pixel data holds %d bytes, too few for a %dx%d image (at least %d)", have, h.cols, h.rows, need)
	}
	return nil
}

// decode writes the slice's HU values (stored value × slope + intercept) into out, rows×cols
// values with the column fastest.
func (h *header) decode(out []float32) error {
	n := h.rows * h.cols
	if len(out) != n {
		return fmt.Errorf("internal: %d values for a %dx%d slice", len(out), h.cols, h.rows)
	}
	// MONAI computes data.astype(np.float32) * slope + offset: float32 arithmetic (NumPy casts
	// the Python floats to float32), rounded after the product and after the sum. The explicit
	// conversions keep Go from fusing the two into one multiply-add.
	slope, inter := float32(h.slope), float32(h.inter)
	put := func(i int, v int64) { out[i] = float32(float32(v)*slope) + inter }
	switch h.syntax {
	case implicitLE, explicitLE:
		return h.decodeNative(n, put)
	case rleLossless:
		return h.decodeRLE(n, put)
	case jpegLossless, jpegSV1, jpegLSLossless, jpegLSNear:
		f, err := h.frame()
		if err != nil {
			return err
		}
		codec := decodeLosslessJPEG
		if h.syntax == jpegLSLossless || h.syntax == jpegLSNear {
			codec = decodeJPEGLS
		}
		// The decoded value is the stored bit pattern; masking and sign extension as for native data.
		return codec(f, h.rows, h.cols, func(i int, v int64) { put(i, h.stored(uint32(v))) })
	case j2kLossless, j2kAny, htj2kLossless, htj2kRPCL, htj2kAny:
		// one decoder for both: HTJ2K differs in the code-block coder only, which the
		// codestream's COD marker declares
		return h.decodeJ2K(n, put)
	}
	return fmt.Errorf("internal: no decoder for %s", h.syntax)
}

// stored turns the low bitsStored bits of a raw word into the stored value: masked, and sign
// extended when PixelRepresentation is 1 (PS3.5 8.1.1). Bits above the high bit are not
// pixel data and are ignored.
func (h *header) stored(raw uint32) int64 {
	v := int64(raw) & (1<<h.bitsStored - 1)
	if h.signed && v&(1<<(h.bitsStored-1)) != 0 {
		v -= 1 << h.bitsStored
	}
	return v
}

func (h *header) decodeNative(n int, put func(int, int64)) error {
	bpp := h.bitsAllocated / 8
	if len(h.pixels) < n*bpp {
		return fmt.Errorf("pixel data holds %d bytes, a %dx%d slice of %d-bit pixels needs %d", len(h.pixels), h.cols, h.rows, h.bitsAllocated, n*bpp)
	}
	p := h.pixels
	for i := 0; i < n; i++ {
		var raw uint32
		switch bpp {
		case 1:
			raw = uint32(p[i])
		case 2:
			raw = uint32(binary.LittleEndian.Uint16(p[2*i:]))
		case 4:
			raw = binary.LittleEndian.Uint32(p[4*i:])
		}
		put(i, h.stored(raw))
	}
	return nil
}

// frame joins the fragments of the single frame (a frame may span several fragments).
func (h *header) frame() ([]byte, error) {
	switch len(h.fragments) {
	case 0:
		return nil, fmt.Errorf("encapsulated pixel data without fragments")
	case 1:
		return h.fragments[0], nil
	}
	return bytes.Join(h.fragments, nil), nil
}

// decodeJ2K decodes JPEG 2000 pixel data with the library's integer output (DecodeFloat keeps
// the decoded sample values; its image.Image path rescales to 16 bits and clamps negatives).
func (h *header) decodeJ2K(n int, put func(int, int64)) (err error) {
	f, err := h.frame()
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil { // a decoder bug on malformed input must not take the program down
			err = fmt.Errorf("JPEG 2000 pixel data is corrupt (decoder failed: %v)", p)
		}
	}()
	md, err := jpeg2000.DecodeMetadata(bytes.NewReader(f))
	if err != nil {
		return fmt.Errorf("JPEG 2000 pixel data: %w", err)
	}
	// The codestream's own size must be the slice's before the decoder allocates anything.
	if md.Width != h.cols || md.Height != h.rows || md.NumComponents != 1 || len(md.BitsPerComponent) != 1 || len(md.Signed) != 1 {
		return fmt.Errorf("JPEG 2000 pixel data is %dx%d with %d components; the header says %dx%d with 1",
			md.Width, md.Height, md.NumComponents, h.cols, h.rows)
	}
	prec := md.BitsPerComponent[0]
	if prec < 1 || prec > 24 {
		return fmt.Errorf("JPEG 2000 pixel data has %d-bit samples", prec)
	}
	img, err := jpeg2000.DecodeFloat(bytes.NewReader(f))
	if err != nil {
		return fmt.Errorf("JPEG 2000 pixel data: %w", err)
	}
	if len(img.Components) != 1 || len(img.Components[0]) != n {
		return fmt.Errorf("JPEG 2000 decoder returned %d components for a %dx%d slice", len(img.Components), h.cols, h.rows)
	}
	for i, v := range img.Components[0] {
		s := int64(v)
		// Some encoders store signed pixels as an unsigned codestream of BitsStored bits; the
		// value is then the two's complement bit pattern (pydicom applies the same correction).
		if h.signed && !md.Signed[0] && prec == h.bitsStored {
			s = h.stored(uint32(s))
		}
		put(i, s)
	}
	return nil
}

// decodeRLE decodes RLE Lossless pixel data (PS3.5 G): a 64-byte header of segment offsets,
// one PackBits segment per byte of the sample, most significant byte first.
func (h *header) decodeRLE(n int, put func(int, int64)) error {
	f, err := h.frame()
	if err != nil {
		return err
	}
	if len(f) < 64 {
		return fmt.Errorf("RLE pixel data shorter than its 64-byte header")
	}
	bpp := h.bitsAllocated / 8
	if got := binary.LittleEndian.Uint32(f); got != uint32(bpp) {
		return fmt.Errorf("RLE pixel data has %d segments; %d-bit pixels need %d", got, h.bitsAllocated, bpp)
	}
	raw := make([]uint32, n)
	for s := 0; s < bpp; s++ {
		start := binary.LittleEndian.Uint32(f[4+4*s:])
		end := uint32(len(f))
		if s+1 < bpp {
			end = binary.LittleEndian.Uint32(f[8+4*s:])
		}
		if start < 64 || start > end || end > uint32(len(f)) {
			return fmt.Errorf("RLE segment %d lies outside the pixel data", s)
		}
		shift := 8 * (bpp - 1 - s)
		if err := unpackBits(f[start:end], n, func(i int, b byte) { raw[i] |= uint32(b) << shift }); err != nil {
			return fmt.Errorf("RLE segment %d: %w", s, err)
		}
	}
	for i, v := range raw {
		put(i, h.stored(v))
	}
	return nil
}

// unpackBits expands one PackBits segment into exactly n bytes.
func unpackBits(src []byte, n int, emit func(int, byte)) error {
	i := 0
	for p := 0; i < n; {
		if p >= len(src) {
			return fmt.Errorf("ends after %d of %d bytes", i, n)
		}
		c := int(int8(src[p]))
		p++
		switch {
		// A run past n bytes is cut at n (pydicom accepts such padding with a warning).
		case c >= 0: // c+1 literal bytes
			if p+c+1 > len(src) {
				return fmt.Errorf("literal run overruns the segment")
			}
			for k := 0; k <= c && i < n; k++ {
				emit(i, src[p+k])
				i++
			}
			p += c + 1
		case c != -128: // 1-c copies of the next byte
			if p >= len(src) {
				return fmt.Errorf("repeat run overruns the segment")
			}
			for k := 0; k < 1-c && i < n; k++ {
				emit(i, src[p])
				i++
			}
			p++
		}
	}
	return nil
}
