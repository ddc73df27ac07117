package pipeline

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/gputest"
	"ctseg/internal/shared"
	"ctseg/model"
	"ctseg/volume"
	"ctseg/weights"
)

// TestOcclude: the labels after a cube of bone put into the network's input are, everywhere,
// those of a whole new sliding-window run on the changed input, though only the windows that
// can change were run; they changed, and only inside the touched windows' union.
func TestOcclude(t *testing.T) {
	ctx := gputest.Context(t)
	ct, _, err := volume.ReadNIfTI(shared.Path(t, "data", "ct", "example_ct_sm.nii.gz"))
	require.NoError(t, err)
	net, err := model.NewNet(weights.Random(weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 9, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}, 3))
	require.NoError(t, err)
	opt := Options{Spacing: 3, GPU: ctx, KeepPreLabels: true,
		Window: model.WindowOptions{ROI: [3]int{32, 32, 32}, Overlap: 0.25, Mode: model.Gaussian, SigmaScale: 0.125}}
	p, err := Prepare(ct, opt)
	require.NoError(t, err)
	prev, err := p.Run(net, opt)
	require.NoError(t, err)

	ijk := [3]int{ct.Dims[0] / 2, ct.Dims[1] / 2, ct.Dims[2] / 2}
	o, err := p.Occlude(net, opt, prev, ijk, 15, 1500)
	require.NoError(t, err)
	t.Logf("plan %v: %d windows, the cube %v touches %d, %d re-run; %d input voxels changed", p.plan.Size, o.Windows, o.Box, o.Touched, o.Rerun, o.Changed)
	require.Less(t, o.Rerun, o.Windows, "only a part of the windows is re-run")
	require.Greater(t, o.Touched, 0)
	require.Greater(t, o.Changed, 0, "a cube of bone changes some labels")

	// the whole run on the changed input
	size := p.plan.Size
	vol := &model.Tensor{C: 1, D: size[0], H: size[1], W: size[2], Data: append([]float32(nil), p.vol.Data...)}
	val := p.inv.NormalizedHU(1500)
	box := o.Box
	for d := box[0][0]; d < box[1][0]; d++ {
		for h := box[0][1]; h < box[1][1]; h++ {
			for w := box[0][2]; w < box[1][2]; w++ {
				vol.Data[(d*size[1]+h)*size[2]+w] = val
			}
		}
	}
	g, err := NewGPUNet(net, opt)
	require.NoError(t, err)
	defer g.Release()
	whole := make([]uint8, vol.Voxels())
	require.NoError(t, g.SlidingWindow(vol, p.plan, model.WindowOutput{Labels: whole}, nil))
	require.Equal(t, whole, o.PreLabels, "the merged labels equal a whole new run")
	wholeIn, err := p.invert(whole)
	require.NoError(t, err)
	require.Equal(t, wholeIn, o.Labels)

	// nothing changed outside the touched windows' union, on the network's grid
	for d := range size[0] {
		for h := range size[1] {
			for w := range size[2] {
				i := (d*size[1]+h)*size[2] + w
				in := d >= o.Lo[0] && d < o.Hi[0] && h >= o.Lo[1] && h < o.Hi[1] && w >= o.Lo[2] && w < o.Hi[2]
				if !in && whole[i] != prev.PreLabels[i] {
					t.Fatalf("voxel %v outside the touched windows changed", [3]int{d, h, w})
				}
			}
		}
	}
	before, after := make([]int, 256), make([]int, 256)
	changed := 0
	for i, l := range o.Labels {
		before[prev.Labels[i]]++
		after[l]++
		if l != prev.Labels[i] {
			changed++
		}
	}
	require.Equal(t, before, o.Before)
	require.Equal(t, after, o.After)
	require.Equal(t, changed, o.Changed)

	other := opt
	other.F16 = true
	_, err = p.Occlude(net, other, prev, ijk, 15, 1500)
	require.ErrorContains(t, err, "other settings", "an experiment in f16 against labels made in f32")
	_, err = p.Occlude(net, opt, prev, ijk, 15, float32(math.NaN()))
	require.Error(t, err)
	_, err = p.Occlude(net, opt, &Result{}, ijk, 15, 1500)
	require.ErrorContains(t, err, "segment the CT first")
	_, err = p.Occlude(net, opt, prev, [3]int{-1, 0, 0}, 15, 1500)
	require.ErrorContains(t, err, "outside")
}
