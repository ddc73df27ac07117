//go:build !js

package gpu_test

import (
	"encoding/binary"
	"math"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/gpu"
	"ctseg/internal/gputest"
)

// The callbacks of mapRead and onWorkDone find their Go handle in C memory, which reading the
// binding's Buffer and Queue structs requires to hold the C handle second: a 4100-byte buffer
// must be 4100 bytes to wgpu-native through that field.
func TestObjectLayout(t *testing.T) {
	ctx := gputest.Context(t)
	b, err := ctx.NewBuffer("layout", 4100)
	require.NoError(t, err)
	defer b.Release()
	require.Equal(t, uint64(4100), gpu.RefSize(b.B))
}

// Garbage collections and allocations while a readback and batches are pending must not
// disturb their callbacks. With the binding's own MapAsync and OnSubmittedWorkDone, which
// give wgpu-native the address of an unreferenced Go variable, this panicked ("misuse of an
// invalid Handle") on the first iteration.
func TestAsyncHandlesSurviveGC(t *testing.T) {
	ctx := gputest.Context(t)
	d, in, acc := addDispatch(t, ctx, "add")
	r := ctx.NewRunner()
	r.Ahead = 1
	var sink [][]byte
	churn := func() {
		runtime.GC()
		runtime.GC()
		for i := 0; i < 100000; i++ {
			sink = append(sink[:0], make([]byte, 8))
		}
	}
	want := float32(0)
	for k := 1; k <= 5; k++ {
		require.NoError(t, ctx.Write(in, 0, gpu.Float32Bytes(fill(float32(k)))))
		require.NoError(t, r.Run([]gpu.Dispatch{d}))
		want += float32(k)
		rb, err := ctx.ReadAsync(acc, 0, acc.Size)
		require.NoError(t, err)
		churn()
		raw, err := rb.Wait()
		require.NoError(t, err)
		for i := 0; i < n; i += 97 {
			require.Equal(t, want, math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])), "element %d after %d runs", i, k)
		}
		churn()
	}
	require.NoError(t, r.Drain())
}
