package volume

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// StructureStats are per-label statistics on the original CT grid, in the spirit of
// TotalSegmentator --statistics ("volume" in ml, "intensity" = mean HU), plus the std.
type StructureStats struct {
	Label    int     `json:"label"`
	Name     string  `json:"name"`
	Voxels   int64   `json:"voxels"`
	VolumeML float64 `json:"volume"`        // ml (= cm^3)
	MeanHU   float64 `json:"intensity"`     // mean CT value under the label; 0 when empty
	StdHU    float64 `json:"intensity_std"` // population std; 0 when empty
	// MeanConfidence is the mean over the structure's voxels of the probability the network
	// gave its label (p1); nil when not computed or when the structure is empty.
	MeanConfidence *float64 `json:"mean_confidence,omitempty"`
}

// AddConfidence sets each structure's MeanConfidence from p1, the chosen label's probability
// per voxel times 255 (pipeline.Result.P1), on the labels' grid.
func AddConfidence(stats []StructureStats, labels, p1 []uint8) error {
	if len(p1) != len(labels) {
		return fmt.Errorf("%d confidence values for %d labels", len(p1), len(labels))
	}
	var n [256]int64
	var sum [256]int64
	for i, l := range labels {
		n[l]++
		sum[l] += int64(p1[i])
	}
	for i := range stats {
		if l := stats[i].Label; l >= 0 && l < 256 && n[l] > 0 {
			m := float64(sum[l]) / float64(n[l]) / 255
			stats[i].MeanConfidence = &m
		}
	}
	return nil
}

// HasConfidence tells whether the statistics carry the mean confidence (AddConfidence).
func HasConfidence(stats []StructureStats) bool {
	for _, s := range stats {
		if s.MeanConfidence != nil {
			return true
		}
	}
	return false
}

// LabelStats computes, for labels 1..len(names)-1 (and any other non-zero label present, named
// "label_N"), the voxel count, the volume (voxel volume = |det| of the affine's 3x3 block, in
// ml) and the mean/std of ct under the label. labels and ct must share the grid. It returns nil
// when the sizes differ.
func LabelStats(labels []uint8, ct *Volume, names []string) []StructureStats {
	if ct == nil || len(labels) != len(ct.Data) {
		return nil
	}
	var n [256]int64
	var sum, sq [256]float64
	// First pass: counts and sums; second: squared deviations (two-pass for a stable std).
	for i, l := range labels {
		n[l]++
		sum[l] += float64(ct.Data[i])
	}
	var mean [256]float64
	for l := range mean {
		if n[l] > 0 {
			mean[l] = sum[l] / float64(n[l])
		}
	}
	for i, l := range labels {
		d := float64(ct.Data[i]) - mean[l]
		sq[l] += d * d
	}
	vox := math.Abs(det3(block3(ct.Affine))) / 1000 // mm^3 -> ml
	var out []StructureStats
	for l := 1; l < 256; l++ {
		if l >= len(names) && n[l] == 0 {
			continue
		}
		s := StructureStats{Label: l, Voxels: n[l], VolumeML: float64(n[l]) * vox}
		if l < len(names) && names[l] != "" {
			s.Name = names[l]
		} else {
			s.Name = fmt.Sprintf("label_%d", l)
		}
		if n[l] > 0 {
			s.MeanHU = mean[l]
			s.StdHU = math.Sqrt(sq[l] / float64(n[l]))
		}
		out = append(out, s)
	}
	return out
}

// WriteStatsJSON writes the statistics as a JSON object keyed by structure name, in label
// order, like TotalSegmentator's statistics.json ({"spleen": {"volume": .., "intensity": ..}})
// with the label id, voxel count and std added.
func WriteStatsJSON(w io.Writer, stats []StructureStats) error {
	if _, err := io.WriteString(w, "{\n"); err != nil {
		return err
	}
	for i, s := range stats {
		k, _ := json.Marshal(s.Name)
		var conf *float64
		if s.MeanConfidence != nil {
			c := round4(*s.MeanConfidence)
			conf = &c
		}
		v, err := json.Marshal(struct {
			Label      int      `json:"label"`
			Voxels     int64    `json:"voxels"`
			Volume     float64  `json:"volume"`
			Mean       float64  `json:"intensity"`
			Std        float64  `json:"intensity_std"`
			Confidence *float64 `json:"mean_confidence,omitempty"`
		}{s.Label, s.Voxels, round4(s.VolumeML), round4(s.MeanHU), round4(s.StdHU), conf})
		if err != nil {
			return err
		}
		sep := ",\n"
		if i == len(stats)-1 {
			sep = "\n"
		}
		if _, err := fmt.Fprintf(w, "  %s: %s%s", k, v, sep); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "}\n")
	return err
}

// StatsColumns are WriteStatsCSV's columns; ConfidenceColumn follows them when the statistics
// carry the confidence (empty for an empty structure).
var StatsColumns = []string{"label", "name", "voxels", "volume_ml", "mean_hu", "std_hu"}

const ConfidenceColumn = "mean_confidence"

// WriteStatsCSV writes one row per structure: label,name,voxels,volume_ml,mean_hu,std_hu, and
// mean_confidence when computed.
func WriteStatsCSV(w io.Writer, stats []StructureStats) error {
	cw := csv.NewWriter(w)
	conf := HasConfidence(stats)
	head := StatsColumns
	if conf {
		head = append(slices.Clone(head), ConfidenceColumn)
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, s := range stats {
		f := func(x float64) string { return strconv.FormatFloat(round4(x), 'f', -1, 64) }
		row := []string{strconv.Itoa(s.Label), s.Name, strconv.FormatInt(s.Voxels, 10),
			f(s.VolumeML), f(s.MeanHU), f(s.StdHU)}
		if conf {
			c := ""
			if s.MeanConfidence != nil {
				c = f(*s.MeanConfidence)
			}
			row = append(row, c)
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// round4 rounds to 4 decimals, as TotalSegmentator does for its statistics.
func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// BorderLabels lists, in increasing order, the non-zero labels with a voxel on the outer faces
// of the grid dims (x-fastest, as LabelStats): structures the field of view cuts, whose volume
// is only the part that was scanned. It returns nil when the sizes differ.
func BorderLabels(labels []uint8, dims [3]int) []int {
	nx, ny, nz := dims[0], dims[1], dims[2]
	if nx <= 0 || ny <= 0 || nz <= 0 || len(labels) != nx*ny*nz {
		return nil
	}
	var on [256]bool
	for z := 0; z < nz; z++ {
		for y := 0; y < ny; y++ {
			row := labels[nx*(y+ny*z) : nx*(y+ny*z+1)]
			if z == 0 || z == nz-1 || y == 0 || y == ny-1 {
				for _, l := range row { // a whole face row
					on[l] = true
				}
			} else {
				on[row[0]] = true
				on[row[nx-1]] = true
			}
		}
	}
	out := []int{}
	for l := 1; l < 256; l++ {
		if on[l] {
			out = append(out, l)
		}
	}
	return out
}
