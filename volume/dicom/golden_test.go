package dicom

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"testing"

	"ctseg/internal/shared"
	"ctseg/volume"
)

// goldenSeries is what shared/golden/pipeline/dicom_series.json records of MONAI's reading.
type goldenSeries struct {
	Monai struct {
		Shape   [3]int                                `json:"shape"`
		Affine  [4][4]float64                         `json:"affine_ras"`
		SHA256  string                                `json:"sha256_int16_HU_Corder"`
		HUStats struct{ Min, Max, Mean, Std float64 } `json:"hu_stats"`
		Samples map[string]float64                    `json:"sample_values"`
	} `json:"monai"`
	AfterRAS struct {
		Shape  [4]int        `json:"shape"`
		Affine [4][4]float64 `json:"affine"`
	} `json:"monai_after_orientation_ras"`
}

// TestSeriesMatchesMONAI reads the shared JPEG 2000 series and compares it with what MONAI's
// PydicomReader gave: shape, affine, every voxel (SHA-256 of the int16 HU array in C order,
// the order of MONAI's (column, row, slice) array), and the affine after reorientation to RAS.
func TestSeriesMatchesMONAI(t *testing.T) {
	var g goldenSeries
	b, err := os.ReadFile(shared.Path(t, "golden", "pipeline", "dicom_series.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	v, s, err := ReadDir(shared.Path(t, "data", "ct", "example_ct_dicom"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Dims != g.Monai.Shape {
		t.Fatalf("dims %v, MONAI %v", v.Dims, g.Monai.Shape)
	}
	// The affine is computed from decimal strings as MONAI does; allow float rounding only.
	for r := 0; r < 4; r++ {
		for c := 0; c < 4; c++ {
			if math.Abs(v.Affine[r][c]-g.Monai.Affine[r][c]) > 1e-9 {
				t.Fatalf("affine row %d: %v, MONAI %v", r, v.Affine[r], g.Monai.Affine[r])
			}
		}
	}
	if s.Syntax != j2kLossless || len(s.Skipped) != 0 || len(s.Notes) != 0 {
		t.Fatalf("syntax %s, skipped %v, notes %v", s.Syntax, s.Skipped, s.Notes)
	}
	nx, ny, nz := v.Dims[0], v.Dims[1], v.Dims[2]
	h := sha256.New()
	var buf [2]byte
	var sum, sum2 float64
	mn, mx := math.Inf(1), math.Inf(-1)
	for i := 0; i < nx; i++ {
		for j := 0; j < ny; j++ {
			for k := 0; k < nz; k++ {
				x := float64(v.Data[v.Index(i, j, k)])
				if x != math.Trunc(x) || x < math.MinInt16 || x > math.MaxInt16 {
					t.Fatalf("voxel (%d,%d,%d) = %v is not an int16 HU value", i, j, k, x)
				}
				binary.LittleEndian.PutUint16(buf[:], uint16(int16(x)))
				h.Write(buf[:])
				sum += x
				sum2 += x * x
				mn, mx = math.Min(mn, x), math.Max(mx, x)
			}
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != g.Monai.SHA256 {
		t.Fatalf("voxels differ from MONAI's: sha256 %s, want %s", got, g.Monai.SHA256)
	}
	n := float64(v.NumVoxels())
	mean := sum / n
	std := math.Sqrt(sum2/n - mean*mean)
	if mn != g.Monai.HUStats.Min || mx != g.Monai.HUStats.Max || math.Abs(mean-g.Monai.HUStats.Mean) > 1e-6 || math.Abs(std-g.Monai.HUStats.Std) > 1e-6 {
		t.Fatalf("HU min %v max %v mean %v std %v, MONAI %+v", mn, mx, mean, std, g.Monai.HUStats)
	}
	for key, want := range map[[3]int]float64{{0, 0, 0}: g.Monai.Samples["[0,0,0]"], {256, 256, 0}: g.Monai.Samples["[256,256,0]"],
		{256, 256, 10}: g.Monai.Samples["[256,256,10]"], {100, 300, 19}: g.Monai.Samples["[100,300,19]"]} {
		if got := float64(v.Data[v.Index(key[0], key[1], key[2])]); got != want {
			t.Errorf("voxel %v = %v, MONAI %v", key, got, want)
		}
	}
	// Reoriented to RAS the series must land where MONAI's Orientationd put it.
	o, _, err := volume.Orient(v)
	if err != nil {
		t.Fatal(err)
	}
	if o.Dims != [3]int{g.AfterRAS.Shape[1], g.AfterRAS.Shape[2], g.AfterRAS.Shape[3]} {
		t.Fatalf("RAS dims %v, MONAI %v", o.Dims, g.AfterRAS.Shape)
	}
	for r := 0; r < 4; r++ {
		for c := 0; c < 4; c++ {
			if math.Abs(o.Affine[r][c]-g.AfterRAS.Affine[r][c]) > 1e-9 {
				t.Fatalf("RAS affine row %d: %v, MONAI %v", r, o.Affine[r], g.AfterRAS.Affine[r])
			}
		}
	}
}

// BenchmarkReadSeries reads the shared 20-slice 512×512 JPEG 2000 series, decoding included.
func BenchmarkReadSeries(b *testing.B) {
	dir := shared.Path(b, "data", "ct", "example_ct_dicom")
	for b.Loop() {
		if _, _, err := ReadDir(dir, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
