package volume

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/okieraised/gonii/pkg/nifti"
)

// Header is what ctseg keeps of a NIfTI header: enough to decode the data, to choose the
// affine exactly as nibabel does, and to write outputs on the same grid.
type Header struct {
	Version   int              // 1 or 2
	ByteOrder binary.ByteOrder // of the file
	Dims      [3]int           // spatial dims as stored
	Datatype  int              // NIfTI datatype code of the stored voxels
	VoxOffset int64            // byte offset of the voxel data
	SclSlope  float64          // as stored (0 or NaN: no scaling)
	SclInter  float64
	Pixdim    [3]float64 // stored pixdim[1..3] (negative values made positive, as nibabel does)
	Qfac      float64    // pixdim[0], 1 or -1

	Affine       [4][4]float64 // the affine nibabel returns (img.affine)
	AffineSource string        // "sform", "qform" or "pixdim"
	Sform        [4][4]float64 // as stored (zero when sform_code is 0)
	Qform        [4][4]float64 // from the quaternion (zero when qform_code is 0)
	SformCode    int
	QformCode    int

	XYZTUnits   int
	IntentCode  int
	IntentName  string
	Description string
	AuxFile     string
	Extensions  []Extension
}

// Extension is one NIfTI header extension (esize/ecode/data after byte 348 or 540).
type Extension struct {
	Code int
	Data []byte
}

const (
	nii1HeaderSize = 348
	nii2HeaderSize = 540
)

// Datatype codes handled here (NIfTI-1 nifti1.h).
const (
	dtUint8   = 2
	dtInt16   = 4
	dtInt32   = 8
	dtFloat32 = 16
	dtFloat64 = 64
	dtInt8    = 256
	dtUint16  = 512
	dtUint32  = 768
	dtInt64   = 1024
	dtUint64  = 1280
)

// elemSize returns the bytes per voxel of a supported datatype, or an error naming it.
func elemSize(dt int) (int, error) {
	switch dt {
	case dtUint8, dtInt8:
		return 1, nil
	case dtInt16, dtUint16:
		return 2, nil
	case dtInt32, dtUint32, dtFloat32:
		return 4, nil
	case dtInt64, dtUint64, dtFloat64:
		return 8, nil
	}
	name := map[int]string{0: "unknown", 1: "binary", 32: "complex64", 128: "RGB24", 1536: "float128",
		1792: "complex128", 2048: "complex256", 2304: "RGBA32"}[dt]
	if name == "" {
		name = "invalid"
	}
	return 0, fmt.Errorf("unsupported NIfTI datatype %d (%s): only real integer and float32/64 scalars are supported", dt, name)
}

// headerLen inspects the first 4 bytes (sizeof_hdr) and returns the header size and byte order.
func headerLen(b []byte) (int, binary.ByteOrder, error) {
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("not a NIfTI file: only %d bytes", len(b))
	}
	switch {
	case binary.LittleEndian.Uint32(b) == nii1HeaderSize:
		return nii1HeaderSize, binary.LittleEndian, nil
	case binary.BigEndian.Uint32(b) == nii1HeaderSize:
		return nii1HeaderSize, binary.BigEndian, nil
	case binary.LittleEndian.Uint32(b) == nii2HeaderSize:
		return nii2HeaderSize, binary.LittleEndian, nil
	case binary.BigEndian.Uint32(b) == nii2HeaderSize:
		return nii2HeaderSize, binary.BigEndian, nil
	}
	return 0, nil, fmt.Errorf("not a NIfTI file: sizeof_hdr is neither 348 nor 540")
}

// rawHeader is the version-independent view of the fields read from disk.
type rawHeader struct {
	dim                          [8]int64
	pixdim                       [8]float64
	datatype                     int
	voxOffset                    float64
	slope, inter                 float64
	slopeIsF32                   bool
	qformCode, sformCode         int
	quatB, quatC, quatD          float64
	qoffX, qoffY, qoffZ          float64
	srow                         [3][4]float64
	xyztUnits, intentCode        int
	descrip, auxFile, intentName string
}

// parseHeader decodes a NIfTI-1 or -2 header (b holds at least the header bytes) with gonii's
// header structs, validates it and computes the affine nibabel would use. maxVoxels bounds the
// voxel count before anything is allocated.
func parseHeader(b []byte, maxVoxels int64) (*Header, error) {
	n, bo, err := headerLen(b)
	if err != nil {
		return nil, err
	}
	if len(b) < n {
		return nil, fmt.Errorf("truncated NIfTI header: %d of %d bytes", len(b), n)
	}
	var r rawHeader
	h := &Header{ByteOrder: bo}
	if n == nii1HeaderSize {
		var x nifti.Nii1Header
		if err := binary.Read(bytes.NewReader(b[:n]), bo, &x); err != nil {
			return nil, fmt.Errorf("read NIfTI-1 header: %w", err)
		}
		if x.Magic == nifti.NIFTI_1_MAGIC_PAIR {
			return nil, fmt.Errorf("NIfTI-1 pair header (.hdr/.img) is not supported: convert to a single .nii file")
		}
		if x.Magic != nifti.NIFTI_1_MAGIC_SINGLE {
			return nil, fmt.Errorf("bad NIfTI-1 magic %q (ANALYZE 7.5 files are not supported)", cstr(x.Magic[:]))
		}
		h.Version = 1
		for i := range x.Dim {
			r.dim[i] = int64(x.Dim[i])
			r.pixdim[i] = float64(x.Pixdim[i])
		}
		r.datatype = int(x.Datatype)
		r.voxOffset = float64(x.VoxOffset)
		r.slope, r.inter, r.slopeIsF32 = float64(x.SclSlope), float64(x.SclInter), true
		r.qformCode, r.sformCode = int(x.QformCode), int(x.SformCode)
		r.quatB, r.quatC, r.quatD = float64(x.QuaternB), float64(x.QuaternC), float64(x.QuaternD)
		r.qoffX, r.qoffY, r.qoffZ = float64(x.QoffsetX), float64(x.QoffsetY), float64(x.QoffsetZ)
		for j := 0; j < 4; j++ {
			r.srow[0][j], r.srow[1][j], r.srow[2][j] = float64(x.SrowX[j]), float64(x.SrowY[j]), float64(x.SrowZ[j])
		}
		r.xyztUnits, r.intentCode = int(x.XyztUnits), int(x.IntentCode)
		r.descrip, r.auxFile, r.intentName = cstr(x.Descrip[:]), cstr(x.AuxFile[:]), cstr(x.IntentName[:])
	} else {
		var x nifti.Nii2Header
		if err := binary.Read(bytes.NewReader(b[:n]), bo, &x); err != nil {
			return nil, fmt.Errorf("read NIfTI-2 header: %w", err)
		}
		if x.Magic == nifti.NIFTI_2_MAGIC_PAIR {
			return nil, fmt.Errorf("NIfTI-2 pair header (.hdr/.img) is not supported: convert to a single .nii file")
		}
		if x.Magic != nifti.NIFTI_2_MAGIC_SINGLE {
			return nil, fmt.Errorf("bad NIfTI-2 magic %q", cstr(x.Magic[:]))
		}
		h.Version = 2
		r.dim = x.Dim
		r.pixdim = x.Pixdim
		r.datatype = int(x.Datatype)
		r.voxOffset = float64(x.VoxOffset)
		r.slope, r.inter = x.SclSlope, x.SclInter
		r.qformCode, r.sformCode = int(x.QformCode), int(x.SformCode)
		r.quatB, r.quatC, r.quatD = x.QuaternB, x.QuaternC, x.QuaternD
		r.qoffX, r.qoffY, r.qoffZ = x.QoffsetX, x.QoffsetY, x.QoffsetZ
		r.srow = [3][4]float64{x.SrowX, x.SrowY, x.SrowZ}
		r.xyztUnits, r.intentCode = int(x.XyztUnits), int(x.IntentCode)
		r.descrip, r.auxFile, r.intentName = cstr(x.Descrip[:]), cstr(x.AuxFile[:]), cstr(x.IntentName[:])
		if x.VoxOffset < 0 {
			return nil, fmt.Errorf("negative vox_offset %d", x.VoxOffset)
		}
	}
	if err := fillHeader(h, &r, maxVoxels); err != nil {
		return nil, err
	}
	return h, nil
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimRight(string(b), " ")
}

func fillHeader(h *Header, r *rawHeader, maxVoxels int64) error {
	nd := r.dim[0]
	switch {
	case nd < 3:
		return fmt.Errorf("dim[0] = %d: only 3-D volumes are supported", nd)
	case nd > 4:
		return fmt.Errorf("dim[0] = %d: %d-D images are not supported (3-D, or 4-D with one volume)", nd, nd)
	case nd == 4 && r.dim[4] != 1:
		return fmt.Errorf("4-D image with %d volumes: only one volume (dim[4] = 1) is supported", r.dim[4])
	}
	for i := 1; i <= 3; i++ {
		if r.dim[i] <= 0 {
			return fmt.Errorf("dim[%d] = %d: dimensions must be positive", i, r.dim[i])
		}
		if r.dim[i] > math.MaxInt32 {
			return fmt.Errorf("dim[%d] = %d is too large", i, r.dim[i])
		}
		h.Dims[i-1] = int(r.dim[i])
	}
	if _, err := voxelCount(h.Dims, maxVoxels); err != nil {
		return err
	}
	if _, err := elemSize(r.datatype); err != nil {
		return err
	}
	h.Datatype = r.datatype

	hs := float64(nii1HeaderSize)
	if h.Version == 2 {
		hs = nii2HeaderSize
	}
	switch {
	case math.IsNaN(r.voxOffset) || r.voxOffset < 0:
		return fmt.Errorf("invalid vox_offset %v", r.voxOffset)
	case r.voxOffset == 0:
		// Some writers leave it 0; the smallest legal single-file offset is header + 4.
		h.VoxOffset = int64(hs) + 4
	case r.voxOffset < hs:
		return fmt.Errorf("vox_offset %v lies inside the %v-byte header", r.voxOffset, hs)
	case r.voxOffset > 1<<50:
		return fmt.Errorf("vox_offset %v is implausibly large", r.voxOffset)
	default:
		h.VoxOffset = int64(r.voxOffset) // nibabel truncates with int()
	}

	// Scaling as nibabel's get_slope_inter: slope 0 or non-finite means none.
	h.SclSlope, h.SclInter = r.slope, r.inter
	if r.slope != 0 && !math.IsNaN(r.slope) && !math.IsInf(r.slope, 0) &&
		(math.IsNaN(r.inter) || math.IsInf(r.inter, 0)) {
		return fmt.Errorf("valid scl_slope %v with invalid scl_inter %v", r.slope, r.inter)
	}

	// nibabel's header check fixes a qfac other than +-1 to 1 and negative pixdims to their
	// absolute value before anything uses them.
	h.Qfac = r.pixdim[0]
	if h.Qfac != 1 && h.Qfac != -1 {
		h.Qfac = 1
	}
	for i := 0; i < 3; i++ {
		h.Pixdim[i] = math.Abs(r.pixdim[i+1])
	}
	h.SformCode, h.QformCode = r.sformCode, r.qformCode
	h.XYZTUnits, h.IntentCode = r.xyztUnits, r.intentCode
	h.Description, h.AuxFile, h.IntentName = r.descrip, r.auxFile, r.intentName

	if r.sformCode != 0 {
		for i := 0; i < 3; i++ {
			h.Sform[i] = r.srow[i]
		}
		h.Sform[3] = [4]float64{0, 0, 0, 1}
	}
	var qerr error
	if r.qformCode != 0 {
		// A broken qform only matters when it is the one used (no sform).
		h.Qform, qerr = qformAffine(r, h)
		if qerr != nil && r.sformCode == 0 {
			return qerr
		}
	}
	// nibabel get_best_affine: sform when sform_code != 0, else qform when qform_code != 0,
	// else get_base_affine (shape_zoom_affine with x flipped and the origin at the centre).
	switch {
	case r.sformCode != 0:
		h.Affine, h.AffineSource = h.Sform, "sform"
	case r.qformCode != 0:
		h.Affine, h.AffineSource = h.Qform, "qform"
	default:
		if err := checkPixdim(h.Pixdim, "the fallback affine"); err != nil {
			return err
		}
		a := identity4()
		z := h.Pixdim
		z[0] = -z[0]
		for i := 0; i < 3; i++ {
			a[i][i] = z[i]
			a[i][3] = -(float64(h.Dims[i]) - 1) / 2 * z[i]
		}
		h.Affine, h.AffineSource = a, "pixdim"
	}
	if err := checkAffine(h.Affine); err != nil {
		return fmt.Errorf("%s: %w", h.AffineSource, err)
	}
	return nil
}

func checkPixdim(p [3]float64, what string) error {
	for i, v := range p {
		if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("pixdim[%d] = %v is unusable and %s needs it", i+1, v, what)
		}
	}
	return nil
}

// qformAffine is nibabel's get_qform: quaternion (w filled positive, zeroed below 3 float32
// eps), rotation times diag(pixdim) with the last zoom multiplied by qfac, qoffset translation.
func qformAffine(r *rawHeader, h *Header) ([4][4]float64, error) {
	if err := checkPixdim(h.Pixdim, "the qform"); err != nil {
		return [4][4]float64{}, err
	}
	b, c, d := r.quatB, r.quatC, r.quatD
	for _, v := range []float64{b, c, d, r.qoffX, r.qoffY, r.qoffZ} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return [4][4]float64{}, fmt.Errorf("qform has a non-finite quaternion or offset")
		}
	}
	thresh := 3 * 1.1920928955078125e-07 // 3 float32 eps (nibabel's quaternion_threshold)
	if h.Version == 2 {
		thresh = 3 * 2.220446049250313e-16
	}
	w2 := 1 - (b*b + c*c + d*d)
	var w float64
	switch {
	case math.Abs(w2) < thresh:
		w = 0
	case w2 < 0:
		return [4][4]float64{}, fmt.Errorf("qform quaternion (b, c, d) = (%g, %g, %g) has norm above 1", b, c, d)
	default:
		w = math.Sqrt(w2)
	}
	rot := quatToMat(w, b, c, d)
	z := h.Pixdim
	z[2] *= h.Qfac
	a := identity4()
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			a[i][j] = rot[i][j] * z[j]
		}
	}
	a[0][3], a[1][3], a[2][3] = r.qoffX, r.qoffY, r.qoffZ
	return a, nil
}

// parseExtensions decodes the extension area (the bytes between the header and vox_offset,
// starting with the 4-byte extender). Malformed trailing extensions are ignored, as readers do.
func parseExtensions(b []byte, bo binary.ByteOrder) []Extension {
	if len(b) < 4 || b[0] == 0 {
		return nil
	}
	var out []Extension
	b = b[4:]
	for len(b) >= 8 {
		size := int64(int32(bo.Uint32(b)))
		code := int(int32(bo.Uint32(b[4:])))
		if size < 8 || size > int64(len(b)) {
			break
		}
		out = append(out, Extension{Code: code, Data: append([]byte(nil), b[8:size]...)})
		b = b[size:]
	}
	return out
}
