//go:build !js

package cli_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"sort"
	"strings"
	"testing"

	"ctseg/internal/shared"
	"ctseg/native/cli"
	"ctseg/weights"
)

// cliResult is one in-process run of ctseg.
type cliResult struct {
	code           int
	stdout, stderr string
}

// ctseg runs the command line in-process, as `ctseg args...`.
func ctseg(t testing.TB, args ...string) cliResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(args, &out, &errb)
	if code == 3 {
		t.Errorf("ctseg %s: recovered panic (exit 3): %s", strings.Join(args, " "), errb.String())
	}
	return cliResult{code, out.String(), errb.String()}
}

// mustRun runs ctseg and fails the test unless it exits 0.
func mustRun(t testing.TB, args ...string) cliResult {
	t.Helper()
	r := ctseg(t, args...)
	if r.code != 0 {
		t.Fatalf("ctseg %s: exit %d\nstderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// checkOneLineError asserts the shape of every failure: exit 1 (not 0, not the panic
// status 3), and stderr exactly one line "ctseg <cmd>: ..." with no Go internals in it.
func checkOneLineError(t testing.TB, r cliResult, cmd string) {
	t.Helper()
	if r.code == 0 || r.code == 3 {
		t.Errorf("exit %d, want a plain failure", r.code)
	}
	if !strings.HasSuffix(r.stderr, "\n") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr is not exactly one line: %q", r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "ctseg "+cmd+": ") {
		t.Errorf("stderr does not start with %q: %q", "ctseg "+cmd+": ", r.stderr)
	}
	for _, bad := range []string{"goroutine", "panic", ".go:", "internal error"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("stderr contains %q: %q", bad, r.stderr)
		}
	}
}

// dirEntries lists a directory's names (hidden temporary files included), sorted.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func writeFile(t testing.TB, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Shared test data.
func smallModel(t testing.TB) string {
	return shared.Path(t, "golden", "segresnet_small", "model.pt")
}

func exampleCT(t testing.TB) string  { return shared.Path(t, "data", "ct", "example_ct_sm.nii.gz") }
func exampleSeg(t testing.TB) string { return shared.Path(t, "data", "ct", "example_seg.nii.gz") }

// nii describes a NIfTI file built byte by byte at the offsets of nifti1.h / nifti2.h (written
// here independently of the reader, which uses gonii's structs), so every field can be made
// wrong on purpose.
type nii struct {
	v2       bool
	dim      [8]int64
	pixdim   [8]float64
	datatype int
	voxOff   float64 // 0: header + 4
	slope    float64
	inter    float64
	qform    int
	sform    int
	quat     [3]float64
	srow     [3][4]float64
	magic    string // "" for the right one
	data     []byte
}

// ctNii is a valid 16x16x16 int16 CT at 3 mm, RAS, with a body-like blob in air.
func ctNii() *nii {
	const n = 16
	vals := make([]int16, n*n*n)
	for z := 0; z < n; z++ {
		for y := 0; y < n; y++ {
			for x := 0; x < n; x++ {
				v := int16(-1000)
				dx, dy, dz := x-8, y-8, z-8
				if dx*dx+dy*dy+dz*dz < 36 {
					v = int16(40 + 3*x - 2*y + z)
				}
				vals[x+n*(y+n*z)] = v
			}
		}
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, vals)
	return &nii{
		dim:      [8]int64{3, n, n, n, 1, 1, 1, 1},
		pixdim:   [8]float64{1, 3, 3, 3, 1, 1, 1, 1},
		datatype: 4,
		slope:    1,
		qform:    1,
		sform:    1,
		srow:     [3][4]float64{{3, 0, 0, -24}, {0, 3, 0, -24}, {0, 0, 3, -24}},
		data:     b.Bytes(),
	}
}

// float32Nii is the same grid holding float32 values.
func float32Nii(vals []float32) *nii {
	r := ctNii()
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, vals)
	r.datatype, r.data = 16, b.Bytes()
	return r
}

func (r *nii) bytes() []byte {
	le := binary.LittleEndian
	f32 := func(b []byte, off int, v float64) { le.PutUint32(b[off:], math.Float32bits(float32(v))) }
	f64 := func(b []byte, off int, v float64) { le.PutUint64(b[off:], math.Float64bits(v)) }
	var h []byte
	if !r.v2 {
		h = make([]byte, 352)
		le.PutUint32(h[0:], 348)
		for i, d := range r.dim {
			le.PutUint16(h[40+2*i:], uint16(int16(d)))
			f32(h, 76+4*i, r.pixdim[i])
		}
		le.PutUint16(h[70:], uint16(r.datatype))
		le.PutUint16(h[72:], uint16(bitpix(r.datatype)))
		off := r.voxOff
		if off == 0 {
			off = 352
		}
		f32(h, 108, off)
		f32(h, 112, r.slope)
		f32(h, 116, r.inter)
		h[123] = 2 // mm
		le.PutUint16(h[252:], uint16(r.qform))
		le.PutUint16(h[254:], uint16(r.sform))
		for i, q := range r.quat {
			f32(h, 256+4*i, q)
		}
		for i := 0; i < 3; i++ {
			f32(h, 268+4*i, r.srow[i][3]) // qoffset = the sform's translation
			for j := 0; j < 4; j++ {
				f32(h, 280+16*i+4*j, r.srow[i][j])
			}
		}
		magic := "n+1\x00"
		if r.magic != "" {
			magic = r.magic
		}
		copy(h[344:348], magic)
	} else {
		h = make([]byte, 544)
		le.PutUint32(h[0:], 540)
		magic := "n+2\x00\r\n\x1a\n"
		if r.magic != "" {
			magic = r.magic
		}
		copy(h[4:12], magic)
		le.PutUint16(h[12:], uint16(r.datatype))
		le.PutUint16(h[14:], uint16(bitpix(r.datatype)))
		for i, d := range r.dim {
			le.PutUint64(h[16+8*i:], uint64(d))
			f64(h, 104+8*i, r.pixdim[i])
		}
		off := int64(r.voxOff)
		if off == 0 {
			off = 544
		}
		le.PutUint64(h[168:], uint64(off))
		f64(h, 176, r.slope)
		f64(h, 184, r.inter)
		le.PutUint32(h[344:], uint32(r.qform))
		le.PutUint32(h[348:], uint32(r.sform))
		for i, q := range r.quat {
			f64(h, 352+8*i, q)
		}
		for i := 0; i < 3; i++ {
			f64(h, 376+8*i, r.srow[i][3])
			for j := 0; j < 4; j++ {
				f64(h, 400+32*i+8*j, r.srow[i][j])
			}
		}
		le.PutUint32(h[500:], 2)
	}
	for len(h) < int(r.voxOff) {
		h = append(h, 0)
	}
	return append(h, r.data...)
}

func bitpix(dt int) int {
	switch dt {
	case 2, 256:
		return 8
	case 4, 512:
		return 16
	case 8, 16, 768:
		return 32
	case 32, 64, 1024, 1280:
		return 64
	case 128:
		return 24
	}
	return 0
}

func gzipBytes(t testing.TB, b []byte) []byte {
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

// smallStateDict loads the golden small SegResNet (F=8, K=9).
func smallStateDict(t testing.TB) *weights.StateDict {
	t.Helper()
	sd, err := weights.Load(smallModel(t))
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

// rawSafetensors writes tensors in the safetensors layout without any validation (unlike
// weights.WriteSafetensors), so a file can describe another network.
func rawSafetensors(t testing.TB, ts []*weights.Tensor) []byte {
	t.Helper()
	type entry struct {
		Dtype       string   `json:"dtype"`
		Shape       []int    `json:"shape"`
		DataOffsets []uint64 `json:"data_offsets"`
	}
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var data []byte
	for _, ts := range ts {
		begin := uint64(len(data))
		for _, v := range ts.Data {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
		}
		shape := ts.Shape
		if shape == nil {
			shape = []int{}
		}
		hdr[ts.Name] = entry{"F32", shape, []uint64{begin, uint64(len(data))}}
	}
	hb, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	for len(hb)%8 != 0 {
		hb = append(hb, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hb)))
	return append(append(out, hb...), data...)
}

// cloneTensors deep-copies a state dict's tensors so a case can mutate them.
func cloneTensors(sd *weights.StateDict) []*weights.Tensor {
	out := make([]*weights.Tensor, len(sd.Tensors))
	for i, ts := range sd.Tensors {
		out[i] = &weights.Tensor{Name: ts.Name, Shape: append([]int(nil), ts.Shape...), Data: append([]float32(nil), ts.Data...)}
	}
	return out
}

// torchZip writes a torch.save-style zip ("archive/data.pkl", "archive/version", records).
func torchZip(t testing.TB, pickle []byte, records map[string][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	put := func(name string, data []byte) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	put("archive/data.pkl", pickle)
	put("archive/version", []byte("3\n"))
	names := make([]string, 0, len(records))
	for n := range records {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		put("archive/data/"+n, records[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pickleGlobal is protocol-2 pickle calling module.name(arg): GLOBAL, a string, TUPLE1,
// REDUCE, STOP. Unpickling it in Python would run the call.
func pickleGlobal(module, name, arg string) []byte {
	p := []byte{0x80, 2, 'c'}
	p = append(p, module+"\n"+name+"\n"...)
	p = append(p, 'X')
	p = binary.LittleEndian.AppendUint32(p, uint32(len(arg)))
	p = append(p, arg...)
	return append(p, 0x85, 'R', '.')
}

// pickleStackGlobal is the same through protocol 4's STACK_GLOBAL, nested as the value of a
// dict entry, the way a hostile state dict would hide it.
func pickleStackGlobal(module, name, arg string) []byte {
	str := func(p []byte, s string) []byte {
		p = append(p, 0x8c, byte(len(s)))
		return append(p, s...)
	}
	p := []byte{0x80, 4, '}'}
	p = str(p, "convInit.conv.weight")
	p = str(p, module)
	p = str(p, name)
	p = append(p, 0x93)
	p = str(p, arg)
	return append(p, 0x85, 'R', 's', '.')
}
