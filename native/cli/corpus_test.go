//go:build !js

package cli_test

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"ctseg/weights"
)

// corpusEnv is what a malformed-input case builds its command line from: a folder for its
// inputs, a separate (initially empty) output folder, and the small golden model.
type corpusEnv struct {
	t       *testing.T
	in, out string
	model   string
}

func (e *corpusEnv) file(name string, b []byte) string {
	return writeFile(e.t, filepath.Join(e.in, name), b)
}

// segment runs the full pipeline on the CPU with the small model and tiny windows, so the
// rare case that got past the reader would still finish in a moment.
func (e *corpusEnv) segment(input string, extra ...string) []string {
	return append([]string{"segment", "--input", input, "--output", filepath.Join(e.out, "labels.nii.gz"),
		"--weights", e.model, "--device", "cpu", "--spacing", "3", "--roi", "16"}, extra...)
}

func (e *corpusEnv) segmentWith(weightsPath string) []string {
	ct := e.file("ct.nii", ctNii().bytes())
	return []string{"segment", "--input", ct, "--output", filepath.Join(e.out, "labels.nii.gz"),
		"--weights", weightsPath, "--device", "cpu", "--spacing", "3", "--roi", "16"}
}

func (e *corpusEnv) preprocess(input string) []string {
	return []string{"preprocess", "--input", input, "--output", filepath.Join(e.out, "pre.nii.gz"), "--spacing", "3"}
}

func (e *corpusEnv) convert(input string) []string {
	return []string{"convert", "--input", input, "--output", filepath.Join(e.out, "model.safetensors")}
}

// forward runs the CPU network on a valid 16^3 input unless the case gives its own.
func (e *corpusEnv) forward(weightsPath, input, shape string, extra ...string) []string {
	if input == "" {
		input = e.file("in.f32", make([]byte, 4*16*16*16))
	}
	return append([]string{"forward", "--weights", weightsPath, "--input", input, "--shape", shape,
		"--output", filepath.Join(e.out, "logits.f32"), "--device", "cpu"}, extra...)
}

// safetensorsOf writes the small model's tensors, changed by mutate, without validation.
func (e *corpusEnv) safetensorsOf(mutate func([]*weights.Tensor) []*weights.Tensor) string {
	return e.file("model.safetensors", rawSafetensors(e.t, mutate(cloneTensors(smallStateDict(e.t)))))
}

type corpusCase struct {
	name string
	cmd  string // the subcommand, as the error line names it
	args func(e *corpusEnv) []string
	want string // expected in the error line (case-insensitive)
}

func withNii(mut func(r *nii)) []byte {
	r := ctNii()
	mut(r)
	return r.bytes()
}

// malformedCorpus is the table of hostile and broken inputs. Every case must end in one
// error line and leave the output folder empty.
func malformedCorpus() []corpusCase {
	seg := func(name, file string, data func(t testing.TB) []byte, want string) corpusCase {
		return corpusCase{name, "segment", func(e *corpusEnv) []string { return e.segment(e.file(file, data(e.t))) }, want}
	}
	nii1 := func(mut func(r *nii)) func(testing.TB) []byte {
		return func(testing.TB) []byte { return withNii(mut) }
	}
	return []corpusCase{
		// NIfTI: container and header.
		seg("truncated .nii", "ct.nii", func(testing.TB) []byte { b := ctNii().bytes(); return b[:len(b)-100] }, "truncated"),
		seg("truncated .nii.gz", "ct.nii.gz", func(t testing.TB) []byte { b := gzipBytes(t, ctNii().bytes()); return b[:len(b)/2] }, "truncated"),
		seg(".nii.gz of a truncated .nii", "ct.nii.gz", func(t testing.TB) []byte { b := ctNii().bytes(); return gzipBytes(t, b[:len(b)-7]) }, "truncated"),
		seg("truncated header", "ct.nii", func(testing.TB) []byte { return ctNii().bytes()[:200] }, "truncated"),
		seg("empty file", "ct.nii", func(testing.TB) []byte { return nil }, "truncated"),
		seg("wrong magic", "ct.nii", nii1(func(r *nii) { r.magic = "abc\x00" }), "magic"),
		seg("analyze pair header", "ct.nii", nii1(func(r *nii) { r.magic = "ni1\x00" }), "pair"),
		seg("sizeof_hdr not 348 or 540", "ct.nii", func(testing.TB) []byte { b := ctNii().bytes(); b[0] = 0x5d; return b }, "not a NIfTI"),
		seg("zero dim", "ct.nii", nii1(func(r *nii) { r.dim[2] = 0 }), "must be positive"),
		seg("negative dim", "ct.nii", nii1(func(r *nii) { r.dim[3] = -16 }), "must be positive"),
		seg("2-D image", "ct.nii", nii1(func(r *nii) { r.dim[0] = 2 }), "only 3-D"),
		seg("5-D image", "ct.nii", nii1(func(r *nii) { r.dim[0], r.dim[5] = 5, 2 }), "5-D"),
		seg("4-D with 2 volumes", "ct.nii", nii1(func(r *nii) { r.dim[0], r.dim[4] = 4, 2; r.data = append(r.data, r.data...) }), "2 volumes"),
		seg("datatype complex64", "ct.nii", nii1(func(r *nii) { r.datatype = 32; r.data = append(r.data, r.data...) }), "complex64"),
		seg("datatype RGB24", "ct.nii", nii1(func(r *nii) { r.datatype = 128 }), "RGB24"),
		seg("datatype code 0", "ct.nii", nii1(func(r *nii) { r.datatype = 0 }), "unsupported NIfTI datatype 0"),
		seg("zero pixdim, no qform or sform", "ct.nii", nii1(func(r *nii) { r.qform, r.sform, r.pixdim[2] = 0, 0, 0 }), "pixdim[2]"),
		seg("NaN pixdim used by the qform", "ct.nii", nii1(func(r *nii) { r.sform, r.pixdim[1] = 0, math.NaN() }), "pixdim[1]"),
		seg("singular sform", "ct.nii", nii1(func(r *nii) { r.srow[2] = [4]float64{3, 0, 0, 5} }), "singular"),
		seg("NaN in sform", "ct.nii", nii1(func(r *nii) { r.srow[0][3] = math.NaN() }), "non-finite"),
		seg("qform quaternion norm above 1", "ct.nii", nii1(func(r *nii) { r.sform, r.quat = 0, [3]float64{0.9, 0.9, 0} }), "quaternion"),
		seg("vox_offset beyond the file", "ct.nii", func(testing.TB) []byte {
			b := ctNii().bytes()
			binary.LittleEndian.PutUint32(b[108:], math.Float32bits(1<<20)) // no padding: the data is not there
			return b
		}, "truncated"),
		seg("vox_offset inside the header", "ct.nii", nii1(func(r *nii) { r.voxOff = 100 }), "inside"),
		seg("valid slope, NaN intercept", "ct.nii", nii1(func(r *nii) { r.slope, r.inter = 2, math.NaN() }), "scl_inter"),
		seg("header claims 2000^3 voxels", "ct.nii", nii1(func(r *nii) { r.dim[1], r.dim[2], r.dim[3] = 2000, 2000, 2000 }), "exceeds the limit"),
		seg("1000 mm voxels: a 10^11-voxel grid at 3 mm", "ct.nii", nii1(func(r *nii) {
			r.srow = [3][4]float64{{1000, 0, 0, 0}, {0, 1000, 0, 0}, {0, 0, 1000, 0}}
		}), "over the limit"),
		{"preprocess: 3e6 mm slices", "preprocess", func(e *corpusEnv) []string {
			return e.preprocess(e.file("ct.nii", withNii(func(r *nii) { r.srow[2][2] = 3e6 })))
		}, "over the limit"},
		{"dry-run: 1000 mm voxels", "segment", func(e *corpusEnv) []string {
			p := e.file("ct.nii", withNii(func(r *nii) { r.srow = [3][4]float64{{1000, 0, 0, 0}, {0, 1000, 0, 0}, {0, 0, 1000, 0}} }))
			return []string{"segment", "--input", p, "--dry-run", "--spacing", "3", "--device", "cpu"}
		}, "over the limit"},
		seg("NIfTI-2 dim beyond int32", "ct.nii", nii1(func(r *nii) { r.v2, r.dim[1] = true, 3_000_000_000 }), "too large"),
		seg("NIfTI-2 negative vox_offset", "ct.nii", func(testing.TB) []byte {
			b := withNii(func(r *nii) { r.v2 = true })
			binary.LittleEndian.PutUint64(b[168:], uint64(0xffffffffffff0000)) // -65536
			return b
		}, "negative vox_offset"),
		// gzip.
		seg("gzip bomb: inflates far beyond its header", "ct.nii.gz", func(t testing.TB) []byte {
			return gzipBytes(t, append(ctNii().bytes(), make([]byte, 32<<20)...))
		}, "gzip bomb"),
		seg("gzip: header claims more than the stream can hold", "ct.nii.gz", func(t testing.TB) []byte {
			return gzipBytes(t, withNii(func(r *nii) { r.dim[1], r.dim[2], r.dim[3] = 1000, 1000, 1000 }))
		}, "expand to at most"),
		seg("not gzip but named .nii.gz", "ct.nii.gz", func(testing.TB) []byte { return []byte("this is a text file, not a CT\n") }, "not a NIfTI"),
		seg("gzip magic then garbage", "ct.nii.gz", func(testing.TB) []byte { return []byte{0x1f, 0x8b, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8} }, "gzip"),
		// Voxel values.
		seg("NaN voxels", "ct.nii", func(testing.TB) []byte {
			v := make([]float32, 16*16*16)
			v[1234] = float32(math.NaN())
			return float32Nii(v).bytes()
		}, "NaN voxels"),
		seg("infinite voxels after scaling", "ct.nii", nii1(func(r *nii) { r.slope = 1e38 }), "infinite voxels"),
		// Not files.
		{"directory as input", "segment", func(e *corpusEnv) []string {
			d := filepath.Join(e.in, "ct.nii")
			if err := os.Mkdir(d, 0o755); err != nil {
				e.t.Fatal(err)
			}
			return e.segment(d)
		}, "directory"},
		{"missing input", "segment", func(e *corpusEnv) []string { return e.segment(filepath.Join(e.in, "nope.nii.gz")) }, "no such file"},
		{"dry-run on a header claiming 2000^3 voxels", "segment", func(e *corpusEnv) []string {
			p := e.file("ct.nii", withNii(func(r *nii) { r.dim[1], r.dim[2], r.dim[3] = 2000, 2000, 2000 }))
			return []string{"segment", "--input", p, "--dry-run", "--spacing", "3", "--device", "cpu"}
		}, "exceeds the limit"},
		// preprocess and invert read the same files.
		{"preprocess: truncated .nii", "preprocess", func(e *corpusEnv) []string {
			b := ctNii().bytes()
			return e.preprocess(e.file("ct.nii", b[:len(b)-1]))
		}, "truncated"},
		{"preprocess: NaN voxels", "preprocess", func(e *corpusEnv) []string {
			v := make([]float32, 16*16*16)
			v[0] = float32(math.NaN())
			return e.preprocess(e.file("ct.nii", float32Nii(v).bytes()))
		}, "NaN voxels"},
		{"preprocess: gzip bomb", "preprocess", func(e *corpusEnv) []string {
			return e.preprocess(e.file("ct.nii.gz", gzipBytes(e.t, append(ctNii().bytes(), make([]byte, 8<<20)...))))
		}, "gzip bomb"},
		{"invert: labels that are not integers", "invert", func(e *corpusEnv) []string {
			v := make([]float32, 16*16*16)
			v[7] = 1.5
			lab := e.file("labels.nii", float32Nii(v).bytes())
			ref := e.file("ct.nii", ctNii().bytes())
			return []string{"invert", "--labels", lab, "--reference", ref, "--output", filepath.Join(e.out, "inv.nii.gz")}
		}, "integers"},
		{"invert: labels not on the reference's preprocessed grid", "invert", func(e *corpusEnv) []string {
			lab := e.file("labels.nii", withNii(func(r *nii) { r.dim[3] = 8; r.datatype = 2; r.data = make([]byte, 16*16*8) }))
			ref := e.file("ct.nii", ctNii().bytes())
			return []string{"invert", "--labels", lab, "--reference", ref, "--output", filepath.Join(e.out, "inv.nii.gz")}
		}, "preprocessed"},

		// Checkpoints.
		{"checkpoint with a foreign pickle global (os.system)", "convert", func(e *corpusEnv) []string {
			return e.convert(e.file("model.pt", torchZip(e.t, pickleGlobal("os", "system", "touch /tmp/pwned"), nil)))
		}, `pickle global "os.system"`},
		{"checkpoint hiding posix.system behind STACK_GLOBAL", "convert", func(e *corpusEnv) []string {
			return e.convert(e.file("model.pt", torchZip(e.t, pickleStackGlobal("posix", "system", "id"), nil)))
		}, `pickle global "posix.system"`},
		{"checkpoint calling builtins.eval", "segment", func(e *corpusEnv) []string {
			return e.segmentWith(e.file("model.pt", torchZip(e.t, pickleGlobal("builtins", "eval", "__import__('os')"), nil)))
		}, `pickle global "builtins.eval"`},
		{"checkpoint zip bomb (70 MB pickle deflated to 70 KB)", "convert", func(e *corpusEnv) []string {
			var b bytes.Buffer
			zw := zip.NewWriter(&b)
			w, err := zw.CreateHeader(&zip.FileHeader{Name: "archive/data.pkl", Method: zip.Deflate})
			if err != nil {
				e.t.Fatal(err)
			}
			w.Write([]byte{0x80, 2})
			w.Write(make([]byte, 70<<20))
			if err := zw.Close(); err != nil {
				e.t.Fatal(err)
			}
			return e.convert(e.file("model.pt", b.Bytes()))
		}, "over the 67108864 byte limit"},
		{"truncated checkpoint zip", "convert", func(e *corpusEnv) []string {
			b := readFile(e.t, smallModel(e.t))
			return e.convert(e.file("model.pt", b[:len(b)/2]))
		}, "zip"},
		{"checkpoint with a corrupted storage record", "forward", func(e *corpusEnv) []string {
			b := readFile(e.t, smallModel(e.t))
			i := bytes.Index(b, []byte("archive/data/0"))
			if i < 0 {
				i = bytes.Index(b, []byte("/data/0"))
			}
			b[i+4096] ^= 0xff // inside the first storage record, past its local header
			return e.forward(e.file("model.pt", b), "", "16,16,16")
		}, "CRC"},
		{"HTML page saved as model.pt", "convert", func(e *corpusEnv) []string {
			return e.convert(e.file("model.pt", []byte("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please sign in</body></html>\n")))
		}, "not a MONAI checkpoint"},
		{"legacy (pre-1.6) torch.save pickle", "convert", func(e *corpusEnv) []string {
			return e.convert(e.file("model.pt", []byte{0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'}))
		}, "legacy"},
		{"empty weight file", "forward", func(e *corpusEnv) []string {
			return e.forward(e.file("model.pt", nil), "", "16,16,16")
		}, "not a MONAI checkpoint"},
		{"weights path is a directory", "convert", func(e *corpusEnv) []string { return e.convert(e.in) }, "not a regular file"},
		// Weights of another network.
		{"weights with an extra tensor", "convert", func(e *corpusEnv) []string {
			return e.convert(e.safetensorsOf(func(ts []*weights.Tensor) []*weights.Tensor {
				return append(ts, &weights.Tensor{Name: "decoder.head.weight", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}})
			}))
		}, "unexpected 1 tensor: decoder.head.weight"},
		{"weights missing a tensor", "forward", func(e *corpusEnv) []string {
			p := e.safetensorsOf(func(ts []*weights.Tensor) []*weights.Tensor {
				for i, t := range ts {
					if strings.HasSuffix(t.Name, "down_layers.1.1.conv1.conv.weight") {
						return append(ts[:i:i], ts[i+1:]...)
					}
				}
				e.t.Fatal("no down_layers.1.1.conv1.conv.weight in the small model")
				return nil
			})
			return e.forward(p, "", "16,16,16")
		}, "missing 1 tensor"},
		{"weights with a different conv shape", "segment", func(e *corpusEnv) []string {
			return e.segmentWith(e.safetensorsOf(func(ts []*weights.Tensor) []*weights.Tensor {
				for _, t := range ts {
					if t.Name == "down_layers.2.1.conv2.conv.weight" {
						t.Shape = []int{t.Shape[0], t.Shape[1], 1, 1, 1}
						t.Data = t.Data[:t.Shape[0]*t.Shape[1]]
					}
				}
				return ts
			}))
		}, "expected ["},
		{"weights of another network (a UNet)", "forward", func(e *corpusEnv) []string {
			p := e.file("unet.safetensors", rawSafetensors(e.t, []*weights.Tensor{
				{Name: "model.0.conv.unit0.conv.weight", Shape: []int{16, 1, 3, 3, 3}, Data: make([]float32, 16*27)},
				{Name: "model.0.conv.unit0.conv.bias", Shape: []int{16}, Data: make([]float32, 16)},
			}))
			return e.forward(p, "", "16,16,16")
		}, "not a segresnet"},
		{"weights holding NaN", "forward", func(e *corpusEnv) []string {
			p := e.safetensorsOf(func(ts []*weights.Tensor) []*weights.Tensor {
				ts[3].Data[1] = float32(math.NaN())
				return ts
			})
			return e.forward(p, "", "16,16,16")
		}, "NaN"},
		{"safetensors header length past the end", "convert", func(e *corpusEnv) []string {
			b := rawSafetensors(e.t, cloneTensors(smallStateDict(e.t)))
			binary.LittleEndian.PutUint64(b, uint64(len(b)))
			return e.convert(e.file("model.safetensors", b))
		}, "not a MONAI checkpoint or ctseg weight file"},
		{"truncated safetensors", "convert", func(e *corpusEnv) []string {
			b := rawSafetensors(e.t, cloneTensors(smallStateDict(e.t)))
			return e.convert(e.file("model.safetensors", b[:len(b)-10]))
		}, "outside the"},
		// forward's raw input.
		{"forward: input size does not match --shape", "forward", func(e *corpusEnv) []string {
			return e.forward(e.model, e.file("in.f32", make([]byte, 4*16*16*15)), "16,16,16")
		}, "shape needs"},
		{"forward: --shape not a multiple of 8 without --roi", "forward", func(e *corpusEnv) []string {
			return e.forward(e.model, e.file("in.f32", make([]byte, 4*20*20*20)), "20,20,20")
		}, "multiples of 8"},
		{"forward: NaN in the input", "forward", func(e *corpusEnv) []string {
			b := make([]byte, 4*16*16*16)
			binary.LittleEndian.PutUint32(b[400:], math.Float32bits(float32(math.NaN())))
			return e.forward(e.model, e.file("in.f32", b), "16,16,16")
		}, "not finite"},
	}
}

func TestMalformedCorpus(t *testing.T) {
	model := smallModel(t)
	cases := malformedCorpus()
	if len(cases) < 20 {
		t.Fatalf("corpus has %d cases, want at least 20", len(cases))
	}

	// Controls: the same command lines on valid inputs succeed, so each case below fails
	// because of its one defect and not because of how the command is spelled.
	t.Run("controls", func(t *testing.T) {
		e := &corpusEnv{t: t, in: t.TempDir(), out: t.TempDir(), model: model}
		mustRun(t, e.segment(e.file("ct.nii", ctNii().bytes()))...)
		mustRun(t, e.preprocess(e.file("ct.nii.gz", gzipBytes(t, ctNii().bytes())))...)
		mustRun(t, e.convert(e.safetensorsOf(func(ts []*weights.Tensor) []*weights.Tensor { return ts }))...)
		mustRun(t, e.forward(model, "", "16,16,16")...)
		got := dirEntries(t, e.out)
		want := []string{"labels.labels.txt", "labels.nii.gz", "logits.f32", "model.safetensors", "pre.nii.gz"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("control outputs %v, want %v", got, want)
		}
	})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &corpusEnv{t: t, in: t.TempDir(), out: t.TempDir(), model: model}
			args := c.args(e)
			r := ctseg(t, args...)
			if r.code != 1 {
				t.Errorf("exit %d, want 1", r.code)
			}
			checkOneLineError(t, r, c.cmd)
			if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(c.want)) {
				t.Errorf("error %q does not mention %q", strings.TrimSpace(r.stderr), c.want)
			}
			if left := dirEntries(t, e.out); len(left) > 0 {
				t.Errorf("output folder holds %v after a failure", left)
			}
			if testing.Verbose() {
				t.Logf("%s", strings.TrimSpace(r.stderr))
			}
		})
	}
}

// checkOutcome accepts either outcome of a mutated input, as long as it is clean: success
// with exactly the expected outputs, or one error line with the output folder left empty.
func checkOutcome(t *testing.T, r cliResult, cmd, outDir string, outputs ...string) {
	t.Helper()
	got := dirEntries(t, outDir)
	if r.code == 0 {
		if strings.Join(got, " ") != strings.Join(outputs, " ") {
			t.Errorf("success left %v in the output folder, want %v", got, outputs)
		}
		return
	}
	checkOneLineError(t, r, cmd)
	if len(got) > 0 {
		t.Errorf("failure left %v in the output folder", got)
	}
}

// TestMalformedBeyondCorpus: inputs outside the table (every other truncation point, random
// byte flips in headers and pickles) end the same way, one line and no output, or succeed.
func TestMalformedBeyondCorpus(t *testing.T) {
	model := smallModel(t)
	rng := rand.New(rand.NewPCG(7, 11))
	good := ctNii().bytes()
	goodGz := gzipBytes(t, good)

	t.Run("truncated .nii", func(t *testing.T) {
		for _, n := range []int{1, 3, 4, 40, 70, 108, 200, 344, 347, 348, 351, 352, 353, len(good) / 2, len(good) - 2} {
			e := &corpusEnv{t: t, in: t.TempDir(), out: t.TempDir(), model: model}
			r := ctseg(t, e.segment(e.file("ct.nii", good[:n]))...)
			if r.code == 0 {
				t.Errorf("cut at %d of %d bytes: accepted", n, len(good))
			}
			checkOutcome(t, r, "segment", e.out)
		}
	})
	t.Run("truncated .nii.gz", func(t *testing.T) {
		for _, n := range []int{1, 2, 9, 10, 11, 30, len(goodGz) / 3, len(goodGz) - 8, len(goodGz) - 5, len(goodGz) - 1} {
			e := &corpusEnv{t: t, in: t.TempDir(), out: t.TempDir(), model: model}
			r := ctseg(t, e.segment(e.file("ct.nii.gz", goodGz[:n]))...)
			if r.code == 0 {
				t.Errorf("gzip cut at %d of %d bytes: accepted", n, len(goodGz))
			}
			checkOutcome(t, r, "segment", e.out)
		}
	})
	// Header flips go through --dry-run: a flipped sform exponent can legally describe a
	// grid of up to 1024^3 voxels, which must be planned, not segmented, in a unit test.
	t.Run("header byte flips (dry-run)", func(t *testing.T) {
		accepted := 0
		for i := 0; i < 60; i++ {
			b := append([]byte(nil), good...)
			for k := 0; k < 1+rng.IntN(3); k++ {
				b[rng.IntN(352)] ^= byte(1 << rng.IntN(8))
			}
			name := "ct.nii"
			if i%3 == 0 {
				name, b = "ct.nii.gz", gzipBytes(t, b)
			}
			e := &corpusEnv{t: t, in: t.TempDir(), out: t.TempDir(), model: model}
			r := ctseg(t, "segment", "--input", e.file(name, b), "--dry-run", "--spacing", "3", "--device", "cpu")
			checkOutcome(t, r, "segment", e.out)
			if r.code == 0 && !strings.Contains(r.stdout, "planned GPU peak") {
				t.Errorf("dry-run succeeded without a plan: %q", r.stdout)
			}
			if r.code == 0 {
				accepted++
			}
		}
		t.Logf("%d of 60 flipped headers accepted", accepted)
	})
	t.Run("checkpoint truncations", func(t *testing.T) {
		pt := readFile(t, model)
		for _, n := range []int{0, 4, 30, 1000, len(pt) / 2, len(pt) - 22, len(pt) - 1} {
			e := &corpusEnv{t: t, in: t.TempDir(), out: t.TempDir(), model: model}
			r := ctseg(t, e.convert(e.file("model.pt", pt[:n]))...)
			if r.code == 0 {
				t.Errorf("checkpoint cut at %d: accepted", n)
			}
			checkOutcome(t, r, "convert", e.out)
		}
	})
	// Pickle flips: the checkpoint is rebuilt with a fresh CRC so that each mutation reaches
	// the unpickler rather than the zip checks.
	t.Run("pickle byte flips", func(t *testing.T) {
		accepted := 0
		entries := zipEntries(t, readFile(t, model))
		var pklName string
		for name := range entries {
			if strings.HasSuffix(name, "/data.pkl") {
				pklName = name
			}
		}
		pkl := entries[pklName]
		if pkl == nil {
			t.Fatalf("no <name>/data.pkl in %s", model)
		}
		for i := 0; i < 25; i++ {
			p := append([]byte(nil), pkl...)
			for k := 0; k < 1+rng.IntN(4); k++ {
				p[rng.IntN(len(p))] = byte(rng.IntN(256))
			}
			mut := map[string][]byte{}
			for name, b := range entries {
				mut[name] = b
			}
			mut[pklName] = p
			e := &corpusEnv{t: t, in: t.TempDir(), out: t.TempDir(), model: model}
			r := ctseg(t, e.convert(e.file("model.pt", rezip(t, mut)))...)
			checkOutcome(t, r, "convert", e.out, "model.safetensors")
			if r.code == 0 {
				accepted++
			}
		}
		t.Logf("%d of 25 flipped pickles accepted", accepted)
	})
}

// zipEntries reads every entry of a zip into memory.
func zipEntries(t testing.TB, b []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = data
	}
	return out
}

// rezip writes entries (sorted by name) as a stored zip.
func rezip(t testing.TB, entries map[string][]byte) []byte {
	t.Helper()
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, n := range names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(entries[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
