package weights

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"

	"ctseg/internal/shared"
)

func writeST(t *testing.T, sd *StateDict, opt WriteOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, WriteSafetensors(&buf, sd, opt))
	return buf.Bytes()
}

func TestSafetensorsRoundTripF32(t *testing.T) {
	sd := Random(smallConfig, 3)
	opt := WriteOptions{Metadata: map[string]string{"variant": "highres", "spacing": "1.5"}}
	data := writeST(t, sd, opt)
	require.Equal(t, data, writeST(t, sd, opt), "output must be deterministic")

	h := binary.LittleEndian.Uint64(data)
	require.Zero(t, (8+h)%8, "data section must start 8-byte aligned")

	got, err := ReadSafetensors(data)
	require.NoError(t, err)
	requireBitEqual(t, sd, got)
	require.Equal(t, FormatName, got.Meta["format"])
	require.Equal(t, "F32", got.Meta["dtype"])
	require.Equal(t, "highres", got.Meta["variant"])
	require.Equal(t, "1.5", got.Meta["spacing"])
	require.Equal(t, "1", got.Meta["format_version"])
	var c configJSON
	require.NoError(t, json.Unmarshal([]byte(got.Meta["config"]), &c))
	require.Equal(t, configJSON{8, 1, 3, []int{1, 1}, []int{1}}, c)
}

func TestSafetensorsRoundTripF16(t *testing.T) {
	sd := Random(smallConfig, 4)
	sd.Tensors[0].Data[0] = 65504   // largest half
	sd.Tensors[0].Data[1] = 1e-9    // underflows to zero: allowed, it is rounding
	sd.Tensors[0].Data[2] = -3.1e-5 // subnormal half
	f32 := writeST(t, sd, WriteOptions{})
	f16 := writeST(t, sd, WriteOptions{F16: true})
	ratio := float64(len(f16)) / float64(len(f32))
	require.InDelta(t, 0.5, ratio, 0.02, "f16 file %d bytes vs f32 %d", len(f16), len(f32))

	got, err := ReadSafetensors(f16)
	require.NoError(t, err)
	require.Equal(t, "F16", got.Meta["dtype"])
	require.Len(t, got.Tensors, len(sd.Tensors))
	for i, w := range sd.Tensors {
		g := got.Tensors[i]
		require.Equal(t, w.Name, g.Name)
		require.Equal(t, w.Shape, g.Shape)
		for k, v := range w.Data {
			// Exactly IEEE round-to-nearest-even, and within half an ulp of f16 (2^-11 relative)
			// for normal values.
			require.Equal(t, float16.Fromfloat32(v).Float32(), g.Data[k])
			if math.Abs(float64(v)) > 6.2e-5 {
				require.InEpsilon(t, v, g.Data[k], 1.0/2048)
			}
		}
	}
}

func TestSafetensorsF16OutOfRange(t *testing.T) {
	sd := Random(smallConfig, 5)
	sd.Tensors[3].Data[2] = 70000
	var buf bytes.Buffer
	err := WriteSafetensors(&buf, sd, WriteOptions{F16: true})
	require.ErrorContains(t, err, "tensor "+sd.Tensors[3].Name+" element 2 = 70000 is outside the float16 range")
	require.Zero(t, buf.Len(), "a refused write must not leave partial output")
	require.NoError(t, WriteSafetensors(&buf, sd, WriteOptions{}), "f32 can hold it")
}

func TestWriteSafetensorsRefusals(t *testing.T) {
	var buf bytes.Buffer
	err := WriteSafetensors(&buf, Random(smallConfig, 1), WriteOptions{Metadata: map[string]string{"format": "x"}})
	require.ErrorContains(t, err, `metadata key "format" is reserved`)

	bad := Random(smallConfig, 1)
	bad.Tensors[2].Data[0] = float32(math.NaN())
	require.ErrorContains(t, WriteSafetensors(&buf, bad, WriteOptions{}), "holds NaN")
	require.Zero(t, buf.Len())
}

func TestGoldenSafetensorsRewrite(t *testing.T) {
	data, err := os.ReadFile(shared.Path(t, "golden", "segresnet_small", "model.safetensors"))
	require.NoError(t, err)
	sd, err := ReadSafetensors(data)
	require.NoError(t, err)
	out := writeST(t, sd, WriteOptions{})
	require.InDelta(t, len(data), len(out), 1024)
	got, err := ReadSafetensors(out)
	require.NoError(t, err)
	requireBitEqual(t, sd, got)
}

// rawST assembles a safetensors file from a header string and a data section.
func rawST(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func TestReadSafetensorsRefusals(t *testing.T) {
	d16 := make([]byte, 16)
	hdrLen := func(n uint64) []byte { return append(binary.LittleEndian.AppendUint64(nil, n), `{}`...) }
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"header length beyond file", hdrLen(1000), "header length 1000 runs past the end"},
		{"header length huge", hdrLen(math.MaxUint64), "runs past the end"},
		{"bad JSON", rawST(`{"a": {"dtype": "F32",`, d16), "bad header"},
		{"not an object", rawST(`[1,2]`, d16), "not a JSON object"},
		{"trailing garbage", rawST(`{} x`, d16), "trailing data"},
		{"offsets out of range", rawST(`{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}`, d16), "outside the 16 data bytes"},
		{"offsets reversed", rawST(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}`, d16), "outside"},
		{"size mismatch", rawST(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}`, d16), "shape [3] of F32 needs 12"},
		{"overlap", rawST(`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, d16),
			"tensors a and b overlap"},
		{"bad dtype", rawST(`{"a":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}`, d16), `dtype "I64"`},
		{"negative shape", rawST(`{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}`, d16), "bad shape"},
		{"huge shape", rawST(`{"a":{"dtype":"F32","shape":[65536,65536],"data_offsets":[0,16]}}`, d16), "more than 2^31"},
		{"negative offset", rawST(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[-1,16]}}`, d16), "bad header entry"},
		{"one offset", rawST(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[16]}}`, d16), "[begin, end]"},
		{"duplicate key", rawST(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, d16),
			`names "a" twice`},
		{"metadata not strings", rawST(`{"__metadata__":{"a":1}}`, d16), "bad __metadata__"},
		{"empty name", rawST(`{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, d16), "empty name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() { _, err = ReadSafetensors(c.data) })
			require.ErrorContains(t, err, c.want)
			require.False(t, strings.Contains(err.Error(), "\n"))
		})
	}
}

func TestReadSafetensorsOrder(t *testing.T) {
	// Data order wins over JSON order; padding spaces after the object are fine.
	d := make([]byte, 12)
	binary.LittleEndian.PutUint32(d[0:], math.Float32bits(1))
	binary.LittleEndian.PutUint32(d[4:], math.Float32bits(2))
	binary.LittleEndian.PutUint32(d[8:], math.Float32bits(3))
	h := `{"z":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"__metadata__":{"k":"v"},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}   `
	sd, err := ReadSafetensors(rawST(h, d))
	require.NoError(t, err)
	require.Equal(t, "a", sd.Tensors[0].Name)
	require.Equal(t, "z", sd.Tensors[1].Name)
	require.Equal(t, []float32{3}, sd.Tensors[1].Data)
	require.Equal(t, []int{2, 2}, sd.Tensors[0].Shape)
	require.Equal(t, map[string]string{"k": "v"}, sd.Meta)
}
