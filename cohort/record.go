package cohort

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File names under the output folder DIR.
const (
	ManifestName   = "manifest.csv" // the manifest in its own form, inputs absolute
	CasesDir       = "cases"        // DIR/cases/CASE/ holds a case's outputs
	RecordName     = "case.json"    // written last in a case's folder
	LabelsName     = "labels.nii.gz"
	TableName      = "labels.labels.txt" // ITK-SNAP's description of the labels, as segment writes
	StatsName      = "stats.csv"
	SegName        = "seg.dcm"           // the DICOM Segmentation (--dicom-seg, DICOM inputs)
	ConfidenceName = "confidence.nii.gz" // p1 per voxel (--confidence)
)

// OutputNames are every file a case may have besides its record, for cleaning up after a
// case that failed or was killed.
var OutputNames = []string{LabelsName, TableName, StatsName, SegName, ConfidenceName}

// A case's status in case.json and status.csv.
const (
	StatusOK      = "ok"
	StatusFailed  = "failed"
	StatusMissing = "missing" // status.csv only: no record (not run yet, running, or dropped)
)

// Settings are what the results of a case depend on besides the input and the weights: a case
// is done only for the settings it was run with.
type Settings struct {
	Spacing   float64 `json:"spacing"`
	Precision string  `json:"precision"`
	Device    string  `json:"device"`
	ROI       int     `json:"roi"`
	DicomSeg  bool    `json:"dicom_seg"`
	// Confidence: confidence.nii.gz written too (every case's stats carry the mean confidence)
	Confidence bool `json:"confidence,omitempty"`
}

func (s Settings) String() string {
	return fmt.Sprintf("spacing=%g precision=%s device=%s roi=%d dicom_seg=%t confidence=%t", s.Spacing, s.Precision, s.Device, s.ROI, s.DicomSeg, s.Confidence)
}

// Weights identify the network's weights by content.
type Weights struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Grid is the input's voxel grid.
type Grid struct {
	Dims    [3]int        `json:"dims"`
	VoxelMM [3]float64    `json:"voxel_mm"`
	Affine  [4][4]float64 `json:"affine"`
}

// Input is what a case read.
type Input struct {
	Path   string `json:"path"`
	Series string `json:"series,omitempty"`
	Format string `json:"format,omitempty"` // nifti or dicom, once known
	Grid   *Grid  `json:"grid,omitempty"`   // once read
}

// Preprocessed is the grid the network saw.
type Preprocessed struct {
	Dims    [3]int `json:"dims"`
	Windows int    `json:"windows"`
}

// Output is one file of a case, with what it held when the record was written.
type Output struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Stage is the wall time of one step of a case.
type Stage struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// Record is case.json: written last, atomically, once a case's outputs are in place (ok) or
// its error is known (failed).
type Record struct {
	CaseID        string        `json:"case_id"`
	Status        string        `json:"status"`
	Error         string        `json:"error,omitempty"` // one line
	Seconds       float64       `json:"seconds"`         // the case's own: reading, preprocessing, network, writing (not its wait in the queue)
	Started       string        `json:"started"`         // RFC 3339, UTC
	Finished      string        `json:"finished"`
	Host          string        `json:"host"`
	Version       string        `json:"version"` // of ctseg
	Adapter       string        `json:"adapter"` // the GPU, or the CPU implementation
	Weights       Weights       `json:"weights"`
	Settings      Settings      `json:"settings"`
	Input         Input         `json:"input"`
	Preprocessed  *Preprocessed `json:"preprocessed,omitempty"`
	Stages        []Stage       `json:"stages,omitempty"`
	Outputs       []Output      `json:"outputs,omitempty"`
	TouchesBorder []int         `json:"touches_border"` // labels with a voxel on the grid's faces
	Notes         []string      `json:"notes,omitempty"`
}

// maxRecordBytes bounds what is read of a case.json (a few KB in practice).
const maxRecordBytes = 16 << 20

// ReadRecord reads DIR/cases/ID/case.json. A missing record is os.ErrNotExist.
func ReadRecord(caseDir string) (*Record, error) {
	b, err := readLimited(filepath.Join(caseDir, RecordName), maxRecordBytes)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(caseDir, RecordName), err)
	}
	return &r, nil
}

// Encode writes the record as indented JSON.
func (r *Record) Encode(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Key is what a done case must have been run with.
type Key struct {
	Input    string
	Series   string
	Weights  string // sha256
	Settings Settings
}

// Done reports whether the case in caseDir is complete for key: its record says ok for the
// same input, weights and settings, and every output it lists is there at the size it had.
// Otherwise it says why not (for --verbose and tests).
func Done(caseDir, id string, key Key) (bool, string) {
	r, err := ReadRecord(caseDir)
	if errors.Is(err, os.ErrNotExist) {
		return false, "not run"
	}
	if err != nil {
		return false, err.Error()
	}
	switch {
	case r.CaseID != id:
		return false, fmt.Sprintf("case.json is of case %q", r.CaseID)
	case r.Status != StatusOK:
		return false, "status " + r.Status
	case r.Input.Path != key.Input || r.Input.Series != key.Series:
		return false, "run on another input"
	case r.Weights.SHA256 != key.Weights:
		return false, "run with other weights"
	case r.Settings != key.Settings:
		return false, "run with other settings (" + r.Settings.String() + ")"
	}
	for _, o := range r.Outputs {
		fi, err := os.Stat(filepath.Join(caseDir, o.Name))
		if err != nil || fi.Size() != o.Bytes {
			return false, o.Name + " is missing or changed"
		}
	}
	return true, ""
}

// Describe returns the size and sha256 of a file, for Record.Outputs.
func Describe(dir, name string) (Output, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return Output{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Output{}, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	return Output{Name: name, Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// FileSHA256 hashes a file (the weights, for Key.Weights).
func FileSHA256(path string) (string, error) {
	o, err := Describe(filepath.Dir(path), filepath.Base(path))
	return o.SHA256, err
}

// readLimited reads a file of at most max bytes.
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}
