// Package dicomtest helps tests outside volume/dicom look into the DICOM files ctseg writes.
package dicomtest

import (
	"bytes"
	"encoding/binary"

	"ctseg/volume/dicom"
)

// PixelData is the pixel data element a written segmentation ends with (tag, VR, length and
// the frames' bits): the OB element of defined length that reaches exactly the end of the
// file, so bytes inside the frames that look like its header are not taken for it. Nil when
// there is none.
func PixelData(b []byte) []byte {
	if !dicom.IsDICOM(b) {
		return nil
	}
	tag := []byte{0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0}
	for off := 0; ; {
		i := bytes.Index(b[off:], tag)
		if i < 0 {
			return nil
		}
		i += off
		if i+12 <= len(b) && i+12+int(binary.LittleEndian.Uint32(b[i+8:])) == len(b) {
			return b[i:]
		}
		off = i + 1
	}
}
