package pipeline_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/gputest"
	"ctseg/internal/shared"
	"ctseg/model"
	"ctseg/pipeline"
	"ctseg/volume"
	"ctseg/weights"
)

// TestSegmentGPUMatchesCPU runs the whole pipeline on a real CT with the small golden model on
// the GPU and with the CPU reference: the label map has the input's grid and affine, and the
// two agree on at least 99.9 % of voxels (issue 4; f32 storage, so differences come only from
// summation order at near-ties).
func TestSegmentGPUMatchesCPU(t *testing.T) {
	ctx := gputest.Context(t)
	ct, _, err := volume.ReadNIfTI(shared.Path(t, "data", "ct", "example_ct.nii.gz"))
	require.NoError(t, err)
	sd, err := weights.Load(shared.Path(t, "golden", "segresnet_small", "model.pt"))
	require.NoError(t, err)
	net, err := model.NewNet(sd)
	require.NoError(t, err)

	opt := pipeline.Options{Spacing: 3, GPU: ctx}
	windows := 0
	opt.Progress = func(done, total int) { windows = total }
	gpuRes, err := pipeline.Segment(ct, net, opt)
	require.NoError(t, err)
	require.Equal(t, ct.Dims, gpuRes.Dims)
	require.Equal(t, ct.Affine, gpuRes.Affine)
	require.Len(t, gpuRes.Labels, len(ct.Data))
	require.Equal(t, 8, windows)
	require.Equal(t, gpuRes.Plan.PeakBytes, gpuRes.PeakGPU, "measured peak equals the plan")

	cpuRes, err := pipeline.Segment(ct, net, pipeline.Options{Spacing: 3})
	require.NoError(t, err)
	same := 0
	classes := map[uint8]bool{}
	for i, l := range gpuRes.Labels {
		if l == cpuRes.Labels[i] {
			same++
		}
		classes[l] = true
	}
	agree := float64(same) / float64(len(gpuRes.Labels))
	t.Logf("GPU vs CPU labels: %.5f%% of %d voxels agree, %d classes present", 100*agree, len(gpuRes.Labels), len(classes))
	require.GreaterOrEqual(t, agree, 0.999)
	require.Greater(t, len(classes), 1, "a constant label map would agree trivially")
}

func TestSegmentCancel(t *testing.T) {
	ctx := gputest.Context(t)
	ct, _, err := volume.ReadNIfTI(shared.Path(t, "data", "ct", "example_ct_sm.nii.gz"))
	require.NoError(t, err)
	net, err := model.NewNet(weights.Random(weights.Config{InitFilters: 8, InChannels: 1, OutChannels: 9, BlocksDown: []int{1, 2, 2, 4}, BlocksUp: []int{1, 1, 1}}, 1))
	require.NoError(t, err)
	opt := pipeline.Options{Spacing: 3, GPU: ctx, Window: model.WindowOptions{ROI: [3]int{32, 32, 32}, Overlap: 0.25, Mode: model.Gaussian, SigmaScale: 0.125}}
	calls := 0
	opt.Cancelled = func() bool { calls++; return calls >= 2 }
	_, err = pipeline.Segment(ct, net, opt)
	require.ErrorIs(t, err, pipeline.ErrCancelled)
	require.Equal(t, 2, calls)
}
