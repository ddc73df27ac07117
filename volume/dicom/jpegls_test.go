package dicom

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dcmtkFrame returns the pixel data frame of a DCMTK-encoded test file and its header.
func dcmtkFrame(t testing.TB, path string) ([]byte, *header) {
	b, err := os.ReadFile(filepath.Join("testdata", path))
	if err != nil {
		t.Fatal(err)
	}
	h, err := parse(b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := h.frame()
	if err != nil {
		t.Fatal(err)
	}
	return f, h
}

// TestJPEGLSCutAndMislabelled: a JPEG-LS stream cut anywhere gives an error or, where only
// padding was cut, the full image; never a panic or other pixels. A frame whose size is not
// the DICOM header's is refused.
func TestJPEGLSCutAndMislabelled(t *testing.T) {
	f, h := dcmtkFrame(t, "u12/jls/b.dcm")
	want := make([]int64, h.rows*h.cols)
	if err := decodeJPEGLS(f, h.rows, h.cols, func(i int, v int64) { want[i] = v }); err != nil {
		t.Fatal(err)
	}
	for cut := 0; cut < len(f); cut++ {
		got := make([]int64, len(want))
		if err := decodeJPEGLS(f[:cut], h.rows, h.cols, func(i int, v int64) { got[i] = v }); err == nil {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("a stream cut at %d of %d bytes decoded to other pixels", cut, len(f))
				}
			}
		}
	}
	for _, d := range [][2]int{{h.rows + 1, h.cols}, {h.rows, h.cols - 1}} {
		if err := decodeJPEGLS(f, d[0], d[1], func(int, int64) {}); err == nil || !strings.Contains(err.Error(), "the DICOM header says") {
			t.Errorf("%dx%d: %v", d[1], d[0], err)
		}
	}
}

func FuzzJPEGLS(f *testing.F) {
	for _, p := range []string{"u12/jls/a.dcm", "u12/jls_near2/a.dcm", "s16/jls_params/a.dcm"} {
		frame, _ := dcmtkFrame(f, p)
		f.Add(frame)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeJPEGLS(b, 32, 40, func(int, int64) {})
	})
}
