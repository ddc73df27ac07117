package shaders_test

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/gpu"
	"ctseg/model"
	"ctseg/shaders"
)

// TestUpsampleAdd compares upsample_add.wgsl with the CPU trilinear x2 + skip on odd sizes,
// sizes of 1 (every index clamps) and f16 storage. Tolerance: 1e-6 scale-free in f32 (a few
// roundings), 2e-3 in f16.
func TestUpsampleAdd(t *testing.T) {
	ctx := device(t)
	cases := [][4]int{{2, 1, 1, 1}, {4, 3, 5, 7}, {8, 6, 1, 9}, {64, 3, 3, 3}, {16, 12, 12, 12}}
	rng := rand.New(rand.NewSource(5))
	for _, tc := range cases {
		for _, f16 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v_f16%v", tc, f16), func(t *testing.T) {
				c, d, h, w := tc[0], tc[1], tc[2], tc[3]
				low := randTensor(rng, c, d, h, w)
				skip := randTensor(rng, c, 2*d, 2*h, 2*w)
				if f16 {
					low, skip = roundF16(low), roundF16(skip)
				}
				want := model.UpsampleAdd(low, skip)
				require.NotNil(t, want)
				spec := &shaders.UpsampleAdd{C: c, D: d, H: h, W: w, F16: f16}
				p := compile(t, ctx, spec)
				size := uint64(4 * len(skip.Data))
				if f16 {
					size /= 2
				}
				out := newBuf(t, ctx, size)
				bg, err := ctx.BindGroup(p, gpu.Whole(upload(t, ctx, low, f16)), gpu.Whole(upload(t, ctx, skip, f16)), gpu.Whole(out))
				require.NoError(t, err)
				x, y, z := spec.Grid()
				run(t, ctx, gpu.Dispatch{P: p, Group: bg, X: x, Y: y, Z: z})
				got := download(t, ctx, out, c, 2*d, 2*h, 2*w, f16)
				tol := 1e-6
				if f16 {
					tol = 2e-3
				}
				require.LessOrEqual(t, relErr(t, got, want), tol)
			})
		}
	}
}
