package volume

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	// Drop-in for compress/gzip (same errors, multistream by default) that inflates ~1.3x faster.
	"github.com/klauspost/compress/gzip"
)

// DefaultMaxVoxels is the default cap on X*Y*Z (1024^3, 4 GiB as float32).
const DefaultMaxVoxels int64 = 1 << 30

// maxDeflateRatio bounds how far deflate can expand data (about 1032:1 in the best case), so a
// header that claims more voxels than the compressed bytes could hold is refused before the
// output is allocated.
const maxDeflateRatio = 1032

// gzipTailMargin is how many decompressed bytes may follow the voxel data (padding some
// writers add); anything beyond that is refused as a gzip bomb instead of being inflated.
const gzipTailMargin = 1 << 20

// maxExtensionBytes caps the extension area that is kept in memory; larger areas are skipped.
const maxExtensionBytes = 16 << 20

// ReadOptions bounds what a reader accepts.
type ReadOptions struct {
	// MaxVoxels caps X*Y*Z before any allocation; 0 means DefaultMaxVoxels.
	MaxVoxels int64
}

// maxVoxels also caps a caller's value at 2^40 so that byte counts (voxels x 8) cannot overflow.
func (o ReadOptions) maxVoxels() int64 {
	if o.MaxVoxels > 0 {
		return min(o.MaxVoxels, 1<<40)
	}
	return DefaultMaxVoxels
}

// ReadNIfTI reads a .nii or .nii.gz file (gzip detected by its magic bytes, not the name) as
// float32 with scl_slope/scl_inter applied, streaming the voxels straight into the output.
func ReadNIfTI(path string) (*Volume, *Header, error) {
	return ReadNIfTIWith(path, ReadOptions{})
}

// ReadNIfTIWith is ReadNIfTI with explicit limits.
func ReadNIfTIWith(path string, opt ReadOptions) (*Volume, *Header, error) {
	var v *Volume
	h, err := readFile(path, opt, func(h *Header) sink { s := newFloatSink(h); v = s.v; return s })
	if err != nil {
		return nil, nil, err
	}
	return v, h, nil
}

// ParseNIfTI decodes a whole NIfTI file held in memory (gzip detected by magic), for callers
// that only have bytes (the browser).
func ParseNIfTI(data []byte) (*Volume, *Header, error) {
	return ParseNIfTIWith(data, ReadOptions{})
}

// ParseNIfTIWith is ParseNIfTI with explicit limits.
func ParseNIfTIWith(data []byte, opt ReadOptions) (*Volume, *Header, error) {
	var v *Volume
	h, err := readBytes(data, opt, func(h *Header) sink { s := newFloatSink(h); v = s.v; return s })
	if err != nil {
		return nil, nil, fmt.Errorf("parse NIfTI: %w", err)
	}
	return v, h, nil
}

// ReadHeader reads only the header (and extensions) of a .nii or .nii.gz file.
func ReadHeader(path string) (*Header, error) {
	return readFile(path, ReadOptions{}, nil)
}

// ReadLabels reads an integer label map (any supported datatype, values 0..255 after scaling)
// as uint8, one byte per voxel, in x-fastest order.
func ReadLabels(path string) ([]uint8, *Header, error) {
	var s *labelSink
	h, err := readFile(path, ReadOptions{}, func(h *Header) sink { s = newLabelSink(h); return s })
	if err != nil {
		return nil, nil, err
	}
	return s.out, h, nil
}

// ParseLabels is ReadLabels for in-memory bytes.
func ParseLabels(data []byte) ([]uint8, *Header, error) {
	return ParseLabelsWith(data, ReadOptions{})
}

// ParseLabelsWith is ParseLabels with explicit limits (a caller that knows the grid a label
// map must have refuses a larger one before allocating it).
func ParseLabelsWith(data []byte, opt ReadOptions) ([]uint8, *Header, error) {
	var s *labelSink
	h, err := readBytes(data, opt, func(h *Header) sink { s = newLabelSink(h); return s })
	if err != nil {
		return nil, nil, fmt.Errorf("parse NIfTI labels: %w", err)
	}
	return s.out, h, nil
}

// sink receives the decoded (scaled, float32) voxels in file order, chunk by chunk.
type sink interface {
	put(off int, vals []float32) error
}

type floatSink struct{ v *Volume }

func newFloatSink(h *Header) *floatSink {
	n := h.Dims[0] * h.Dims[1] * h.Dims[2]
	return &floatSink{v: &Volume{Dims: h.Dims, Affine: h.Affine, Data: make([]float32, n)}}
}

func (s *floatSink) put(off int, vals []float32) error {
	copy(s.v.Data[off:], vals)
	return nil
}

type labelSink struct{ out []uint8 }

func newLabelSink(h *Header) *labelSink {
	return &labelSink{out: make([]uint8, h.Dims[0]*h.Dims[1]*h.Dims[2])}
}

func (s *labelSink) put(off int, vals []float32) error {
	for i, v := range vals {
		if !(v >= 0 && v <= 255) || v != float32(int(v)) {
			return fmt.Errorf("voxel %d holds %v: a label map must hold integers 0..255", off+i, v)
		}
		s.out[off+i] = uint8(v)
	}
	return nil
}

func readFile(path string, opt ReadOptions, mk func(*Header) sink) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read NIfTI: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read NIfTI %s: %w", path, err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(2)
	h, err := decode(br, st.Size(), isGzip(magic), opt, mk)
	if err != nil {
		return nil, fmt.Errorf("read NIfTI %s: %w", path, err)
	}
	return h, nil
}

func readBytes(data []byte, opt ReadOptions, mk func(*Header) sink) (*Header, error) {
	return decode(bytes.NewReader(data), int64(len(data)), isGzip(data), opt, mk)
}

func isGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

// decode reads header, extensions and voxels from r (size bytes on disk, gzip-compressed or
// not). Every size taken from the header is checked against the limits and against what the
// input can hold before the output is allocated. mk == nil reads the header only.
func decode(r io.Reader, size int64, gz bool, opt ReadOptions, mk func(*Header) sink) (*Header, error) {
	var zr *gzip.Reader
	if gz {
		var err error
		if zr, err = gzip.NewReader(r); err != nil {
			return nil, fmt.Errorf("not a valid gzip stream: %w", readErr(err))
		}
		defer zr.Close()
		r = zr
	}
	// sizeof_hdr first: it tells the version and the byte order.
	hb := make([]byte, nii2HeaderSize)
	if _, err := io.ReadFull(r, hb[:4]); err != nil {
		return nil, fmt.Errorf("reading header: %w", readErr(err))
	}
	n, _, err := headerLen(hb)
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(r, hb[4:n]); err != nil {
		return nil, fmt.Errorf("reading the %d-byte header: %w", n, readErr(err))
	}
	h, err := parseHeader(hb[:n], opt.maxVoxels())
	if err != nil {
		return nil, err
	}
	es, _ := elemSize(h.Datatype)
	nvox := int64(h.Dims[0]) * int64(h.Dims[1]) * int64(h.Dims[2])
	need := h.VoxOffset + nvox*int64(es)
	if gz {
		if limit := size*maxDeflateRatio + 1<<16; need > limit {
			return nil, fmt.Errorf("header needs %d bytes but %d gzip bytes expand to at most %d: truncated or corrupt file", need, size, limit)
		}
	} else if need > size {
		return nil, fmt.Errorf("truncated: header needs %d bytes (vox_offset %d + %d voxels x %d bytes), file has %d", need, h.VoxOffset, nvox, es, size)
	}

	// Extension area: between the header and vox_offset.
	ext := h.VoxOffset - int64(n)
	if ext > 0 && ext <= maxExtensionBytes {
		eb := make([]byte, ext)
		if _, err := io.ReadFull(r, eb); err != nil {
			return nil, fmt.Errorf("reading header extensions: %w", readErr(err))
		}
		h.Extensions = parseExtensions(eb, h.ByteOrder)
	} else if ext > 0 {
		if _, err := io.CopyN(io.Discard, r, ext); err != nil {
			return nil, fmt.Errorf("skipping to vox_offset %d: %w", h.VoxOffset, readErr(err))
		}
	}
	if mk == nil {
		return h, nil
	}
	if err := decodeVoxels(r, h, nvox, mk(h)); err != nil {
		return nil, err
	}
	if gz {
		// Inflate at most a small margin past the voxels: this verifies the gzip checksum of a
		// normal file and refuses a stream that keeps expanding.
		extra, err := io.Copy(io.Discard, io.LimitReader(r, gzipTailMargin+1))
		if err != nil {
			return nil, fmt.Errorf("gzip stream after the voxel data: %w", err)
		}
		if extra > gzipTailMargin {
			return nil, fmt.Errorf("gzip stream expands beyond the %d bytes the header describes (gzip bomb or corrupt file)", need)
		}
	}
	return h, nil
}

func readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("unexpected end of data (truncated file)")
	}
	return err
}

// decodeVoxels streams nvox voxels of h's datatype from r into s, in chunks of about 1 MiB,
// so the only full-size buffer is the sink's output.
func decodeVoxels(r io.Reader, h *Header, nvox int64, s sink) error {
	es, _ := elemSize(h.Datatype)
	sc := newScaling(h)
	chunk := (1 << 20) / es
	raw := make([]byte, chunk*es)
	vals := make([]float32, chunk)
	for off := int64(0); off < nvox; off += int64(chunk) {
		m := chunk
		if rem := nvox - off; rem < int64(m) {
			m = int(rem)
		}
		if got, err := io.ReadFull(r, raw[:m*es]); err != nil {
			return fmt.Errorf("voxel data truncated: got %d of %d bytes: %w", off*int64(es)+int64(got), nvox*int64(es), readErr(err))
		}
		convert(vals[:m], raw[:m*es], h.Datatype, h.ByteOrder, sc)
		if err := s.put(int(off), vals[:m]); err != nil {
			return err
		}
	}
	return nil
}
