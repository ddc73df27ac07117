package cohort

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"

	"ctseg/internal/atomicfile"
	"ctseg/volume"
)

// StatsColumns are the leading columns of a case's stats.csv (`ctseg segment --stats`,
// volume.WriteStatsCSV); volume.ConfidenceColumn follows them where the confidence was
// computed.
var StatsColumns = volume.StatsColumns

// The summary's files in DIR, and the leading columns other programs read from them.
const (
	StructuresName = "structures.csv" // long: one row per case and structure
	CasesName      = "cases.csv"      // wide: one row per case, a volume column per structure
	StatusName     = "status.csv"     // every case of the manifest
	RerunName      = "rerun.csv"      // the failed and missing cases, as a manifest
	volumeSuffix   = "_volume_ml"     // cases.csv's column of a structure: NAME_volume_ml
)

// StatusColumns are status.csv's columns; the first seven are the interface, the rest say
// what each case was run with.
var StatusColumns = []string{"case_id", "status", "error", "seconds", "host", "adapter", "version", "weights_sha256", "settings"}

// maxStatsBytes bounds what is read of a stats.csv (about 6 KB for the 104 structures).
const maxStatsBytes = 16 << 20

// Counts are the cases of a summary by status.
type Counts struct{ OK, Failed, Missing int }

// caseStatus is what the first pass learnt of a case.
type caseStatus struct {
	c        Case
	status   string
	err      string
	rec      *Record
	statsSHA string // of the stats.csv the record lists (ok cases)
}

// ErrNoBatch is returned for a folder that holds no batch.
var ErrNoBatch = errors.New("no batch")

// Summarize merges the cases of the batch in dir into structures.csv, cases.csv, status.csv
// and rerun.csv (written together, atomically). It only reads what batch writes atomically
// (case.json last, the outputs it lists before), and uses a case's stats only when their
// checksum is the one its record holds, so it may run while shards are still running: a case
// not finished yet is missing. The same folder gives the same files byte for byte.
func Summarize(dir string) (Counts, error) {
	var n Counts
	mpath := filepath.Join(dir, ManifestName)
	mb, err := readLimited(mpath, MaxManifestBytes)
	if errors.Is(err, os.ErrNotExist) {
		return n, fmt.Errorf("%w in %s: it has no %s (run ctseg batch --out %s first)", ErrNoBatch, dir, ManifestName, dir)
	}
	if err != nil {
		return n, err
	}
	m, err := Parse(bytes.NewReader(mb), mpath, dir)
	if err != nil {
		return n, err
	}
	cases := make([]caseStatus, len(m.Cases))
	structs := map[int]string{} // label -> name, over every ok case: cases.csv's columns
	for i, c := range m.Cases {
		cs := caseStatus{c: c, status: StatusMissing}
		cdir := filepath.Join(dir, CasesDir, c.ID)
		rec, err := ReadRecord(cdir)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			cs.err = oneLine(err.Error())
		case rec.CaseID != c.ID:
			cs.err = fmt.Sprintf("case.json is of case %q", rec.CaseID)
		case rec.Status == StatusFailed:
			cs.status, cs.err, cs.rec = StatusFailed, rec.Error, rec
		case rec.Status == StatusOK:
			cs.rec = rec
			rows, sha, err := readStats(cdir, rec)
			if err != nil {
				cs.err = oneLine(err.Error())
				break
			}
			cs.status, cs.statsSHA = StatusOK, sha
			for _, r := range rows {
				l, _ := strconv.Atoi(r[0])
				if _, ok := structs[l]; !ok {
					structs[l] = r[1]
				}
			}
		default:
			cs.err = fmt.Sprintf("case.json has status %q", rec.Status)
		}
		switch cs.status {
		case StatusOK:
			n.OK++
		case StatusFailed:
			n.Failed++
		default:
			n.Missing++
		}
		cases[i] = cs
	}
	labelsSeen := make([]int, 0, len(structs))
	for l := range structs {
		labelsSeen = append(labelsSeen, l)
	}
	sort.Ints(labelsSeen)

	carried := m.Carried()
	var outs atomicfile.Set
	defer outs.Abort()
	// structures.csv: case_id, the carried columns, the stats columns, touches_border, mean_confidence
	head := append(append(append([]string{ColCaseID}, carried...), StatsColumns...), "touches_border", "mean_confidence")
	err = writeCSV(&outs, filepath.Join(dir, StructuresName), head, func(write func([]string) error) error {
		return eachOK(dir, cases, func(cs caseStatus, rows [][]string) error {
			border := map[int]bool{}
			for _, l := range cs.rec.TouchesBorder {
				border[l] = true
			}
			lead := append([]string{cs.c.ID}, m.CarriedValues(cs.c)...)
			for _, r := range rows {
				l, _ := strconv.Atoi(r[0])
				row := append(append(append([]string(nil), lead...), r[:len(StatsColumns)]...), strconv.FormatBool(border[l]), r[len(StatsColumns)])
				if err := write(row); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return n, err
	}
	// cases.csv: case_id, the carried columns, NAME_volume_ml per structure (ok cases)
	head = append([]string{ColCaseID}, carried...)
	col := map[int]int{}
	for i, l := range labelsSeen {
		head = append(head, structs[l]+volumeSuffix)
		col[l] = i
	}
	err = writeCSV(&outs, filepath.Join(dir, CasesName), head, func(write func([]string) error) error {
		return eachOK(dir, cases, func(cs caseStatus, rows [][]string) error {
			vols := make([]string, len(labelsSeen))
			for _, r := range rows {
				l, _ := strconv.Atoi(r[0])
				vols[col[l]] = r[3]
			}
			return write(append(append([]string{cs.c.ID}, m.CarriedValues(cs.c)...), vols...))
		})
	})
	if err != nil {
		return n, err
	}
	err = writeCSV(&outs, filepath.Join(dir, StatusName), StatusColumns, func(write func([]string) error) error {
		for _, cs := range cases {
			row := []string{cs.c.ID, cs.status, cs.err, "", "", "", "", "", ""}
			if r := cs.rec; r != nil {
				row[3] = strconv.FormatFloat(math.Round(r.Seconds*100)/100, 'f', -1, 64)
				row[4], row[5], row[6], row[7], row[8] = r.Host, r.Adapter, r.Version, r.Weights.SHA256, r.Settings.String()
			}
			if err := write(row); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	var rerun []Case
	for _, cs := range cases {
		if cs.status != StatusOK {
			rerun = append(rerun, cs.c)
		}
	}
	err = outs.Write(filepath.Join(dir, RerunName), atomicfile.Options{Force: true}, func(w io.Writer) error {
		if rerun == nil {
			rerun = []Case{} // the header alone: nothing to rerun
		}
		return m.Encode(w, rerun)
	})
	if err != nil {
		return n, err
	}
	return n, outs.Commit()
}

// writeCSV adds a CSV file to outs (replacing one there): the header, then the rows that each
// writes.
func writeCSV(outs *atomicfile.Set, path string, head []string, each func(write func([]string) error) error) error {
	return outs.Write(path, atomicfile.Options{Force: true}, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		if err := cw.Write(head); err != nil {
			return err
		}
		if err := each(cw.Write); err != nil {
			return err
		}
		cw.Flush()
		return cw.Error()
	})
}

// eachOK calls fn with the stats rows of every ok case, in the manifest's order, after checking
// that the file still holds what the first pass checked.
func eachOK(dir string, cases []caseStatus, fn func(caseStatus, [][]string) error) error {
	for _, cs := range cases {
		if cs.status != StatusOK {
			continue
		}
		rows, sha, err := readStats(filepath.Join(dir, CasesDir, cs.c.ID), cs.rec)
		if err == nil && sha != cs.statsSHA {
			err = errors.New("changed")
		}
		if err != nil {
			return fmt.Errorf("case %s changed while it was being summarized (a shard reran it): run summarize again (%v)", cs.c.ID, err)
		}
		if err := fn(cs, rows); err != nil {
			return err
		}
	}
	return nil
}

// readStats reads an ok case's stats.csv, checking it against the checksum in its record and
// its shape against StatsColumns. It returns the rows without the header, each with the mean
// confidence last ("" where the case has none).
func readStats(caseDir string, rec *Record) ([][]string, string, error) {
	var want *Output
	for i := range rec.Outputs {
		if rec.Outputs[i].Name == StatsName {
			want = &rec.Outputs[i]
		}
	}
	if want == nil {
		return nil, "", fmt.Errorf("case.json lists no %s", StatsName)
	}
	b, err := readLimited(filepath.Join(caseDir, StatsName), maxStatsBytes)
	if err != nil {
		return nil, "", err
	}
	h := sha256.Sum256(b)
	sha := hex.EncodeToString(h[:])
	if sha != want.SHA256 {
		return nil, "", fmt.Errorf("%s is not the one case.json lists (being rewritten, or changed by hand)", StatsName)
	}
	cr := csv.NewReader(bytes.NewReader(b))
	rows, err := cr.ReadAll() // every row has the header's number of fields (FieldsPerRecord 0)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %v", StatsName, csvError(err))
	}
	withConf := append(slices.Clone(StatsColumns), volume.ConfidenceColumn)
	if len(rows) == 0 || !slices.Equal(rows[0], StatsColumns) && !slices.Equal(rows[0], withConf) {
		return nil, "", fmt.Errorf("%s: the header is not %v, optionally followed by %s", StatsName, StatsColumns, volume.ConfidenceColumn)
	}
	for i, r := range rows[1:] {
		if l, err := strconv.Atoi(r[0]); err != nil || l < 0 || l > 255 {
			return nil, "", fmt.Errorf("%s: label %q is not a label", StatsName, r[0])
		}
		if len(r) == len(StatsColumns) {
			rows[1+i] = append(r, "")
		}
	}
	return rows[1:], sha, nil
}

// oneLine joins an error's lines, for a CSV cell.
func oneLine(s string) string {
	return string(bytes.Join(bytes.Fields([]byte(s)), []byte(" ")))
}
