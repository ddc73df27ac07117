package weights

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"testing"

	"ctseg/internal/shared"
)

// goldenTorchSeed is the golden small model's real pickle with only its first two storage
// records: the whole unpickler path on a genuine file, at 17 KB instead of 4.7 MB.
func goldenTorchSeed(f *testing.F) []byte {
	data, err := os.ReadFile(shared.Path(f, "golden", "segresnet_small", "model.pt"))
	if err != nil {
		f.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		f.Fatal(err)
	}
	var entries []zipEntry
	for _, zf := range zr.File {
		switch zf.Name {
		case "model/data.pkl", "model/version", "model/data/0", "model/data/1":
			rc, err := zf.Open()
			if err != nil {
				f.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				f.Fatal(err)
			}
			entries = append(entries, zipEntry{zf.Name, b})
		}
	}
	return writeZip(f, entries)
}

func FuzzReadTorch(f *testing.F) {
	f.Add(goldenTorchSeed(f))
	f.Add(checkpoint(f, fakeFromStateDict(Random(tinyConfig, 1))))
	f.Add(checkpoint(f, normalize([]fakeTensor{
		{name: "module.h", shape: []int64{1, 2}, data: []float32{1, 2}, dtype: "HalfStorage", param: true},
		{name: "module.b", shape: []int64{2}, data: []float32{3, 4}, dtype: "BFloat16Storage", offset: 1, numel: 3},
	})))
	f.Add(torchZip(f, new(pk).op(0x80, 2).global("os", "system").str("id").op(0x85, 'R', '.').Bytes(), nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		sd, err := ReadTorch(data)
		if err != nil {
			return
		}
		for _, ts := range sd.Tensors {
			if len(ts.Data) != numel(ts.Shape) {
				t.Fatalf("tensor %s: %d values for shape %v", ts.Name, len(ts.Data), ts.Shape)
			}
		}
		InferConfig(sd) // must not panic on anything the reader accepts
	})
}

func FuzzReadSafetensors(f *testing.F) {
	gold, err := os.ReadFile(shared.Path(f, "golden", "segresnet_small", "model.safetensors"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(gold[:8+7928+1024]) // the real header, data cut short
	for _, f16 := range []bool{false, true} {
		var buf bytes.Buffer
		if err := WriteSafetensors(&buf, Random(tinyConfig, 2), WriteOptions{F16: f16, Metadata: map[string]string{"variant": "x"}}); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add(rawST(`{"a":{"dtype":"BF16","shape":[2,1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}`, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, data []byte) {
		sd, err := ReadSafetensors(data)
		if err != nil {
			return
		}
		if _, err := InferConfig(sd); err != nil {
			return
		}
		// A valid network survives a rewrite bit for bit.
		var buf bytes.Buffer
		if err := WriteSafetensors(&buf, sd, WriteOptions{}); err != nil {
			t.Fatalf("rewrite: %v", err)
		}
		back, err := ReadSafetensors(buf.Bytes())
		if err != nil {
			t.Fatalf("reread: %v", err)
		}
		if len(back.Tensors) != len(sd.Tensors) {
			t.Fatalf("rewrite changed the tensor count")
		}
		for i, ts := range sd.Tensors {
			if !bytes.Equal(f32bytes(ts.Data), f32bytes(back.Tensors[i].Data)) || ts.Name != back.Tensors[i].Name {
				t.Fatalf("rewrite changed tensor %s", ts.Name)
			}
		}
	})
}

func f32bytes(v []float32) []byte {
	var b []byte
	for _, x := range v {
		b = append(b, encodeFloats(nil, []float32{x}, dtF32)...)
	}
	return b
}
