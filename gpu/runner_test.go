//go:build !js

package gpu_test

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/gpu"
	"ctseg/internal/gputest"
)

// addShader adds inp to acc element-wise: each run's result depends on the upload before it.
const addShader = `
@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
	if (g.x < arrayLength(&acc)) { acc[g.x] += inp[g.x]; }
}`

const n = 4096

func addDispatch(t *testing.T, ctx *gpu.Context, kind string) (gpu.Dispatch, *gpu.Buffer, *gpu.Buffer) {
	t.Helper()
	p, err := ctx.Pipeline("add", addShader, []gpu.Access{gpu.ReadOnly, gpu.ReadWrite})
	require.NoError(t, err)
	in, err := ctx.NewBuffer("in", 4*n)
	require.NoError(t, err)
	acc, err := ctx.NewBuffer("acc", 4*n)
	require.NoError(t, err)
	t.Cleanup(func() { in.Release(); acc.Release() })
	bg, err := ctx.BindGroup(p, gpu.Whole(in), gpu.Whole(acc))
	require.NoError(t, err)
	// FLOPs far over the starting budget put every dispatch in a batch of its own
	return gpu.Dispatch{Label: kind, Kind: kind, P: p, Group: bg, X: n / 64, Y: 1, Z: 1, FLOPs: 1e13}, in, acc
}

func fill(v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func readFloats(t *testing.T, ctx *gpu.Context, b *gpu.Buffer) []float32 {
	t.Helper()
	raw, err := ctx.Read(b, 0, b.Size)
	require.NoError(t, err)
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out
}

// With Ahead, Run returns while its batch still runs and the caller uploads the next input
// at once (as the sliding window does): every upload must still land after the work
// submitted before it and before the work submitted after it.
func TestRunnerAheadKeepsUploadsInOrder(t *testing.T) {
	ctx := gputest.Context(t)
	d, in, acc := addDispatch(t, ctx, "add")
	r := ctx.NewRunner()
	r.Ahead = 1
	var seen []int
	r.Progress = func(done, total int) { seen = append(seen, done) }
	want := float32(0)
	for k := 1; k <= 30; k++ {
		require.NoError(t, ctx.Write(in, 0, gpu.Float32Bytes(fill(float32(k)))))
		require.NoError(t, r.Run([]gpu.Dispatch{d}))
		want += float32(k)
	}
	require.NoError(t, r.Drain())
	require.Len(t, seen, 30, "every batch reports once it is done")
	for i, v := range readFloats(t, ctx, acc) {
		require.Equal(t, want, v, "element %d", i)
	}
}

// A readback collected late sees the buffer as it was when the readback was submitted, not
// the work and uploads queued after it, and its staging buffer counts until it is collected.
func TestReadAsyncSeesQueueOrder(t *testing.T) {
	ctx := gputest.Context(t)
	d, in, acc := addDispatch(t, ctx, "add")
	r := ctx.NewRunner()
	r.Ahead = 1
	require.NoError(t, ctx.Write(in, 0, gpu.Float32Bytes(fill(2))))
	require.NoError(t, r.Run([]gpu.Dispatch{d}))
	base := ctx.LiveBytes()
	rb, err := ctx.ReadAsync(acc, 0, acc.Size)
	require.NoError(t, err)
	require.Equal(t, base+acc.Size, ctx.LiveBytes(), "the staging buffer is live until collected")
	for k := 0; k < 3; k++ { // queued behind the readback, while it is still uncollected
		require.NoError(t, ctx.Write(in, 0, gpu.Float32Bytes(fill(5))))
		require.NoError(t, r.Run([]gpu.Dispatch{d}))
	}
	raw, err := rb.Wait()
	require.NoError(t, err)
	require.Equal(t, base, ctx.LiveBytes(), "collecting frees the staging buffer")
	rb.Release() // a second release does nothing
	require.Equal(t, base, ctx.LiveBytes())
	for i := 0; i < n; i++ {
		require.Equal(t, float32(2), math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])), "element %d", i)
	}
	require.NoError(t, r.Drain())
	for i, v := range readFloats(t, ctx, acc) {
		require.Equal(t, float32(17), v, "element %d", i)
	}
	_, err = ctx.ReadAsync(acc, 4, acc.Size)
	require.Error(t, err, "a range past the buffer's end")
	require.Equal(t, base, ctx.LiveBytes())
}

// Timestamps time every dispatch per kind. lavapipe (CI) offers them, so there the check
// cannot quietly fall back to the wall clock.
func TestTimingPerKind(t *testing.T) {
	ctx := gputest.Context(t)
	if strings.Contains(ctx.Adapter, "llvmpipe") {
		require.True(t, ctx.Timestamps, "lavapipe offers timestamp-query; the device must have asked for it")
	}
	if !ctx.Timestamps {
		_, err := ctx.NewTiming()
		require.Error(t, err, "a device without timestamp queries cannot time")
		return
	}
	a, in, acc := addDispatch(t, ctx, "a")
	b := a
	b.Kind, b.Label = "b", "b"
	require.NoError(t, ctx.Write(in, 0, gpu.Float32Bytes(fill(1))))
	tm, err := ctx.NewTiming()
	require.NoError(t, err)
	defer tm.Release()
	r := ctx.NewRunner()
	r.Timing = tm
	require.NoError(t, r.Run([]gpu.Dispatch{a, b, a, a}))
	kinds := map[string]gpu.KindTime{}
	sum := 0.0
	for _, k := range tm.Kinds() {
		kinds[k.Kind] = k
		sum += k.Seconds
		require.Greater(t, k.Seconds, 0.0, "kind %s", k.Kind)
	}
	require.Len(t, kinds, 2)
	require.Equal(t, 3, kinds["a"].Dispatches)
	require.Equal(t, 1, kinds["b"].Dispatches)
	require.Equal(t, 3e13, kinds["a"].FLOPs)
	// the dispatches lie within the span of their batches, which lie within the wall clock
	require.LessOrEqual(t, sum, tm.BusySeconds()*(1+1e-9))
	require.LessOrEqual(t, tm.BusySeconds(), tm.WallSeconds()*1.2)
	for i, v := range readFloats(t, ctx, acc) {
		require.Equal(t, float32(4), v, "timed runs compute the same: element %d", i)
	}
}
