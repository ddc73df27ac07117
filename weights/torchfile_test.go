package weights

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"
)

// This file writes torch.save-style checkpoints for tests: a protocol-2 pickle built opcode by
// opcode (so hostile variants are easy to craft) inside a zip laid out like PyTorch's.

// pk builds a pickle.
type pk struct{ bytes.Buffer }

func (p *pk) op(b ...byte) *pk { p.Write(b); return p }

func (p *pk) str(s string) *pk {
	p.WriteByte('X')
	binary.Write(p, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
	return p
}

func (p *pk) int(n int64) *pk {
	if n >= math.MinInt32 && n <= math.MaxInt32 {
		p.WriteByte('J')
		binary.Write(p, binary.LittleEndian, int32(n))
		return p
	}
	p.op(0x8a, 8)
	binary.Write(p, binary.LittleEndian, n)
	return p
}

func (p *pk) global(mod, name string) *pk {
	p.WriteByte('c')
	p.WriteString(mod + "\n" + name + "\n")
	return p
}

func (p *pk) ints(v []int64) *pk {
	p.op('(')
	for _, x := range v {
		p.int(x)
	}
	return p.op('t')
}

func (p *pk) orderedDict() *pk {
	return p.global("collections", "OrderedDict").op(')', 'R')
}

// fakeTensor describes one pickled tensor; zero values give a plain contiguous f32 tensor
// with its own storage.
type fakeTensor struct {
	name    string
	shape   []int64
	data    []float32
	dtype   string  // "FloatStorage" (default), "HalfStorage", "BFloat16Storage", ...
	key     string  // storage key; default: the tensor's index
	offset  int64   // storage offset
	stride  []int64 // default: C-contiguous
	numel   int64   // storage numel in the persistent id; default len(data)+offset
	param   bool    // wrap in _rebuild_parameter, as nn.Parameter pickles
	noStore bool    // do not write the storage record
}

func contiguousStride(shape []int64) []int64 {
	s := make([]int64, len(shape))
	acc := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// tensorPickle appends name and the _rebuild_tensor_v2 call for t to p.
func (p *pk) tensor(t fakeTensor) *pk {
	if t.param {
		p.global("torch._utils", "_rebuild_parameter").op('(')
	}
	p.global("torch._utils", "_rebuild_tensor_v2").op('(', '(')
	p.str("storage").global("torch", t.dtype).str(t.key).str("cpu").int(t.numel).op('t', 'Q')
	p.int(t.offset).ints(t.shape).ints(t.stride).op(0x89).orderedDict().op('t', 'R')
	if t.param {
		p.op(0x88).orderedDict().op('t', 'R')
	}
	return p
}

// stateDictPickle writes an OrderedDict of the tensors with the _metadata BUILD torch adds.
func (p *pk) stateDict(ts []fakeTensor) *pk {
	p.orderedDict().op('(')
	for _, t := range ts {
		p.str(t.name).tensor(t)
	}
	p.op('u')
	p.op('}').str("_metadata").orderedDict().op('(').str("").op('}').str("version").int(1).op('s', 'u', 's', 'b')
	return p
}

func encodeStorage(t fakeTensor) []byte {
	var b []byte
	n := int(t.numel)
	vals := make([]float32, n)
	copy(vals[min(int(t.offset), n):], t.data)
	for _, v := range vals {
		switch t.dtype {
		case "HalfStorage":
			b = binary.LittleEndian.AppendUint16(b, float16.Fromfloat32(v).Bits())
		case "BFloat16Storage":
			b = binary.LittleEndian.AppendUint16(b, uint16(math.Float32bits(v)>>16))
		case "LongStorage", "DoubleStorage":
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		default:
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return b
}

func normalize(ts []fakeTensor) []fakeTensor {
	out := make([]fakeTensor, len(ts))
	for i, t := range ts {
		if t.dtype == "" {
			t.dtype = "FloatStorage"
		}
		if t.key == "" {
			t.key = strconv.Itoa(i)
		}
		if t.stride == nil {
			t.stride = contiguousStride(t.shape)
		}
		if t.numel == 0 {
			t.numel = int64(len(t.data)) + t.offset
		}
		out[i] = t
	}
	return out
}

type zipEntry struct {
	name string
	data []byte
}

// writeZip lays entries out as torch.save does: stored (uncompressed) records.
func writeZip(t testing.TB, entries []zipEntry) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Store})
		require.NoError(t, err)
		_, err = w.Write(e.data)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// torchZip packs a pickle and the storage records of ts under the "archive/" prefix.
func torchZip(t testing.TB, pickle []byte, ts []fakeTensor) []byte {
	entries := []zipEntry{{"archive/data.pkl", pickle}}
	for _, ft := range ts {
		if !ft.noStore {
			entries = append(entries, zipEntry{"archive/data/" + ft.key, encodeStorage(ft)})
		}
	}
	entries = append(entries, zipEntry{"archive/version", []byte("3\n")})
	return writeZip(t, entries)
}

// fakeFromStateDict turns a StateDict into fakeTensor descriptions.
func fakeFromStateDict(sd *StateDict) []fakeTensor {
	ts := make([]fakeTensor, len(sd.Tensors))
	for i, t := range sd.Tensors {
		shape := make([]int64, len(t.Shape))
		for k, s := range t.Shape {
			shape[k] = int64(s)
		}
		ts[i] = fakeTensor{name: t.Name, shape: shape, data: t.Data}
	}
	return normalize(ts)
}

// checkpoint is the common case: a bare state dict of ts.
func checkpoint(t testing.TB, ts []fakeTensor) []byte {
	ts = normalize(ts)
	p := new(pk).op(0x80, 2).stateDict(ts).op('.')
	return torchZip(t, p.Bytes(), ts)
}
