package cohort

import (
	"bytes"
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"ctseg/internal/atomicfile"
	"ctseg/volume"
)

var settings = Settings{Spacing: 3, Precision: "f16", Device: "gpu", ROI: 32}

// batchDir lays out what ctseg batch leaves: the manifest, and per case its outputs and record.
type batchDir struct {
	t   *testing.T
	dir string
	m   *Manifest
}

func newBatchDir(t *testing.T, manifest string) *batchDir {
	d := t.TempDir()
	m, err := Parse(strings.NewReader(manifest), "m.csv", "/in")
	require.NoError(t, err)
	require.NoError(t, atomicfile.Write(filepath.Join(d, ManifestName), atomicfile.Options{}, func(w io.Writer) error { return m.Encode(w, nil) }))
	return &batchDir{t, d, m}
}

// ok writes a case's stats (through the writer segment --stats uses) and its ok record.
func (b *batchDir) ok(id string, stats []volume.StructureStats, border []int) *Record {
	cdir := filepath.Join(b.dir, CasesDir, id)
	require.NoError(b.t, os.MkdirAll(cdir, 0o755))
	var buf bytes.Buffer
	require.NoError(b.t, volume.WriteStatsCSV(&buf, stats))
	require.NoError(b.t, os.WriteFile(filepath.Join(cdir, StatsName), buf.Bytes(), 0o644))
	require.NoError(b.t, os.WriteFile(filepath.Join(cdir, LabelsName), []byte("labels"), 0o644))
	var outs []Output
	for _, n := range []string{LabelsName, StatsName} {
		o, err := Describe(cdir, n)
		require.NoError(b.t, err)
		outs = append(outs, o)
	}
	c := b.find(id)
	r := &Record{CaseID: id, Status: StatusOK, Seconds: 1.234, Host: "h", Version: "v", Adapter: "gpu0",
		Weights: Weights{SHA256: "w"}, Settings: settings, Input: Input{Path: c.Input, Series: c.Series}, Outputs: outs, TouchesBorder: border}
	b.record(id, r)
	return r
}

func (b *batchDir) find(id string) Case {
	for _, c := range b.m.Cases {
		if c.ID == id {
			return c
		}
	}
	b.t.Fatalf("no case %s", id)
	return Case{}
}

func (b *batchDir) record(id string, r *Record) {
	cdir := filepath.Join(b.dir, CasesDir, id)
	require.NoError(b.t, os.MkdirAll(cdir, 0o755))
	require.NoError(b.t, atomicfile.Write(filepath.Join(cdir, RecordName), atomicfile.Options{Force: true}, r.Encode))
}

func (b *batchDir) csv(name string) [][]string {
	f, err := os.Open(filepath.Join(b.dir, name))
	require.NoError(b.t, err)
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	require.NoError(b.t, err)
	return rows
}

func TestStatsColumnsAreSegments(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, volume.WriteStatsCSV(&buf, nil))
	assert.Equal(t, strings.Join(StatsColumns, ",")+"\n", buf.String())
}

func TestSummarize(t *testing.T) {
	b := newBatchDir(t, "case_id,input,age,series\nA,a.nii,50,\nB,b,61,1.2\nC,c.nii,70,\nD,d.nii,80,\nE,e.nii,90,\nF,f.nii,40,\n")
	st := func(vol ...float64) []volume.StructureStats {
		var out []volume.StructureStats
		for i, v := range vol {
			out = append(out, volume.StructureStats{Label: i + 1, Name: []string{"spleen", "liver", "aorta"}[i], Voxels: int64(v * 10), VolumeML: v, MeanHU: 40.5, StdHU: 3.25})
		}
		return out
	}
	b.ok("A", st(1.5, 20, 3.125), []int{2})
	b.ok("B", st(2, 30, 4), nil)
	b.record("C", &Record{CaseID: "C", Status: StatusFailed, Error: "read NIfTI c.nii: truncated", Seconds: 0.5, Host: "h", Version: "v", Adapter: "gpu0", Settings: settings})
	// D: never run. E: its stats changed after the record (a rerun under way): not trusted.
	b.ok("E", st(9, 9, 9), nil)
	require.NoError(t, os.WriteFile(filepath.Join(b.dir, CasesDir, "E", StatsName), []byte("label,name,voxels,volume_ml,mean_hu,std_hu\n"), 0o644))
	// F: a corrupt record
	require.NoError(t, os.MkdirAll(filepath.Join(b.dir, CasesDir, "F"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(b.dir, CasesDir, "F", RecordName), []byte("{\"case_id\": "), 0o644))

	n, err := Summarize(b.dir)
	require.NoError(t, err)
	assert.Equal(t, Counts{OK: 2, Failed: 1, Missing: 3}, n)

	assert.Equal(t, [][]string{
		{"case_id", "age", "label", "name", "voxels", "volume_ml", "mean_hu", "std_hu", "touches_border", "mean_confidence"},
		{"A", "50", "1", "spleen", "15", "1.5", "40.5", "3.25", "false", ""},
		{"A", "50", "2", "liver", "200", "20", "40.5", "3.25", "true", ""},
		{"A", "50", "3", "aorta", "31", "3.125", "40.5", "3.25", "false", ""},
		{"B", "61", "1", "spleen", "20", "2", "40.5", "3.25", "false", ""},
		{"B", "61", "2", "liver", "300", "30", "40.5", "3.25", "false", ""},
		{"B", "61", "3", "aorta", "40", "4", "40.5", "3.25", "false", ""},
	}, b.csv(StructuresName))
	assert.Equal(t, [][]string{
		{"case_id", "age", "spleen_volume_ml", "liver_volume_ml", "aorta_volume_ml"},
		{"A", "50", "1.5", "20", "3.125"},
		{"B", "61", "2", "30", "4"},
	}, b.csv(CasesName))
	status := b.csv(StatusName)
	assert.Equal(t, StatusColumns, status[0])
	assert.Equal(t, []string{"case_id", "status", "error", "seconds", "host", "adapter", "version"}, status[0][:7], "the interface's leading columns")
	get := func(id string) []string {
		for _, r := range status[1:] {
			if r[0] == id {
				return r
			}
		}
		t.Fatalf("no status row for %s", id)
		return nil
	}
	assert.Equal(t, []string{"A", "ok", "", "1.23", "h", "gpu0", "v", "w", settings.String()}, get("A"))
	assert.Equal(t, []string{"C", "failed", "read NIfTI c.nii: truncated", "0.5", "h", "gpu0", "v", "", settings.String()}, get("C"))
	assert.Equal(t, []string{"D", "missing", "", "", "", "", "", "", ""}, get("D"))
	assert.Equal(t, "missing", get("E")[1])
	assert.Contains(t, get("E")[2], "is not the one case.json lists")
	assert.Equal(t, "missing", get("F")[1])
	assert.Contains(t, get("F")[2], "case.json")
	assert.Len(t, status, 7, "every case of the manifest")

	// rerun.csv is the manifest's own form, and a manifest within it
	assert.Equal(t, [][]string{{"case_id", "input", "age", "series"}, {"C", "/in/c.nii", "70", ""}, {"D", "/in/d.nii", "80", ""},
		{"E", "/in/e.nii", "90", ""}, {"F", "/in/f.nii", "40", ""}}, b.csv(RerunName))
	f, err := os.Open(filepath.Join(b.dir, RerunName))
	require.NoError(t, err)
	rerun, err := Parse(f, RerunName, b.dir)
	f.Close()
	require.NoError(t, err)
	require.NoError(t, rerun.Within(b.m))

	// idempotent: the same folder gives the same bytes, and no temporaries are left
	before := map[string][]byte{}
	for _, name := range []string{StructuresName, CasesName, StatusName, RerunName} {
		before[name], _ = os.ReadFile(filepath.Join(b.dir, name))
	}
	_, err = Summarize(b.dir)
	require.NoError(t, err)
	for name, want := range before {
		got, _ := os.ReadFile(filepath.Join(b.dir, name))
		assert.Equal(t, string(want), string(got), name)
	}
	es, _ := os.ReadDir(b.dir)
	for _, e := range es {
		assert.False(t, strings.HasPrefix(e.Name(), "."), "temporary %s left", e.Name())
	}
}

func TestSummarizeNothingYet(t *testing.T) {
	b := newBatchDir(t, "case_id,input\nA,a\n")
	n, err := Summarize(b.dir)
	require.NoError(t, err)
	assert.Equal(t, Counts{Missing: 1}, n)
	assert.Equal(t, [][]string{{"case_id", "label", "name", "voxels", "volume_ml", "mean_hu", "std_hu", "touches_border", "mean_confidence"}}, b.csv(StructuresName))
	assert.Equal(t, [][]string{{"case_id"}}, b.csv(CasesName))
	assert.Equal(t, [][]string{{"case_id", "input"}, {"A", "/in/a"}}, b.csv(RerunName))

	_, err = Summarize(t.TempDir())
	require.ErrorIs(t, err, ErrNoBatch)
}

func TestDone(t *testing.T) {
	b := newBatchDir(t, "case_id,input,series\nA,a.nii,\nB,b,1.2\n")
	cdir := filepath.Join(b.dir, CasesDir, "A")
	key := Key{Input: "/in/a.nii", Weights: "w", Settings: settings}
	done, why := Done(cdir, "A", key)
	assert.False(t, done)
	assert.Equal(t, "not run", why)

	r := b.ok("A", nil, nil)
	done, why = Done(cdir, "A", key)
	assert.True(t, done, why)

	other := settings
	other.Precision = "f32"
	for _, c := range []struct {
		name string
		id   string
		key  Key
		want string
	}{
		{"other settings", "A", Key{Input: "/in/a.nii", Weights: "w", Settings: other}, "other settings"},
		{"other weights", "A", Key{Input: "/in/a.nii", Weights: "x", Settings: settings}, "other weights"},
		{"other input", "A", Key{Input: "/in/z.nii", Weights: "w", Settings: settings}, "another input"},
		{"other series", "A", Key{Input: "/in/a.nii", Series: "9", Weights: "w", Settings: settings}, "another input"},
		{"record of another case", "Z", key, `case.json is of case "A"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			done, why := Done(cdir, c.id, c.key)
			assert.False(t, done)
			assert.Contains(t, why, c.want)
		})
	}
	// an output gone or of another size: not done
	require.NoError(t, os.WriteFile(filepath.Join(cdir, LabelsName), []byte("labels, but longer"), 0o644))
	done, why = Done(cdir, "A", key)
	assert.False(t, done)
	assert.Contains(t, why, "labels.nii.gz is missing or changed")
	require.NoError(t, os.Remove(filepath.Join(cdir, LabelsName)))
	done, _ = Done(cdir, "A", key)
	assert.False(t, done)

	r.Status = StatusFailed
	b.record("A", r)
	done, why = Done(cdir, "A", key)
	assert.False(t, done)
	assert.Equal(t, "status failed", why)
}
