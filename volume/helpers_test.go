package volume

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"testing"

	"github.com/okieraised/gonii/pkg/nifti"
)

// rawNii builds NIfTI files byte by byte for tests, with full control of every header field.
type rawNii struct {
	v2       bool
	bo       binary.ByteOrder
	dim      [8]int64
	pixdim   [8]float64
	datatype int
	bitpix   int
	slope    float64
	inter    float64
	sform    int
	qform    int
	srow     [3][4]float64
	quat     [3]float64
	qoff     [3]float64
	voxOff   float64 // 0: header + 4
	data     []byte
}

func newRawNii(dims [3]int, datatype int, data []byte) *rawNii {
	return &rawNii{
		bo:       binary.LittleEndian,
		dim:      [8]int64{3, int64(dims[0]), int64(dims[1]), int64(dims[2]), 1, 1, 1, 1},
		pixdim:   [8]float64{1, 1, 1, 1, 1, 1, 1, 1},
		datatype: datatype,
		slope:    1,
		sform:    1,
		srow:     [3][4]float64{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}},
		data:     data,
	}
}

func (r *rawNii) bytes(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	if !r.v2 {
		var h nifti.Nii1Header
		h.SizeofHdr = 348
		h.Magic = nifti.NIFTI_1_MAGIC_SINGLE
		for i := range h.Dim {
			h.Dim[i] = int16(r.dim[i])
			h.Pixdim[i] = float32(r.pixdim[i])
		}
		h.Datatype, h.Bitpix = int16(r.datatype), int16(r.bitpix)
		h.VoxOffset = float32(r.voxOff)
		if r.voxOff == 0 {
			h.VoxOffset = 352
		}
		h.SclSlope, h.SclInter = float32(r.slope), float32(r.inter)
		h.SformCode, h.QformCode = int16(r.sform), int16(r.qform)
		for j := 0; j < 4; j++ {
			h.SrowX[j], h.SrowY[j], h.SrowZ[j] = float32(r.srow[0][j]), float32(r.srow[1][j]), float32(r.srow[2][j])
		}
		h.QuaternB, h.QuaternC, h.QuaternD = float32(r.quat[0]), float32(r.quat[1]), float32(r.quat[2])
		h.QoffsetX, h.QoffsetY, h.QoffsetZ = float32(r.qoff[0]), float32(r.qoff[1]), float32(r.qoff[2])
		if err := binary.Write(&b, r.bo, &h); err != nil {
			t.Fatal(err)
		}
		b.Write([]byte{0, 0, 0, 0})
		for int64(b.Len()) < int64(h.VoxOffset) {
			b.WriteByte(0)
		}
	} else {
		var h nifti.Nii2Header
		h.SizeofHdr = 540
		h.Magic = nifti.NIFTI_2_MAGIC_SINGLE
		h.Dim = r.dim
		h.Pixdim = r.pixdim
		h.Datatype, h.Bitpix = int16(r.datatype), int16(r.bitpix)
		h.VoxOffset = int64(r.voxOff)
		if r.voxOff == 0 {
			h.VoxOffset = 544
		}
		h.SclSlope, h.SclInter = r.slope, r.inter
		h.SformCode, h.QformCode = int32(r.sform), int32(r.qform)
		h.SrowX, h.SrowY, h.SrowZ = r.srow[0], r.srow[1], r.srow[2]
		h.QuaternB, h.QuaternC, h.QuaternD = r.quat[0], r.quat[1], r.quat[2]
		h.QoffsetX, h.QoffsetY, h.QoffsetZ = r.qoff[0], r.qoff[1], r.qoff[2]
		if err := binary.Write(&b, r.bo, &h); err != nil {
			t.Fatal(err)
		}
		b.Write([]byte{0, 0, 0, 0})
		for int64(b.Len()) < h.VoxOffset {
			b.WriteByte(0)
		}
	}
	b.Write(r.data)
	return b.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// encode writes values of the given Go type in byte order bo.
func encode(t testing.TB, bo binary.ByteOrder, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, bo, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
