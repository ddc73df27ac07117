//go:build !js

package cli_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"ctseg/cohort"
	"ctseg/internal/cohorttest"
	"ctseg/internal/dicomtest"
	"ctseg/native/cli"
	"ctseg/volume"
)

// The batch tests run the small golden network at 3 mm with 32³ windows on lavapipe (never
// skipped), over crops of example_ct_sm (4 windows each) and the DICOM series (cohorttest).

// modelArgs are the settings every batch and segment run of these tests shares.
func modelArgs(t testing.TB) []string {
	return []string{"--weights", smallModel(t), "--spacing", "3", "--roi", "32", "--device", "gpu"}
}

// theCohort is the manifest of the one-machine tests: two crops, a broken file, a DICOM folder.
var theCohort = []cohorttest.Case{
	{ID: "sub-01", Input: "crop:0,0", Age: "54", Site: "north"},
	{ID: "sub-02", Input: "cropnii:74,53", Age: "61", Site: "south, upper"},
	{ID: "sub-03", Input: "bad", Age: "47", Site: "north"},
	{ID: "sub-04", Input: "dicom", Age: "70", Site: "east"},
}

func batchArgs(t testing.TB, manifest, out string, more ...string) []string {
	return append(append([]string{"batch", "--manifest", manifest, "--out", out}, modelArgs(t)...), more...)
}

func readRecord(t testing.TB, out, id string) *cohort.Record {
	t.Helper()
	r, err := cohort.ReadRecord(filepath.Join(out, cohort.CasesDir, id))
	require.NoError(t, err, id)
	return r
}

func readCSV(t testing.TB, path string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(readFile(t, path))).ReadAll()
	require.NoError(t, err, path)
	return rows
}

// noTemporaries asserts that no atomic-write temporary is left anywhere under dir.
func noTemporaries(t testing.TB, dir string) {
	t.Helper()
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.Contains(fi.Name(), ".tmp-") {
			t.Errorf("temporary left behind: %s", p)
		}
		return err
	}))
}

// TestBatch: every case is done once, the broken one fails alone (exit 2), a rerun skips what is
// done, the summary equals each case's own `ctseg segment`, and three shards merge into the same
// summary as one.
func TestBatch(t *testing.T) {
	d := t.TempDir()
	manifest := cohorttest.Write(t, d, theCohort)
	out := filepath.Join(d, "out")
	r := ctseg(t, batchArgs(t, manifest, out, "--dicom-seg")...)
	require.Equal(t, 2, r.code, "one case fails on its data: exit 2\n%s", r.stderr)
	assert.Contains(t, r.stderr, "shard 0 of 1: 4 of the manifest's 4 cases; 0 already done, 4 to run")
	for _, c := range theCohort {
		assert.Equal(t, 1, strings.Count(r.stderr, "] "+c.ID+": "), "case %s reported once:\n%s", c.ID, r.stderr)
	}
	assert.Contains(t, r.stderr, "3 ok, 1 failed, 0 not run")
	last := strings.Split(strings.TrimSpace(r.stderr), "\n")
	assert.Regexp(t, `^ctseg batch: 1 of 4 cases failed on their data \(first: sub-03: read NIfTI .*sub-03\.nii\.gz: .*\)`, last[len(last)-1])

	bad := readRecord(t, out, "sub-03")
	assert.Equal(t, cohort.StatusFailed, bad.Status)
	assert.Contains(t, bad.Error, "sub-03.nii.gz")
	assert.Empty(t, bad.Outputs)
	assert.Equal(t, []string{cohort.RecordName}, dirEntries(t, filepath.Join(out, cohort.CasesDir, "sub-03")))
	for _, id := range []string{"sub-01", "sub-02", "sub-04"} {
		rec := readRecord(t, out, id)
		assert.Equal(t, cohort.StatusOK, rec.Status, id)
		assert.Equal(t, cohort.Settings{Spacing: 3, Precision: "f16", Device: "gpu", ROI: 32, DicomSeg: true}, rec.Settings)
		assert.Contains(t, rec.Adapter, "llvmpipe")
		assert.Len(t, rec.Weights.SHA256, 64)
		assert.NotEmpty(t, rec.Version)
		require.NotNil(t, rec.Input.Grid)
		assert.Positive(t, rec.Seconds)
		for _, o := range rec.Outputs {
			got, err := cohort.Describe(filepath.Join(out, cohort.CasesDir, id), o.Name)
			require.NoError(t, err)
			assert.Equal(t, o, got, "case.json describes %s/%s as it is", id, o.Name)
		}
	}
	assert.Equal(t, "dicom", readRecord(t, out, "sub-04").Input.Format)
	assert.Equal(t, [3]int{cohorttest.CropSize, cohorttest.CropSize, 30}, readRecord(t, out, "sub-01").Input.Grid.Dims)
	assert.Contains(t, readRecord(t, out, "sub-01").Notes, "no DICOM Segmentation: the input is not a DICOM series")
	noTemporaries(t, out)

	// --dry-run counts without writing or opening the GPU; into a new folder it creates nothing
	r = mustRun(t, batchArgs(t, manifest, out, "--dicom-seg", "--dry-run")...)
	assert.Equal(t, "manifest: 4 cases\nshard 0 of 1: 4 cases, 3 done, 1 to run\n", r.stdout)
	r = mustRun(t, batchArgs(t, manifest, filepath.Join(d, "none"), "--dry-run", "--shards", "3", "--shard", "1")...)
	assert.Equal(t, "manifest: 4 cases\nshard 1 of 3: 1 cases, 0 done, 1 to run\n", r.stdout)
	assert.False(t, exists(filepath.Join(d, "none")))

	// a rerun skips the done cases: their records stay as they were
	before := map[string][]byte{}
	for _, c := range theCohort {
		before[c.ID] = readFile(t, filepath.Join(out, cohort.CasesDir, c.ID, cohort.RecordName))
	}
	r = ctseg(t, batchArgs(t, manifest, out, "--dicom-seg")...)
	require.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "3 already done, 1 to run")
	assert.Contains(t, r.stderr, "[1/1] sub-03: failed")
	for _, id := range []string{"sub-01", "sub-02", "sub-04"} {
		assert.Equal(t, string(before[id]), string(readFile(t, filepath.Join(out, cohort.CasesDir, id, cohort.RecordName))), id)
	}

	// the summary equals each case's own `ctseg segment --stats` (and its label map)
	r = mustRun(t, "batch", "summarize", "--out", out)
	assert.Contains(t, r.stderr, "4 cases: 3 ok, 1 failed, 0 missing")
	structures := readCSV(t, filepath.Join(out, cohort.StructuresName))
	require.Equal(t, []string{"case_id", "age", "site", "label", "name", "voxels", "volume_ml", "mean_hu", "std_hu", "touches_border", "mean_confidence"}, structures[0])
	cases := readCSV(t, filepath.Join(out, cohort.CasesName))
	byCase := map[string][][]string{}
	for _, row := range structures[1:] {
		byCase[row[0]] = append(byCase[row[0]], row)
	}
	ref := filepath.Join(d, "segment")
	require.NoError(t, os.MkdirAll(ref, 0o755))
	for _, id := range []string{"sub-01", "sub-02", "sub-04"} {
		rec := readRecord(t, out, id)
		args := append([]string{"segment", "--input", rec.Input.Path, "--output", filepath.Join(ref, id+".nii.gz"), "--stats", filepath.Join(ref, id+".csv")}, modelArgs(t)...)
		if id == "sub-04" {
			args = append(args, "--dicom-seg", filepath.Join(ref, id+".dcm"))
		}
		mustRun(t, args...)
		stats := readCSV(t, filepath.Join(ref, id+".csv"))
		assert.Equal(t, string(readFile(t, filepath.Join(ref, id+".csv"))), string(readFile(t, filepath.Join(out, cohort.CasesDir, id, cohort.StatsName))), id)
		require.Len(t, byCase[id], len(stats)-1, id)
		border := map[string]bool{}
		for _, l := range rec.TouchesBorder {
			border[fmt.Sprint(l)] = true
		}
		require.Equal(t, append(slices.Clone(cohort.StatsColumns), "mean_confidence"), stats[0], "segment --stats carries the mean confidence")
		for i, row := range byCase[id] {
			// structures.csv: the stats columns, touches_border, then the stats' mean_confidence
			assert.Equal(t, stats[i+1][:6], row[3:9], "%s: structures.csv row %d", id, i)
			assert.Equal(t, fmt.Sprint(border[row[3]]), row[9], "touches_border")
			assert.Equal(t, stats[i+1][6], row[10], "mean_confidence")
			if v, _ := strconv.Atoi(row[5]); v > 0 {
				c, err := strconv.ParseFloat(row[10], 64)
				require.NoError(t, err, "mean_confidence of a structure found")
				assert.True(t, c > 0 && c <= 1, "mean_confidence %v", c)
			}
		}
		want, _, err := volume.ReadLabels(filepath.Join(ref, id+".nii.gz"))
		require.NoError(t, err)
		got, _, err := volume.ReadLabels(filepath.Join(out, cohort.CasesDir, id, cohort.LabelsName))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, got), "%s: labels differ from segment's", id)
		assert.Equal(t, string(readFile(t, filepath.Join(ref, id+".labels.txt"))), string(readFile(t, filepath.Join(out, cohort.CasesDir, id, cohort.TableName))))
		// touches_border: a crop's structures reach its faces; check against the label map
		assert.Equal(t, volume.BorderLabels(got, rec.Input.Grid.Dims), rec.TouchesBorder)
		// the wide table holds the same volumes
		for _, row := range cases[1:] {
			if row[0] == id {
				for i, s := range stats[1:] {
					assert.Equal(t, s[3], row[3+i], "%s: cases.csv volume of %s", id, s[1])
				}
			}
		}
	}
	assert.NotEmpty(t, readRecord(t, out, "sub-01").TouchesBorder, "a 48-voxel crop of a body cuts structures")
	// the DICOM Segmentation: the same frames as segment's (its UIDs and dates differ)
	seg := readFile(t, filepath.Join(out, cohort.CasesDir, "sub-04", cohort.SegName))
	require.NotNil(t, dicomtest.PixelData(seg))
	assert.True(t, bytes.Equal(dicomtest.PixelData(readFile(t, filepath.Join(ref, "sub-04.dcm"))), dicomtest.PixelData(seg)))
	assert.Equal(t, []string{"case_id", "age", "site"}, cases[0][:3])
	assert.Len(t, cases, 4, "a row per ok case")
	status := readCSV(t, filepath.Join(out, cohort.StatusName))
	assert.Equal(t, []string{"case_id", "status", "error", "seconds", "host", "adapter", "version"}, status[0][:7])
	assert.Equal(t, []string{"sub-03", "failed"}, status[3][:2])
	rerun := readCSV(t, filepath.Join(out, cohort.RerunName))
	assert.Equal(t, [][]string{{"case_id", "input", "age", "site"}, {"sub-03", filepath.Join(d, "cohort", "ct", "sub-03.nii.gz"), "47", "north"}}, rerun)

	// rerun.csv is a manifest of the same cohort: it runs into the same folder
	r = ctseg(t, batchArgs(t, filepath.Join(out, cohort.RerunName), out, "--dicom-seg")...)
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "shard 0 of 1: 1 of the manifest's 1 cases; 0 already done, 1 to run")

	// Three shards (two choosing the adapter by index and by name) merge into the same summary.
	out3 := filepath.Join(d, "out3")
	codes := map[int]int{}
	for i, extra := range [][]string{{"--adapter", "0"}, {"--adapter", "llvmpipe"}, nil} {
		r := ctseg(t, batchArgs(t, manifest, out3, append([]string{"--dicom-seg", "--shards", "3", "--shard", fmt.Sprint(i)}, extra...)...)...)
		codes[i] = r.code
	}
	assert.Equal(t, map[int]int{0: 0, 1: 0, 2: 2}, codes, "case 3 of 4 (the broken one) is shard 2's")
	mustRun(t, "batch", "summarize", "--out", out3)
	mustRun(t, "batch", "summarize", "--out", out) // after the rerun above
	for _, name := range []string{cohort.StructuresName, cohort.CasesName, cohort.RerunName} {
		assert.Equal(t, string(readFile(t, filepath.Join(out, name))), string(readFile(t, filepath.Join(out3, name))), name)
	}
	withoutTimes := func(path string) [][]string {
		rows := readCSV(t, path)
		for _, r := range rows[1:] {
			r[3] = "" // seconds
		}
		return rows
	}
	assert.Equal(t, withoutTimes(filepath.Join(out, cohort.StatusName)), withoutTimes(filepath.Join(out3, cohort.StatusName)))
	noTemporaries(t, out3)
}

// TestBatchUsage: what is wrong before anything runs exits 64 with one line, and writes nothing.
func TestBatchUsage(t *testing.T) {
	d := t.TempDir()
	good := writeFile(t, filepath.Join(d, "m.csv"), []byte("case_id,input\na,a.nii\n"))
	dup := writeFile(t, filepath.Join(d, "dup.csv"), []byte("case_id,input\na,a.nii\nb,b.nii\na,c.nii\n"))
	other := writeFile(t, filepath.Join(d, "other.csv"), []byte("case_id,input\nz,z.nii\n"))
	used := filepath.Join(d, "used")
	require.NoError(t, os.MkdirAll(used, 0o755))
	writeFile(t, filepath.Join(used, cohort.ManifestName), []byte("case_id,input\na,"+filepath.Join(d, "a.nii")+"\n"))
	out := filepath.Join(d, "out")
	for _, c := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"no manifest", "", []string{"batch", "--out", out}, "--manifest is required"},
		{"no out", "", []string{"batch", "--manifest", good}, "--out is required"},
		{"missing manifest", "", []string{"batch", "--manifest", filepath.Join(d, "none.csv"), "--out", out}, "no such file"},
		{"duplicate ids", "", []string{"batch", "--manifest", dup, "--out", out}, `line 4: case id "a" repeats line 2`},
		{"shard out of range", "", []string{"batch", "--manifest", good, "--out", out, "--shards", "3", "--shard", "3"}, "shard 3 (--shard) of 3: want 0 to 2"},
		{"shard without shards", "", []string{"batch", "--manifest", good, "--out", out, "--shard", "1"}, "--shard 1 needs --shards N"},
		{"shards without shard", "", []string{"batch", "--manifest", good, "--out", out, "--shards", "2"}, "without --shard I"},
		{"negative shard", "", []string{"batch", "--manifest", good, "--out", out, "--shards", "2", "--shard", "-2"}, "--shard -2: a shard is numbered 0 to N-1"},
		{"negative shard without shards", "", []string{"batch", "--manifest", good, "--out", out, "--shard", "-1"}, "--shard -1: a shard is numbered 0 to N-1"},
		{"negative shard in an array task", "SLURM_ARRAY_TASK_ID=1", []string{"batch", "--manifest", good, "--out", out, "--shards", "2", "--shard", "-2"}, "--shard -2: a shard is numbered 0 to N-1"},
		{"zero shards", "", []string{"batch", "--manifest", good, "--out", out, "--shards", "0"}, "--shards 0: the number of shards must be 1 or more"},
		{"zero shards in an array task", "SLURM_ARRAY_TASK_ID=0", []string{"batch", "--manifest", good, "--out", out, "--shards", "0"}, "--shards 0: the number of shards must be 1 or more"},
		{"manifest is a folder", "", []string{"batch", "--manifest", d, "--out", out}, "is a directory"},
		{"array task without shards", "SLURM_ARRAY_TASK_ID=1", []string{"batch", "--manifest", good, "--out", out}, "$SLURM_ARRAY_TASK_ID is set (a task of an array job) but --shards is not"},
		{"index past shards", "JOB_COMPLETION_INDEX=5", []string{"batch", "--manifest", good, "--out", out, "--shards", "5"}, "shard 5 ($JOB_COMPLETION_INDEX) of 5"},
		{"bad index", "SLURM_ARRAY_TASK_ID=x", []string{"batch", "--manifest", good, "--out", out, "--shards", "5"}, `$SLURM_ARRAY_TASK_ID="x" is not a shard number`},
		{"spacing", "", []string{"batch", "--manifest", good, "--out", out, "--spacing", "2"}, "--spacing 2"},
		{"device", "", []string{"batch", "--manifest", good, "--out", out, "--device", "tpu"}, `--device "tpu"`},
		{"precision", "", []string{"batch", "--manifest", good, "--out", out, "--precision", "f64"}, `--precision "f64"`},
		{"adapter with cpu", "", []string{"batch", "--manifest", good, "--out", out, "--device", "cpu", "--adapter", "0"}, "--adapter chooses a GPU"},
		{"missing weights", "", []string{"batch", "--manifest", good, "--out", out, "--weights", filepath.Join(d, "none.pt")}, "none.pt"},
		{"another cohort's folder", "", []string{"batch", "--manifest", other, "--out", used, "--weights", smallModel(t)}, "holds another cohort"},
		{"stray argument", "", []string{"batch", "--manifest", good, "--out", out, "extra"}, `unexpected argument "extra"`},
		{"summarize without out", "", []string{"batch", "summarize"}, "--out is required"},
		{"summarize a folder without a batch", "", []string{"batch", "summarize", "--out", d}, "has no manifest.csv"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env != "" {
				kv := strings.SplitN(c.env, "=", 2)
				t.Setenv(kv[0], kv[1])
			}
			r := ctseg(t, c.args...)
			assert.Equal(t, 64, r.code, r.stderr)
			assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
			assert.Contains(t, r.stderr, c.want)
			assert.True(t, strings.HasPrefix(r.stderr, "ctseg batch: "), r.stderr)
		})
	}
	assert.False(t, exists(out), "a refused batch wrote its folder")
	// flag errors print the usage and exit 64 too; -h is no error
	r := ctseg(t, "batch", "--no-such-flag")
	assert.Equal(t, 64, r.code)
	assert.Contains(t, r.stderr, "usage: ctseg batch")
	assert.Equal(t, 0, ctseg(t, "batch", "-h").code)
	assert.Equal(t, 0, ctseg(t, "batch", "summarize", "-h").code)
	// a GPU that is not there: exit 1 (the machine's fault: a job engine retries elsewhere)
	r = ctseg(t, "batch", "--manifest", good, "--out", out, "--weights", smallModel(t), "--adapter", "7")
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, `adapter "7": no such adapter (0: llvmpipe`)
}

// TestBatchUnreadable: a manifest or weights that the file system fails to read (EIO:
// /proc/self/mem at offset 0) are the machine's trouble, exit 1 (retried), not a usage error
// (64, which fails a whole Kubernetes Job).
func TestBatchUnreadable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("EIO from /proc/self/mem is Linux's")
	}
	d := t.TempDir()
	good := writeFile(t, filepath.Join(d, "m.csv"), []byte("case_id,input\na,a.nii\n"))
	out := filepath.Join(d, "out")
	for _, args := range [][]string{
		{"batch", "--manifest", "/proc/self/mem", "--out", out, "--weights", smallModel(t)},
		{"batch", "--manifest", good, "--out", out, "--weights", "/proc/self/mem"},
	} {
		r := ctseg(t, args...)
		assert.Equal(t, 1, r.code, "%v: %s", args, r.stderr)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
		assert.Contains(t, r.stderr, "input/output error")
	}
	assert.False(t, exists(out))
}

// TestBatchDeviceFailure: a case whose run fails through the GPU (lost, out of memory, a
// readback that cannot be mapped) or panics is not the data's fault: the batch stops at once
// with exit 1 (a job engine retries it), nothing of the case is kept and it is not marked done
// or failed, so the next run does it. An error of the case's own (a grid over the device's
// limits) still fails the case alone (exit 2).
func TestBatchDeviceFailure(t *testing.T) {
	d := t.TempDir()
	manifest := cohorttest.Write(t, d, smallCohort[:3])
	out := filepath.Join(d, "out")
	record := func(id string) string { return filepath.Join(out, cohort.CasesDir, id, cohort.RecordName) }
	faults := []struct {
		name string
		err  error // nil: a panic
	}{
		{"device lost", fmt.Errorf("gpu: upload: %w", errors.New("wgpu.(*Queue).WriteBuffer(): Parent device is lost"))},
		{"out of memory", fmt.Errorf("gpu: creating buffer logits (4194304 bytes): %w", errors.New("wgpu.(*Device).CreateBuffer(): Not enough memory left"))},
		{"buffer not mapped", errors.New("gpu: readback failed: the buffer could not be mapped")},
		{"panic", nil},
	}
	for i, f := range faults {
		restore := cli.SetRunFault(func(id string) error {
			if id != "c2" {
				return nil
			}
			if f.err == nil {
				panic("boom")
			}
			return f.err
		})
		r := ctseg(t, batchArgs(t, manifest, out)...)
		restore()
		require.Equal(t, 1, r.code, "%s: the device's failure stops the batch with exit 1:\n%s", f.name, r.stderr)
		if i == 0 {
			assert.Contains(t, r.stderr, "[1/3] c1: ok")
			assert.Contains(t, r.stderr, "1 ok, 0 failed, 2 not run")
		} else {
			assert.Contains(t, r.stderr, "1 already done, 2 to run", "%s: c1 stays done", f.name)
			assert.Contains(t, r.stderr, "0 ok, 0 failed, 2 not run", f.name)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		assert.Regexp(t, `^ctseg batch: case c2 failed on the device, not on its data: .*it is not marked done and the batch stops`, lines[len(lines)-1], f.name)
		assert.NotContains(t, r.stderr, "c3:", "%s: no case after the device failed", f.name)
		assert.False(t, exists(record("c2")), "%s: the case is not recorded (as failed or otherwise)", f.name)
		assert.False(t, exists(record("c3")), f.name)
		// each kind once: the count of failures in a row starts again
		require.NoError(t, os.Remove(filepath.Join(out, cohort.CasesDir, "c2", cli.DeviceFailuresName)), f.name)
	}
	mustRun(t, "batch", "summarize", "--out", out)
	status := readCSV(t, filepath.Join(out, cohort.StatusName))
	assert.Equal(t, []string{"c2", "missing"}, status[2][:2])
	assert.Equal(t, []string{"c3", "missing"}, status[3][:2])

	// the case's own error: it fails alone, the batch goes on
	restore := cli.SetRunFault(func(id string) error {
		if id == "c2" {
			return errors.New("gpu: one slice of 600x600 voxels needs 268435456 bytes of accumulator, over this device's binding limit 134217728")
		}
		return nil
	})
	r := ctseg(t, batchArgs(t, manifest, out)...)
	restore()
	require.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "1 already done, 2 to run")
	assert.Contains(t, r.stderr, "[1/2] c2: failed: gpu: one slice")
	assert.Contains(t, r.stderr, "[2/2] c3: ok")
	assert.Equal(t, cohort.StatusFailed, readRecord(t, out, "c2").Status)

	// A case the device fails on every time (a CT the card cannot hold) does not block its
	// shard for ever: the third failure in a row records it as failed, and the batch goes on.
	restore = cli.SetRunFault(func(id string) error {
		if id == "c2" {
			return errors.New("wgpu.(*Device).CreateBuffer(): Not enough memory left")
		}
		return nil
	})
	for run := 1; run <= 3; run++ {
		r = ctseg(t, batchArgs(t, manifest, out)...)
		if run < 3 {
			require.Equal(t, 1, r.code, "run %d: %s", run, r.stderr)
			assert.Contains(t, readRecord(t, out, "c2").Error, "gpu: one slice", "run %d: the case stays as it was", run)
			continue
		}
		require.Equal(t, 2, r.code, r.stderr)
		assert.Contains(t, r.stderr, "c2: failed: the device failed on this case 3 times in a row: ")
		assert.Equal(t, cohort.StatusFailed, readRecord(t, out, "c2").Status)
	}
	// failed, it is not done: the next run tries it again, and one more device failure fails
	// it at once (the count stays beside the failed record) instead of stopping the shard again
	r = ctseg(t, batchArgs(t, manifest, out)...)
	require.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "c2: failed: the device failed on this case 4 times in a row: ")
	restore()

	// the next run does what is not done
	r = mustRun(t, batchArgs(t, manifest, out)...)
	assert.Contains(t, r.stderr, "2 already done, 1 to run")
	assert.Len(t, checkComplete(t, manifest, out), 3)
	noTemporaries(t, out)

	// On the CPU a panic is a bug the case triggers, not the device's: it fails the case alone.
	outCPU := filepath.Join(d, "out-cpu")
	restore = cli.SetRunFault(func(id string) error {
		if id == "c2" {
			panic("boom")
		}
		return nil
	})
	r = ctseg(t, batchArgs(t, manifest, outCPU, "--device", "cpu")...)
	restore()
	require.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "c2: failed: internal error while the network ran: boom")
	assert.Contains(t, r.stderr, "c3: ok")
}

func TestAdapters(t *testing.T) {
	r := mustRun(t, "adapters")
	assert.Regexp(t, `^0\tllvmpipe .*\(vulkan, cpu\)\n`, r.stdout)
}

// batchProcess is `ctseg batch` in a subprocess (the test binary as ctseg, see TestMain), with
// its stderr lines.
type batchProcess struct {
	cmd   *exec.Cmd
	lines chan string
	all   *bytes.Buffer
	done  chan struct{}
}

func startBatch(t *testing.T, args ...string) *batchProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CTSEG_TEST_EXEC=1")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &batchProcess{cmd: cmd, lines: make(chan string, 100), all: &bytes.Buffer{}, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.all.WriteString(sc.Text() + "\n")
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	return p
}

// waitLine waits for a stderr line starting with prefix.
func (p *batchProcess) waitLine(t *testing.T, prefix string) {
	t.Helper()
	timeout := time.After(5 * time.Minute)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("batch ended before a line %q:\n%s", prefix, p.all)
			}
			if strings.HasPrefix(l, prefix) {
				return
			}
		case <-timeout:
			t.Fatalf("no line %q in 5 minutes:\n%s", prefix, p.all)
		}
	}
}

// wait returns the exit status and how long the process took to end after since.
func (p *batchProcess) wait(t *testing.T) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	for range p.lines {
	}
	err := p.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -int(ws.Signal()), time.Since(start)
		}
		return ee.ExitCode(), time.Since(start)
	}
	require.NoError(t, err)
	return 0, time.Since(start)
}

// checkComplete asserts that every case the folder calls done is complete: its record says ok,
// its outputs are as the record describes them, the label map and stats read back.
func checkComplete(t *testing.T, manifest, out string) (done []string) {
	t.Helper()
	f, err := os.Open(manifest)
	require.NoError(t, err)
	m, err := cohort.Parse(f, manifest, filepath.Dir(manifest))
	f.Close()
	require.NoError(t, err)
	for _, c := range m.Cases {
		cdir := filepath.Join(out, cohort.CasesDir, c.ID)
		rec, err := cohort.ReadRecord(cdir)
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err, "%s: a record that does not read", c.ID)
		require.Equal(t, cohort.StatusOK, rec.Status, c.ID)
		for _, o := range rec.Outputs {
			got, err := cohort.Describe(cdir, o.Name)
			require.NoError(t, err, c.ID)
			require.Equal(t, o, got, "%s: %s is not what case.json says", c.ID, o.Name)
		}
		lab, h, err := volume.ReadLabels(filepath.Join(cdir, cohort.LabelsName))
		require.NoError(t, err, c.ID)
		require.Equal(t, rec.Input.Grid.Dims, h.Dims)
		require.Len(t, lab, cohorttest.CropSize*cohorttest.CropSize*30)
		rows := readCSV(t, filepath.Join(cdir, cohort.StatsName))
		require.Equal(t, append(slices.Clone(cohort.StatsColumns), "mean_confidence"), rows[0])
		done = append(done, c.ID)
	}
	return done
}

var smallCohort = []cohorttest.Case{
	{ID: "c1", Input: "crop:0,0", Age: "1", Site: "a"}, {ID: "c2", Input: "crop:74,0", Age: "2", Site: "a"}, {ID: "c3", Input: "crop:0,53", Age: "3", Site: "b"}, {ID: "c4", Input: "crop:74,53", Age: "4", Site: "b"},
}

// TestBatchKilled: a batch killed with SIGKILL mid-case leaves no case marked done that is not
// complete; the next run finishes the rest and leaves no temporary behind.
func TestBatchKilled(t *testing.T) {
	d := t.TempDir()
	manifest := cohorttest.Write(t, d, smallCohort)
	out := filepath.Join(d, "out")
	p := startBatch(t, batchArgs(t, manifest, out)...)
	p.waitLine(t, "[1/4] c1: ok")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	code, _ := p.wait(t)
	require.Equal(t, -int(syscall.SIGKILL), code, "the batch was still running when killed:\n%s", p.all)
	done := checkComplete(t, manifest, out)
	assert.Contains(t, done, "c1")
	assert.NotContains(t, done, "c4", "killed before its last case")
	r := mustRun(t, batchArgs(t, manifest, out)...)
	assert.Contains(t, r.stderr, fmt.Sprintf("%d already done, %d to run", len(done), 4-len(done)))
	assert.Len(t, checkComplete(t, manifest, out), 4)
	noTemporaries(t, out)
}

// TestBatchTerminated: on SIGTERM the batch takes no new case, finishes the current one
// within the grace period, and exits 75 well within 30 s; summarize runs safely meanwhile; a
// second Ctrl-C drops the current case at once.
func TestBatchTerminated(t *testing.T) {
	d := t.TempDir()
	manifest := cohorttest.Write(t, d, smallCohort)
	out := filepath.Join(d, "out")
	p := startBatch(t, batchArgs(t, manifest, out, "--verbose")...)
	p.waitLine(t, "[1/4] c1: ok")
	// summarize while the shard runs: the finished case is ok, the others missing
	r := mustRun(t, "batch", "summarize", "--out", out)
	assert.Regexp(t, `4 cases: [12] ok, 0 failed, [23] missing`, r.stderr)
	p.waitLine(t, "[2/4] c2: started")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	code, took := p.wait(t)
	require.Equal(t, 75, code, p.all.String())
	assert.Less(t, took, 30*time.Second)
	assert.Contains(t, p.all.String(), "ctseg batch: stopped by SIGTERM with ")
	assert.Contains(t, p.all.String(), "[2/4] c2: ok", "the current case finishes within the grace period:\n%s", p.all)
	assert.NotContains(t, p.all.String(), "[3/4]", "no new case after SIGTERM")
	assert.Equal(t, []string{"c1", "c2"}, checkComplete(t, manifest, out))
	noTemporaries(t, out)

	// twice Ctrl-C: the current case (the whole example_ct_sm, 20 windows) is dropped, nothing of it kept
	m2 := writeFile(t, filepath.Join(d, "m2.csv"), []byte(fmt.Sprintf("case_id,input\nsmall,%s\nwhole,%s\n",
		filepath.Join(d, "cohort", "ct", "c1.nii.gz"), exampleCT(t))))
	out2 := filepath.Join(d, "out2")
	p = startBatch(t, batchArgs(t, m2, out2, "--verbose")...)
	p.waitLine(t, "[2/2] whole: started")
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	code, _ = p.wait(t)
	require.Equal(t, 75, code, p.all.String())
	assert.Contains(t, p.all.String(), "[2/2] whole: dropped (stopped by SIGINT)")
	assert.Contains(t, p.all.String(), "1 of 2 cases not run (the one it was running dropped, nothing of it kept)")
	assert.False(t, exists(filepath.Join(out2, cohort.CasesDir, "whole", cohort.RecordName)))
	noTemporaries(t, out2)
}

// TestBatchCPU: --device cpu runs ctseg's CPU implementation (f32 whatever --precision says, so
// the record says f32) and gives what segment --device cpu gives.
func TestBatchCPU(t *testing.T) {
	d := t.TempDir()
	manifest := cohorttest.Write(t, d, smallCohort[:1])
	out := filepath.Join(d, "out")
	cpu := []string{"--weights", smallModel(t), "--spacing", "3", "--roi", "32", "--device", "cpu", "--precision", "f16"}
	mustRun(t, append([]string{"batch", "--manifest", manifest, "--out", out}, cpu...)...)
	rec := readRecord(t, out, "c1")
	assert.Equal(t, cohort.Settings{Spacing: 3, Precision: "f32", Device: "cpu", ROI: 32}, rec.Settings)
	assert.Contains(t, rec.Adapter, "CPU implementation")
	ref := filepath.Join(d, "ref.nii.gz")
	mustRun(t, append([]string{"segment", "--input", rec.Input.Path, "--output", ref}, cpu...)...)
	want, _, err := volume.ReadLabels(ref)
	require.NoError(t, err)
	got, _, err := volume.ReadLabels(filepath.Join(out, cohort.CasesDir, "c1", cohort.LabelsName))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got))
	// the same command again: done (f16 and f32 are one setting on the CPU)
	r := mustRun(t, append([]string{"batch", "--manifest", manifest, "--out", out}, append(cpu[:len(cpu)-1], "f32")...)...)
	assert.Contains(t, r.stderr, "1 already done, 0 to run")
}
