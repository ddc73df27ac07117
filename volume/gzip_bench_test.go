package volume

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// Benchmarks for the .nii.gz paths on a realistic slab: a 512x512x100 noisy CT and a blobby
// label map on the same grid. Run with: go test -run XXX -bench Gz -benchtime 3x ./volume/

var benchDims = [3]int{512, 512, 100}

// benchAffine is a 0.8x0.8x2.5 mm grid, like a typical abdominal CT.
var benchAffine = [4][4]float64{{0.8, 0, 0, 0}, {0, 0.8, 0, 0}, {0, 0, 2.5, 0}, {0, 0, 0, 1}}

// inBody is a disc of radius 220 voxels centred in each slice.
func inBody(x, y int) bool {
	dx, dy := float64(x-256), float64(y-256)
	return dx*dx+dy*dy < 220*220
}

// benchCT holds integer HU values (as an int16 scanner would) stored as float32: body 40 ± 30,
// air -1000 ± 20.
func benchCT() *Volume {
	r := rand.New(rand.NewPCG(1, 2))
	nx, ny, nz := benchDims[0], benchDims[1], benchDims[2]
	data := make([]float32, nx*ny*nz)
	i := 0
	for z := 0; z < nz; z++ {
		for y := 0; y < ny; y++ {
			for x := 0; x < nx; x++ {
				mean, sd := -1000.0, 20.0
				if inBody(x, y) {
					mean, sd = 40, 30
				}
				data[i] = float32(int(mean + sd*r.NormFloat64()))
				i++
			}
		}
	}
	return &Volume{Dims: benchDims, Affine: benchAffine, Data: data}
}

// benchLabels is constant over 8x8x8 blocks with labels 1..20 inside the disc, 0 outside.
func benchLabels() []uint8 {
	r := rand.New(rand.NewPCG(3, 4))
	nx, ny, nz := benchDims[0], benchDims[1], benchDims[2]
	bx, by, bz := nx/8, ny/8, (nz+7)/8
	block := make([]uint8, bx*by*bz)
	for i := range block {
		block[i] = uint8(1 + r.IntN(20))
	}
	out := make([]uint8, nx*ny*nz)
	i := 0
	for z := 0; z < nz; z++ {
		for y := 0; y < ny; y++ {
			for x := 0; x < nx; x++ {
				if inBody(x, y) {
					out[i] = block[(z/8*by+y/8)*bx+x/8]
				}
				i++
			}
		}
	}
	return out
}

func reportSize(b *testing.B, path string) {
	b.Helper()
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Size())/(1<<20), "MiB-file")
}

func BenchmarkReadNIfTIGz(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ct.nii.gz")
	v := benchCT()
	if err := WriteNIfTI(path, v, WriteOptions{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(4 * len(v.Data)))
	for b.Loop() {
		if _, _, err := ReadNIfTI(path); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, path)
}

func BenchmarkWriteNIfTIGz(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ct.nii.gz")
	v := benchCT()
	b.SetBytes(int64(4 * len(v.Data)))
	for b.Loop() {
		if err := WriteNIfTI(path, v, WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, path)
}

func BenchmarkReadLabelsGz(b *testing.B) {
	path := filepath.Join(b.TempDir(), "labels.nii.gz")
	labels := benchLabels()
	if err := WriteLabels(path, benchDims, benchAffine, labels, nil, nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(labels)))
	for b.Loop() {
		if _, _, err := ReadLabels(path); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, path)
}

func BenchmarkWriteLabelsGz(b *testing.B) {
	path := filepath.Join(b.TempDir(), "labels.nii.gz")
	labels := benchLabels()
	b.SetBytes(int64(len(labels)))
	for b.Loop() {
		if err := WriteLabels(path, benchDims, benchAffine, labels, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportSize(b, path)
}
