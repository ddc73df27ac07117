//go:build !js

// Package deploy_test checks the job files of deploy/: the Kubernetes manifests against the
// Job API's schema and rules without a cluster, and the Slurm array on a real single-node Slurm.
package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// readJob decodes a Job manifest strictly into the Kubernetes API's own Go types (k8s.io/api):
// an unknown or misspelt field, a duplicate key or a value of the wrong type is an error, as
// the API server's strict field validation (kubectl apply's default) makes it.
func readJob(t *testing.T, name string) *batchv1.Job {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("kubernetes", name))
	require.NoError(t, err)
	require.NotContains(t, "\n"+string(b), "\n---", "%s: one document per file", name)
	var job batchv1.Job
	require.NoError(t, yaml.UnmarshalStrict(b, &job), name)
	require.Equal(t, "batch/v1", job.APIVersion)
	require.Equal(t, "Job", job.Kind)
	require.NotEmpty(t, job.Name)
	return &job
}

// The strict decoding is what finds mistakes: a misspelt field, a field at the wrong level, a
// string where a number goes, a repeated key.
func TestKubernetesStrictDecodingCatchesMistakes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("kubernetes", "ctseg-indexed-job.yaml"))
	require.NoError(t, err)
	good := string(b)
	for _, c := range []struct{ name, old, new string }{
		{"misspelt field", "backoffLimitPerIndex:", "backoffLimitPerIdx:"},
		{"field at the wrong level", "  podReplacementPolicy: Failed", "  restartPolicy: Never # belongs to the pod\n  podReplacementPolicy: Failed"},
		{"string for a number", "completions: 8", "completions: eight"},
		{"repeated key", "parallelism: 2", "parallelism: 2\n  parallelism: 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(good, c.old, c.new, 1)
			require.NotEqual(t, good, bad)
			var job batchv1.Job
			err := yaml.UnmarshalStrict([]byte(bad), &job)
			assert.Error(t, err)
			t.Log(err)
		})
	}
}

// exitAction evaluates a pod failure policy for a pod whose container exited with code, as the
// Job controller does: the first rule that matches decides; none matching counts the failure.
func exitAction(p *batchv1.PodFailurePolicy, container string, code int32) batchv1.PodFailurePolicyAction {
	for _, r := range p.Rules {
		e := r.OnExitCodes
		if e == nil || (e.ContainerName != nil && *e.ContainerName != container) {
			continue
		}
		in := slices.Contains(e.Values, code)
		if (e.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) == in {
			return r.Action
		}
	}
	return batchv1.PodFailurePolicyActionCount
}

// TestKubernetesIndexedJob holds the Indexed Job to the rules the Job API documents for the
// fields it uses (k8s.io/api/batch/v1's field comments) and to ctseg's exit statuses.
func TestKubernetesIndexedJob(t *testing.T) {
	job := readJob(t, "ctseg-indexed-job.yaml")
	s := job.Spec
	require.NotNil(t, s.CompletionMode)
	assert.Equal(t, batchv1.IndexedCompletion, *s.CompletionMode)
	require.NotNil(t, s.Completions)
	require.NotNil(t, s.Parallelism)
	assert.Positive(t, *s.Parallelism)
	assert.LessOrEqual(t, *s.Parallelism, *s.Completions)
	pod := s.Template.Spec
	// backoffLimitPerIndex "can only be set when Job's completionMode=Indexed, and the Pod's
	// restart policy is Never"; podFailurePolicy "cannot be used in combination with
	// restartPolicy=OnFailure"
	require.NotNil(t, s.BackoffLimitPerIndex)
	assert.GreaterOrEqual(t, *s.BackoffLimitPerIndex, int32(1), "a pod lost with its node is retried")
	assert.Equal(t, corev1.RestartPolicyNever, pod.RestartPolicy)
	// "When using podFailurePolicy, Failed is the the only allowed value."
	require.NotNil(t, s.PodReplacementPolicy)
	assert.Equal(t, batchv1.Failed, *s.PodReplacementPolicy)
	assert.Equal(t, job.Spec.Template.Labels["app.kubernetes.io/name"], "ctseg")

	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	p := s.PodFailurePolicy
	require.NotNil(t, p)
	assert.LessOrEqual(t, len(p.Rules), 20, "at most 20 rules")
	for i, r := range p.Rules {
		assert.True(t, (r.OnExitCodes == nil) != (r.OnPodConditions == nil), "rule %d: one of onExitCodes and onPodConditions", i)
		if r.Action == batchv1.PodFailurePolicyActionFailIndex {
			assert.NotNil(t, s.BackoffLimitPerIndex, "FailIndex can only be used when backoffLimitPerIndex is set")
		}
		if e := r.OnExitCodes; e != nil {
			// "must be ordered and must not contain duplicates. Value '0' cannot be used for the
			// In operator. At least one element is required. At most 255"
			assert.True(t, slices.IsSorted(e.Values), "rule %d: values ordered", i)
			assert.Len(t, slices.Compact(slices.Clone(e.Values)), len(e.Values), "rule %d: no duplicates", i)
			assert.NotEmpty(t, e.Values)
			assert.LessOrEqual(t, len(e.Values), 255)
			if e.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn {
				assert.NotContains(t, e.Values, int32(0))
			}
			require.NotNil(t, e.ContainerName, "rule %d names the container", i)
			assert.Equal(t, c.Name, *e.ContainerName, "rule %d: containerName must match a container", i)
		}
		for _, pc := range r.OnPodConditions {
			assert.Equal(t, corev1.DisruptionTarget, pc.Type)
		}
	}
	// ctseg batch's exit statuses: 2 fails the index, 75 is retried without counting, 64 fails
	// the job, anything else (1: no GPU, a disk full) counts against backoffLimitPerIndex.
	for code, want := range map[int32]batchv1.PodFailurePolicyAction{
		2: batchv1.PodFailurePolicyActionFailIndex, 75: batchv1.PodFailurePolicyActionIgnore,
		64: batchv1.PodFailurePolicyActionFailJob, 1: batchv1.PodFailurePolicyActionCount,
		137: batchv1.PodFailurePolicyActionCount,
	} {
		assert.Equal(t, want, exitAction(p, c.Name, code), "exit %d", code)
	}

	// ctseg stops within 30 s of SIGTERM
	require.NotNil(t, pod.TerminationGracePeriodSeconds)
	assert.GreaterOrEqual(t, *pod.TerminationGracePeriodSeconds, int64(30))
	gpu := c.Resources.Limits["nvidia.com/gpu"]
	assert.Equal(t, int64(1), gpu.Value(), "one GPU per pod")
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	assert.Contains(t, env["NVIDIA_DRIVER_CAPABILITIES"], "graphics", "the NVIDIA toolkit mounts the Vulkan driver only with graphics")
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = true
	}
	for _, v := range pod.Volumes {
		assert.True(t, mounts[v.Name], "volume %s is mounted", v.Name)
	}

	// the command line is ctseg batch's: --shards equals completions, and ctseg itself accepts it
	// (with the index the Job gives): it gets as far as the manifest, which is not here
	require.Equal(t, []string{"ctseg"}, c.Command)
	var shards string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--shards="); ok {
			shards = v
		}
	}
	assert.Equal(t, strconv.Itoa(int(*s.Completions)), shards, "--shards is completions")
	r := runCtseg(t, []string{"JOB_COMPLETION_INDEX=" + strconv.Itoa(int(*s.Completions)-1)}, append(c.Args, "--dry-run")...)
	assert.Equal(t, 64, r.code, r.stderr)
	assert.Contains(t, r.stderr, "--manifest: open /cohort/manifest.csv: no such file or directory")

	sum := readJob(t, "ctseg-summarize-job.yaml")
	sc := sum.Spec.Template.Spec
	assert.Equal(t, corev1.RestartPolicyNever, sc.RestartPolicy)
	require.Len(t, sc.Containers, 1)
	assert.Equal(t, []string{"ctseg"}, sc.Containers[0].Command)
	r = runCtseg(t, nil, sc.Containers[0].Args...)
	assert.Equal(t, 64, r.code, r.stderr)
	assert.Contains(t, r.stderr, "no batch in /cohort/out")
	assert.Equal(t, pod.Volumes, sc.Volumes, "the summary reads the same volume")
}
