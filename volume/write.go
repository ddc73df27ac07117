package volume

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/okieraised/gonii/pkg/nifti"
)

// WriteOptions controls WriteNIfTI and WriteLabels.
type WriteOptions struct {
	NIfTI2 bool // write a NIfTI-2 header instead of NIfTI-1
	// Ref, when set, supplies sform/qform codes, xyzt_units and the description, so an output
	// on the input's grid carries the input's conventions.
	Ref         *Header
	Description string // overrides Ref's description (at most 79 bytes are kept)
	// GzipLevel for .nii.gz outputs (compress/gzip levels; 0 means the default level).
	GzipLevel int
	// Int16IfExact lets EncodeNIfTI store a volume of int16-exact values as int16.
	Int16IfExact bool
}

// outHeader is what the writers put in a header.
type outHeader struct {
	dims                 [3]int
	affine               [4][4]float64
	datatype, bitpix     int
	sformCode, qformCode int
	xyztUnits            int
	intentCode           int
	intentName           string
	descrip              string
	calMin, calMax       float64
	sclSlope             float64 // 0: 1 (no scaling)
	ext                  []Extension
}

// codes returns the sform/qform codes to write. Both forms are always written from the affine;
// a code is the reference's when it is set there, else the other reference code, else 1
// (scanner), so that neither form is marked unknown.
func codes(ref *Header) (s, q int) {
	s, q = 1, 1
	if ref == nil {
		return
	}
	switch {
	case ref.SformCode > 0:
		s = ref.SformCode
	case ref.QformCode > 0:
		s = ref.QformCode
	}
	switch {
	case ref.QformCode > 0:
		q = ref.QformCode
	case ref.SformCode > 0:
		q = ref.SformCode
	}
	return
}

func newOutHeader(dims [3]int, affine [4][4]float64, opt WriteOptions) outHeader {
	h := outHeader{dims: dims, affine: affine, xyztUnits: 2} // NIFTI_UNITS_MM
	h.sformCode, h.qformCode = codes(opt.Ref)
	if opt.Ref != nil {
		if opt.Ref.XYZTUnits != 0 {
			h.xyztUnits = opt.Ref.XYZTUnits
		}
		h.descrip = opt.Ref.Description
	}
	if opt.Description != "" {
		h.descrip = opt.Description
	}
	return h
}

// qformParams is nibabel's set_qform: zooms are the column norms; qfac = -1 (and the third
// column negated) when the rotation part has a negative determinant; the quaternion is that
// of the closest orthogonal matrix (polar decomposition, shears stripped).
func qformParams(a [4][4]float64) (quat [3]float64, qfac float64, zooms [3]float64) {
	zooms = colNorms(a)
	var r [3][3]float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			r[i][j] = a[i][j] / zooms[j]
		}
	}
	qfac = 1
	if det3(r) <= 0 {
		qfac = -1
		for i := 0; i < 3; i++ {
			r[i][2] = -r[i][2]
		}
	}
	if p, ok := polar3(r); ok {
		r = p
	}
	_, x, y, z := matToQuat(r)
	return [3]float64{x, y, z}, qfac, zooms
}

func putString(dst []uint8, s string) {
	n := copy(dst[:len(dst)-1], s) // keep a terminating NUL
	for i := n; i < len(dst); i++ {
		dst[i] = 0
	}
}

// extBytes encodes the extension area (4-byte extender, then esize/ecode/data padded to 16).
func extBytes(ext []Extension) []byte {
	var b bytes.Buffer
	if len(ext) == 0 {
		b.Write([]byte{0, 0, 0, 0})
		return b.Bytes()
	}
	b.Write([]byte{1, 0, 0, 0})
	for _, e := range ext {
		size := (8 + len(e.Data) + 15) / 16 * 16
		var hd [8]byte
		binary.LittleEndian.PutUint32(hd[:], uint32(size))
		binary.LittleEndian.PutUint32(hd[4:], uint32(int32(e.Code)))
		b.Write(hd[:])
		b.Write(e.Data)
		b.Write(make([]byte, size-8-len(e.Data)))
	}
	return b.Bytes()
}

func (h outHeader) slope() float64 {
	if h.sclSlope == 0 {
		return 1
	}
	return h.sclSlope
}

// headerBytes encodes h as a little-endian NIfTI-1 or -2 header followed by the extension area.
func (h outHeader) headerBytes(v2 bool) ([]byte, error) {
	ext := extBytes(h.ext)
	quat, qfac, zooms := qformParams(h.affine)
	var b bytes.Buffer
	if !v2 {
		for _, d := range h.dims {
			if d > math.MaxInt16 {
				return nil, fmt.Errorf("dimension %d does not fit NIfTI-1 (max 32767): use NIfTI-2", d)
			}
		}
		var x nifti.Nii1Header
		x.SizeofHdr = nii1HeaderSize
		x.Magic = nifti.NIFTI_1_MAGIC_SINGLE
		x.Dim = [8]int16{3, int16(h.dims[0]), int16(h.dims[1]), int16(h.dims[2]), 1, 1, 1, 1}
		x.Datatype, x.Bitpix = int16(h.datatype), int16(h.bitpix)
		x.Pixdim = [8]float32{float32(qfac), float32(zooms[0]), float32(zooms[1]), float32(zooms[2]), 1, 1, 1, 1}
		x.VoxOffset = float32(nii1HeaderSize + len(ext))
		x.SclSlope, x.SclInter = float32(h.slope()), 0
		x.XyztUnits = uint8(h.xyztUnits)
		x.IntentCode = int16(h.intentCode)
		putString(x.IntentName[:], h.intentName)
		x.CalMin, x.CalMax = float32(h.calMin), float32(h.calMax)
		putString(x.Descrip[:], h.descrip)
		x.QformCode, x.SformCode = int16(h.qformCode), int16(h.sformCode)
		x.QuaternB, x.QuaternC, x.QuaternD = float32(quat[0]), float32(quat[1]), float32(quat[2])
		x.QoffsetX, x.QoffsetY, x.QoffsetZ = float32(h.affine[0][3]), float32(h.affine[1][3]), float32(h.affine[2][3])
		for j := 0; j < 4; j++ {
			x.SrowX[j], x.SrowY[j], x.SrowZ[j] = float32(h.affine[0][j]), float32(h.affine[1][j]), float32(h.affine[2][j])
		}
		if err := binary.Write(&b, binary.LittleEndian, &x); err != nil {
			return nil, err
		}
	} else {
		var x nifti.Nii2Header
		x.SizeofHdr = nii2HeaderSize
		x.Magic = nifti.NIFTI_2_MAGIC_SINGLE
		x.Dim = [8]int64{3, int64(h.dims[0]), int64(h.dims[1]), int64(h.dims[2]), 1, 1, 1, 1}
		x.Datatype, x.Bitpix = int16(h.datatype), int16(h.bitpix)
		x.Pixdim = [8]float64{qfac, zooms[0], zooms[1], zooms[2], 1, 1, 1, 1}
		x.VoxOffset = int64(nii2HeaderSize + len(ext))
		x.SclSlope, x.SclInter = h.slope(), 0
		x.XyztUnits = int32(h.xyztUnits)
		x.IntentCode = int32(h.intentCode)
		putString(x.IntentName[:], h.intentName)
		x.CalMin, x.CalMax = h.calMin, h.calMax
		putString(x.Descrip[:], h.descrip)
		x.QformCode, x.SformCode = int32(h.qformCode), int32(h.sformCode)
		x.QuaternB, x.QuaternC, x.QuaternD = quat[0], quat[1], quat[2]
		x.QoffsetX, x.QoffsetY, x.QoffsetZ = h.affine[0][3], h.affine[1][3], h.affine[2][3]
		x.SrowX, x.SrowY, x.SrowZ = h.affine[0], h.affine[1], h.affine[2]
		if err := binary.Write(&b, binary.LittleEndian, &x); err != nil {
			return nil, err
		}
	}
	b.Write(ext)
	return b.Bytes(), nil
}

// WriteNIfTI writes a float32 volume (e.g. the preprocessed image) as .nii or .nii.gz (chosen
// by the name), with the affine in both sform and qform.
func WriteNIfTI(path string, v *Volume, opt WriteOptions) error {
	gz, err := niftiKind(path)
	if err != nil {
		return err
	}
	hb, i16, err := volumeHeader(v, opt)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return writeAtomic(path, gz, opt.GzipLevel, func(w io.Writer) error { return writeVolumeData(w, v, hb, i16) })
}

// EncodeNIfTI writes the same file as WriteNIfTI to w (gzip-compressed when gz). With
// opt.Int16IfExact, a volume whose every voxel is an integer that int16 holds (a CT in HU as
// scanners store it) is written as int16, half the bytes, every value unchanged.
func EncodeNIfTI(w io.Writer, gz bool, v *Volume, opt WriteOptions) error {
	hb, i16, err := volumeHeader(v, opt)
	if err != nil {
		return err
	}
	return encodeStream(w, gz, opt.GzipLevel, func(w io.Writer) error { return writeVolumeData(w, v, hb, i16) })
}

// volumeHeader is the header of a volume file: float32, or int16 (i16) where opt allows and
// every value fits exactly.
func volumeHeader(v *Volume, opt WriteOptions) (hb []byte, i16 bool, err error) {
	if err := v.check(); err != nil {
		return nil, false, err
	}
	h := newOutHeader(v.Dims, v.Affine, opt)
	h.datatype, h.bitpix = dtFloat32, 32
	if i16 = opt.Int16IfExact && exactInt16(v.Data); i16 {
		h.datatype, h.bitpix = dtInt16, 16
	}
	hb, err = h.headerBytes(opt.NIfTI2)
	return hb, i16, err
}

func exactInt16(d []float32) bool {
	for _, x := range d {
		if x < math.MinInt16 || x > math.MaxInt16 || x != float32(int16(x)) {
			return false
		}
	}
	return true
}

// writeVolumeData writes the header hb, then the voxels as int16 (i16) or float32.
func writeVolumeData(w io.Writer, v *Volume, hb []byte, i16 bool) error {
	if _, err := w.Write(hb); err != nil {
		return err
	}
	size := 4
	if i16 {
		size = 2
	}
	buf := make([]byte, 1<<20)
	for off := 0; off < len(v.Data); {
		n := min(len(buf)/size, len(v.Data)-off)
		for i := 0; i < n; i++ {
			if i16 {
				binary.LittleEndian.PutUint16(buf[2*i:], uint16(int16(v.Data[off+i])))
			} else {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v.Data[off+i]))
			}
		}
		if _, err := w.Write(buf[:size*n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// WriteLabels writes a uint8 label map on the grid (dims, affine) as .nii or .nii.gz: sform and
// qform from the affine (codes from ref when given, else 1), intent NIFTI_INTENT_LABEL and,
// when names are given, the label table embedded as a header extension (see labelTableXML).
// names[i] is the name of label i; names[0] (background) is not listed.
func WriteLabels(path string, dims [3]int, affine [4][4]float64, labels []uint8, names []string, ref *Header) error {
	return WriteLabelsWith(path, dims, affine, labels, LabelOptions{Names: names, Write: WriteOptions{Ref: ref}})
}

// LabelOptions extends WriteLabels with colours for the embedded table and header options.
type LabelOptions struct {
	Names  []string
	Colors [][3]uint8 // optional, Colors[i] for label i; a fixed palette is used when absent
	Write  WriteOptions
}

// WriteLabelsWith is WriteLabels with explicit options.
func WriteLabelsWith(path string, dims [3]int, affine [4][4]float64, labels []uint8, opt LabelOptions) error {
	gz, err := niftiKind(path)
	if err != nil {
		return err
	}
	hb, err := labelHeader(dims, affine, labels, opt)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return writeAtomic(path, gz, opt.Write.GzipLevel, func(w io.Writer) error {
		return writeLabelData(w, hb, labels)
	})
}

// EncodeLabels writes the same label file as WriteLabelsWith to w (gzip-compressed when gz),
// for callers without a file system: the browser builds its download from it.
func EncodeLabels(w io.Writer, gz bool, dims [3]int, affine [4][4]float64, labels []uint8, opt LabelOptions) error {
	hb, err := labelHeader(dims, affine, labels, opt)
	if err != nil {
		return err
	}
	return encodeStream(w, gz, opt.Write.GzipLevel, func(w io.Writer) error {
		return writeLabelData(w, hb, labels)
	})
}

func writeLabelData(w io.Writer, header, labels []byte) error {
	if _, err := w.Write(header); err != nil {
		return err
	}
	_, err := w.Write(labels)
	return err
}

// labelHeader checks a label map and builds its NIfTI header bytes.
func labelHeader(dims [3]int, affine [4][4]float64, labels []uint8, opt LabelOptions) ([]byte, error) {
	if _, err := voxelCount(dims, math.MaxInt64); err != nil {
		return nil, err
	}
	if err := checkLabelsLen(len(labels), dims); err != nil {
		return nil, err
	}
	if err := checkAffine(affine); err != nil {
		return nil, err
	}
	h := newOutHeader(dims, affine, opt.Write)
	h.datatype, h.bitpix = dtUint8, 8
	h.intentCode, h.intentName = int(nifti.NIFTI_INTENT_LABEL), "Label"
	maxL := 0
	for _, l := range labels {
		maxL = max(maxL, int(l))
	}
	h.calMin, h.calMax = 0, float64(max(maxL, len(opt.Names)-1, 0))
	if len(opt.Names) > 1 {
		h.ext = []Extension{{Code: ecodeCaret, Data: labelTableXML(opt.Names, opt.Colors)}}
	}
	return h.headerBytes(opt.Write.NIfTI2)
}

// EncodeProbability writes a map of probabilities quantised to bytes (p times 255, rounded: the
// confidence `ctseg segment --confidence` writes) as .nii or .nii.gz to w, uint8 with
// scl_slope 1/255, so that readers that apply the scaling (nibabel, ITK, 3D Slicer) see
// probabilities from 0 to 1.
func EncodeProbability(w io.Writer, gz bool, dims [3]int, affine [4][4]float64, p []uint8, opt WriteOptions) error {
	if _, err := voxelCount(dims, math.MaxInt64); err != nil {
		return err
	}
	if err := checkLabelsLen(len(p), dims); err != nil {
		return err
	}
	if err := checkAffine(affine); err != nil {
		return err
	}
	h := newOutHeader(dims, affine, opt)
	h.datatype, h.bitpix = dtUint8, 8
	h.sclSlope = 1.0 / 255
	h.calMin, h.calMax = 0, 1
	if h.descrip == "" || opt.Ref != nil && h.descrip == opt.Ref.Description {
		h.descrip = "ctseg p1: probability of the chosen label"
	}
	hb, err := h.headerBytes(opt.NIfTI2)
	if err != nil {
		return err
	}
	return encodeStream(w, gz, opt.GzipLevel, func(w io.Writer) error { return writeLabelData(w, hb, p) })
}
