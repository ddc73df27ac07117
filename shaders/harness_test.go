package shaders_test

import (
	"encoding/binary"
	"math"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"

	"ctseg/gpu"
	"ctseg/internal/gputest"
	"ctseg/model"
	"ctseg/shaders"
)

// upload puts a tensor on the GPU in the layout the shaders read: f32 [C][N], or f16 with
// channel pairs interleaved in one u32.
func upload(t *testing.T, ctx *gpu.Context, x *model.Tensor, f16 bool) *gpu.Buffer {
	t.Helper()
	data := encode(x, f16)
	b, err := ctx.NewBuffer("test", uint64(len(data)))
	require.NoError(t, err)
	require.NoError(t, ctx.Write(b, 0, data))
	t.Cleanup(b.Release)
	return b
}

func encode(x *model.Tensor, f16 bool) []byte {
	n := x.Voxels()
	if !f16 {
		out := make([]byte, 4*len(x.Data))
		for i, v := range x.Data {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out
	}
	out := make([]byte, 2*len(x.Data))
	for cp := 0; cp < x.C/2; cp++ {
		for v := 0; v < n; v++ {
			lo := float16.Fromfloat32(x.Data[2*cp*n+v]).Bits()
			hi := float16.Fromfloat32(x.Data[(2*cp+1)*n+v]).Bits()
			binary.LittleEndian.PutUint32(out[4*(cp*n+v):], uint32(lo)|uint32(hi)<<16)
		}
	}
	return out
}

func download(t *testing.T, ctx *gpu.Context, b *gpu.Buffer, c, d, h, w int, f16 bool) *model.Tensor {
	t.Helper()
	x := model.NewTensor(c, d, h, w)
	n := x.Voxels()
	size := uint64(4 * len(x.Data))
	if f16 {
		size /= 2
	}
	raw, err := ctx.Read(b, 0, size)
	require.NoError(t, err)
	if !f16 {
		for i := range x.Data {
			x.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return x
	}
	for cp := 0; cp < c/2; cp++ {
		for v := 0; v < n; v++ {
			u := binary.LittleEndian.Uint32(raw[4*(cp*n+v):])
			x.Data[2*cp*n+v] = float16.Frombits(uint16(u)).Float32()
			x.Data[(2*cp+1)*n+v] = float16.Frombits(uint16(u >> 16)).Float32()
		}
	}
	return x
}

// roundF16 rounds every value to f16, as the GPU sees an f16-stored input.
func roundF16(x *model.Tensor) *model.Tensor {
	y := *x
	y.Data = make([]float32, len(x.Data))
	for i, v := range x.Data {
		y.Data[i] = float16.Fromfloat32(v).Float32()
	}
	return &y
}

func randTensor(rng *rand.Rand, c, d, h, w int) *model.Tensor {
	x := model.NewTensor(c, d, h, w)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	return x
}

func randSlice(rng *rand.Rand, n int, scale, offset float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(offset + scale*rng.NormFloat64())
	}
	return out
}

func newBuf(t *testing.T, ctx *gpu.Context, size uint64) *gpu.Buffer {
	t.Helper()
	b, err := ctx.NewBuffer("test", size)
	require.NoError(t, err)
	t.Cleanup(b.Release)
	return b
}

func floatBuf(t *testing.T, ctx *gpu.Context, v []float32) *gpu.Buffer {
	t.Helper()
	x := &model.Tensor{C: 1, D: 1, H: 1, W: len(v), Data: v}
	return upload(t, ctx, x, false)
}

func run(t *testing.T, ctx *gpu.Context, ds ...gpu.Dispatch) {
	t.Helper()
	require.NoError(t, ctx.NewRunner().Run(ds))
}

func compile(t *testing.T, ctx *gpu.Context, s shaders.Spec) *gpu.Pipeline {
	t.Helper()
	p, err := shaders.Compile(ctx, s)
	require.NoError(t, err)
	return p
}

// relErr is max |got - want| / max(1, max |want|): a scale-free error for comparing sums of
// thousands of terms.
func relErr(t *testing.T, got, want *model.Tensor) float64 {
	t.Helper()
	require.Equal(t, len(want.Data), len(got.Data))
	scale, maxDiff := 1.0, 0.0
	for i, w := range want.Data {
		scale = math.Max(scale, math.Abs(float64(w)))
		d := math.Abs(float64(got.Data[i] - w))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		maxDiff = math.Max(maxDiff, d)
	}
	return maxDiff / scale
}

func device(t *testing.T) *gpu.Context { return gputest.Context(t) }
