package volume

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"ctseg/internal/shared"
)

type goldenStats struct {
	Min, Max, Mean, Std float64
}

type goldenMeta struct {
	InputFile   string `json:"input_file"`
	InputHeader struct {
		Shape     [3]int        `json:"shape"`
		Affine    [4][4]float64 `json:"affine_used_by_nibabel"`
		Axcodes   string        `json:"axcodes"`
		SformCode int           `json:"sform_code"`
		QformCode int           `json:"qform_code"`
	} `json:"input_header"`
	Loaded struct {
		Affine [4][4]float64 `json:"affine"`
		Stats  goldenStats   `json:"stats"`
	} `json:"loaded"`
	AfterOrientation struct {
		Shape  [4]int        `json:"shape"`
		Affine [4][4]float64 `json:"affine"`
	} `json:"after_orientation"`
	AfterSpacing struct {
		Shape  [4]int        `json:"shape"`
		Affine [4][4]float64 `json:"affine"`
		Stats  goldenStats   `json:"stats"`
	} `json:"after_spacing"`
	Output struct {
		Shape  [3]int        `json:"shape"`
		Affine [4][4]float64 `json:"affine"`
		Stats  goldenStats   `json:"stats"`
		SHA256 string        `json:"sha256_float32_Corder"`
	} `json:"output"`
	Normalize struct {
		NNonzero int64   `json:"n_nonzero"`
		Mean     float64 `json:"mean_used_float32_torch"`
		Std      float64 `json:"std_used_float32_torch_population"`
	} `json:"normalize_intensity"`
	Scale struct {
		Min float64 `json:"min_used"`
		Max float64 `json:"max_used"`
	} `json:"scale_intensity"`
	SpacingResampled bool `json:"spacing_resampled"`
	Exact            struct {
		NAmbiguous int `json:"n_zero_ambiguous_voxels"`
	} `json:"exact_arithmetic_reference"`
	Inversion struct {
		Shape    [3]int        `json:"shape"`
		Affine   [4][4]float64 `json:"affine"`
		NTies    int           `json:"n_tie_voxels_half_integer_source_coord"`
		SHA256   string        `json:"sha256_uint8_Corder"`
		TieMask  *string       `json:"tie_mask_file"`
		VoxelMap [4][4]float64 `json:"voxel_map_orig_to_preprocessed"`
	} `json:"inversion"`
	FilesPresent []string `json:"files_present"`
	FilesOmitted []string `json:"files_omitted"`
}

func loadMeta(t *testing.T, c string) goldenMeta {
	t.Helper()
	b, err := os.ReadFile(shared.Path(t, "golden", "pipeline", c, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m goldenMeta
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("meta.json of %s: %v", c, err)
	}
	return m
}

func goldenCases(t *testing.T) []string {
	b, err := os.ReadFile(shared.Path(t, "golden", "pipeline", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Cases map[string]json.RawMessage `json:"cases"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	var cs []string
	for c := range idx.Cases {
		cs = append(cs, c)
	}
	slices.Sort(cs)
	if len(cs) < 8 {
		t.Fatalf("index.json lists %d cases, expected 8", len(cs))
	}
	return cs
}

func affineDiff(a, b [4][4]float64) float64 {
	d := 0.0
	for i := 0; i < 4; i++ {
		for j := 0; j < 4; j++ {
			d = math.Max(d, math.Abs(a[i][j]-b[i][j]))
		}
	}
	return d
}

func stats64(d []float32) goldenStats {
	s := goldenStats{Min: math.Inf(1), Max: math.Inf(-1)}
	var sum float64
	for _, x := range d {
		sum += float64(x)
		s.Min = math.Min(s.Min, float64(x))
		s.Max = math.Max(s.Max, float64(x))
	}
	s.Mean = sum / float64(len(d))
	var sq float64
	for _, x := range d {
		e := float64(x) - s.Mean
		sq += e * e
	}
	s.Std = math.Sqrt(sq / float64(len(d)))
	return s
}

func readGoldenLabels(t *testing.T, c, name string, dims [3]int) []uint8 {
	t.Helper()
	l, h, err := ReadLabels(shared.Path(t, "golden", "pipeline", c, name))
	if err != nil {
		t.Fatal(err)
	}
	if h.Dims != dims {
		t.Fatalf("%s/%s: dims %v, expected %v", c, name, h.Dims, dims)
	}
	return l
}

// TestGoldenPipeline checks loading, orientation, Spacingd, normalisation and inversion
// against every case of shared/golden/pipeline.
func TestGoldenPipeline(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c, func(t *testing.T) { checkGoldenCase(t, c) })
	}
}

func checkGoldenCase(t *testing.T, c string) {
	m := loadMeta(t, c)
	p := 1.5
	if strings.HasSuffix(c, "_3.0mm") {
		p = 3.0
	}
	has := func(f string) bool { return slices.Contains(m.FilesPresent, f) }
	in, h, err := ReadNIfTI(shared.Path(t, strings.Split(m.InputFile, "/")...))
	if err != nil {
		t.Fatal(err)
	}
	// Load: shape, nibabel's affine, statistics of the float32 array.
	if in.Dims != m.InputHeader.Shape {
		t.Fatalf("loaded dims %v, want %v", in.Dims, m.InputHeader.Shape)
	}
	if d := affineDiff(in.Affine, m.Loaded.Affine); d > 1e-12 {
		t.Errorf("loaded affine differs by %g", d)
	}
	if h.SformCode != m.InputHeader.SformCode || h.QformCode != m.InputHeader.QformCode {
		t.Errorf("codes %d/%d, want %d/%d", h.SformCode, h.QformCode, m.InputHeader.SformCode, m.InputHeader.QformCode)
	}
	ls := stats64(in.Data)
	if ls.Min != m.Loaded.Stats.Min || ls.Max != m.Loaded.Stats.Max || math.Abs(ls.Mean-m.Loaded.Stats.Mean) > 1e-9 ||
		math.Abs(ls.Std-m.Loaded.Stats.Std) > 1e-9 {
		t.Errorf("loaded stats %+v, want %+v", ls, m.Loaded.Stats)
	}

	// Orientation.
	ov, o, err := Orient(in)
	if err != nil {
		t.Fatal(err)
	}
	if o.Codes() != m.InputHeader.Axcodes {
		t.Errorf("axis codes %s, want %s", o.Codes(), m.InputHeader.Axcodes)
	}
	if ov.Dims != [3]int(m.AfterOrientation.Shape[1:]) {
		t.Errorf("oriented dims %v, want %v", ov.Dims, m.AfterOrientation.Shape[1:])
	}
	if d := affineDiff(ov.Affine, m.AfterOrientation.Affine); d > 1e-9 {
		t.Errorf("oriented affine differs by %g", d)
	}

	// Spacingd alone.
	sv, si, err := ResampleSpacing(ov, p)
	if err != nil {
		t.Fatal(err)
	}
	if sv.Dims != [3]int(m.AfterSpacing.Shape[1:]) {
		t.Fatalf("spacing dims %v, want %v", sv.Dims, m.AfterSpacing.Shape[1:])
	}
	if si.Resampled != m.SpacingResampled {
		t.Errorf("resampled = %v, want %v", si.Resampled, m.SpacingResampled)
	}
	dAff := affineDiff(sv.Affine, m.AfterSpacing.Affine)
	if dAff > 1e-9 {
		t.Errorf("spacing affine differs by %g", dAff)
	}
	spacingDiff := math.NaN()
	if has("spacing_only.nii.gz") {
		g, _, err := ReadNIfTI(shared.Path(t, "golden", "pipeline", c, "spacing_only.nii.gz"))
		if err != nil {
			t.Fatal(err)
		}
		spacingDiff = 0
		for i := range g.Data {
			spacingDiff = math.Max(spacingDiff, math.Abs(float64(g.Data[i])-float64(sv.Data[i])))
		}
		if spacingDiff > 1e-3 {
			t.Errorf("spacing_only max abs diff %g > 1e-3", spacingDiff)
		}
	} else {
		ss := stats64(sv.Data)
		if math.Abs(ss.Mean-m.AfterSpacing.Stats.Mean) > 1e-3 || math.Abs(ss.Std-m.AfterSpacing.Stats.Std) > 1e-3 ||
			math.Abs(ss.Min-m.AfterSpacing.Stats.Min) > 1e-3 || math.Abs(ss.Max-m.AfterSpacing.Stats.Max) > 1e-3 {
			t.Errorf("spacing stats %+v, want %+v", ss, m.AfterSpacing.Stats)
		}
	}

	// Full preprocessing.
	pre, inv, err := Preprocess(in, p)
	if err != nil {
		t.Fatal(err)
	}
	if pre.Dims != m.Output.Shape {
		t.Fatalf("preprocessed dims %v, want %v", pre.Dims, m.Output.Shape)
	}
	outAff := affineDiff(pre.Affine, m.Output.Affine)
	if outAff > 1e-9 {
		t.Errorf("output affine differs by %g", outAff)
	}
	var amb []uint8
	if has("zero_ambiguous_mask.nii.gz") {
		amb = readGoldenLabels(t, c, "zero_ambiguous_mask.nii.gz", pre.Dims)
	}
	// The two values a zero-ambiguous voxel may take: "zero" (the mean) or "non-zero" (~0 HU).
	vmin := m.Scale.Min*m.Normalize.Std + m.Normalize.Mean
	vmax := m.Scale.Max*m.Normalize.Std + m.Normalize.Mean
	asNonZero := 2*(0-vmin)/(vmax-vmin) - 1
	asZeroMONAI := 2*(m.Normalize.Mean-vmin)/(vmax-vmin) - 1
	mine := preprocessedZeroValue(sv.Data)
	okAmbiguous := func(x float64) bool {
		return math.Abs(x-asNonZero) < 1e-5 || math.Abs(x-asZeroMONAI) < 1e-5 || math.Abs(x-mine) < 1e-5
	}
	maxOut, nAmb, nAmbDiff := 0.0, 0, 0
	if has("preprocessed.nii.gz") {
		g, gh, err := ReadNIfTI(shared.Path(t, "golden", "pipeline", c, "preprocessed.nii.gz"))
		if err != nil {
			t.Fatal(err)
		}
		if d := affineDiff(gh.Affine, m.Output.Affine); d > 1e-5 {
			t.Errorf("golden file affine vs meta: %g", d)
		}
		for i := range g.Data {
			d := math.Abs(float64(g.Data[i]) - float64(pre.Data[i]))
			if amb != nil && amb[i] != 0 {
				nAmb++
				if d > 1e-5 {
					nAmbDiff++
				}
				if !okAmbiguous(float64(pre.Data[i])) || !okAmbiguous(float64(g.Data[i])) {
					t.Fatalf("ambiguous voxel %d: got %v, golden %v, accepted %v / %v / %v", i, pre.Data[i], g.Data[i], asNonZero, asZeroMONAI, mine)
				}
				continue
			}
			maxOut = math.Max(maxOut, d)
		}
		if maxOut > 1e-5 {
			t.Errorf("preprocessed max abs diff outside the ambiguous mask %g > 1e-5", maxOut)
		}
		if sha256FloatsCOrder(pre) == m.Output.SHA256 {
			t.Logf("preprocessed SHA-256 matches MONAI's bit for bit")
		}
	} else {
		// ct_1.5mm: the file is omitted. Check the statistics (the zero-ambiguous voxels can
		// move the mean by |0.34| * 16181 / 10.9M < 1e-3) and, voxel by voxel, that the fake
		// label rule applied to our output gives fake_label.nii.gz except at bin edges and
		// on the ambiguous mask.
		if !slices.Contains(m.FilesOmitted, "preprocessed.nii.gz") {
			t.Fatalf("preprocessed.nii.gz neither present nor omitted")
		}
		ps := stats64(pre.Data)
		if ps.Min != -1 || ps.Max != 1 || math.Abs(ps.Mean-m.Output.Stats.Mean) > 1e-3 || math.Abs(ps.Std-m.Output.Stats.Std) > 1e-3 {
			t.Errorf("preprocessed stats %+v, want %+v", ps, m.Output.Stats)
		}
		fake := readGoldenLabels(t, c, "fake_label.nii.gz", pre.Dims)
		nEdge := 0
		for i, x := range pre.Data {
			if amb != nil && amb[i] != 0 {
				nAmb++
				if !okAmbiguous(float64(x)) {
					t.Fatalf("ambiguous voxel %d: got %v", i, x)
				}
				continue
			}
			u := (float64(x) + 1) * 52
			l := math.Min(math.Max(math.Floor(u), 0), 104)
			if uint8(l) != fake[i] {
				// Allowed only within the 1e-5 tolerance of a bin edge.
				if math.Abs(u-math.Round(u)) > 52*1e-5 || math.Abs(l-float64(fake[i])) > 1 {
					t.Fatalf("voxel %d: preprocessed %v gives label %v, fake_label has %d", i, x, l, fake[i])
				}
				nEdge++
			}
		}
		t.Logf("fake-label rule agrees except %d bin-edge voxels", nEdge)
		maxOut = math.NaN()
	}

	// Inversion: the golden fake label map back to the input grid.
	fake := readGoldenLabels(t, c, "fake_label.nii.gz", pre.Dims)
	want := readGoldenLabels(t, c, "inverted_label.nii.gz", in.Dims)
	var ties []uint8
	if has("inversion_tie_mask.nii.gz") {
		ties = readGoldenLabels(t, c, "inversion_tie_mask.nii.gz", in.Dims)
	}
	got, err := inv.Invert(fake)
	if err != nil {
		t.Fatal(err)
	}
	inv2, err := InversionFor(h, p)
	if err != nil {
		t.Fatal(err)
	}
	got2, err := inv2.Invert(fake)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, got2) {
		t.Errorf("InversionFor(header) gives a different inversion")
	}
	if inv.OrigDims() != m.Inversion.Shape || affineDiff(inv.OrigAffine(), m.Inversion.Affine) > 1e-9 {
		t.Errorf("inversion grid %v / %v, want %v / %v", inv.OrigDims(), inv.OrigAffine(), m.Inversion.Shape, m.Inversion.Affine)
	}
	nMis, nTie, nTieDiff := 0, 0, 0
	fd := pre.Dims
	for i := range want {
		if ties != nil && ties[i] != 0 {
			nTie++
			if got[i] != want[i] {
				nTieDiff++
				// Accept either neighbour's label: the source coordinate is k + 0.5 on some
				// axis, so the label must be one of the labels at floor/ceil there.
				if !tieNeighbour(fake, fd, m.Inversion.VoxelMap, i, in.Dims, got[i]) {
					t.Fatalf("tie voxel %d: label %d is not a neighbour's", i, got[i])
				}
			}
			continue
		}
		if got[i] != want[i] {
			nMis++
		}
	}
	if nMis != 0 {
		t.Errorf("inverted labels differ on %d non-tie voxels", nMis)
	}
	if nTie != m.Inversion.NTies {
		t.Errorf("tie mask has %d voxels, meta says %d", nTie, m.Inversion.NTies)
	}
	if ties == nil {
		if s := sha256Bytes(labelsCOrder(got, in.Dims)); s != m.Inversion.SHA256 {
			t.Errorf("inverted label SHA-256 %s, want %s", s, m.Inversion.SHA256)
		}
	}
	t.Logf("%s: shape %v resampled=%v | affine diff %.2g | spacing_only max diff %.3g | preprocessed max diff outside mask %.3g (mask %d voxels, %d of them take the other accepted value) | inversion: %d non-tie mismatches, %d ties (%d chose the other neighbour)",
		c, pre.Dims, si.Resampled, math.Max(outAff, dAff), spacingDiff, maxOut, nAmb, nAmbDiff, nMis, nTie, nTieDiff)
}

// preprocessedZeroValue is the final value of a zero voxel under our own zero mask.
func preprocessedZeroValue(spacing []float32) float64 {
	v := &Volume{Data: append([]float32(nil), spacing...)}
	st := NormalizeScale(v)
	return 2*(0-st.MinN)/(st.MaxN-st.MinN) - 1
}

// tieNeighbour reports whether label l occurs at one of the preprocessed voxels around the
// (tied) source coordinate of original voxel i.
func tieNeighbour(fake []uint8, fd [3]int, vm [4][4]float64, i int, od [3]int, l uint8) bool {
	x, y, z := i%od[0], (i/od[0])%od[1], i/(od[0]*od[1])
	src := apply4(vm, [3]float64{float64(x), float64(y), float64(z)})
	var lo, hi [3]int
	for a := 0; a < 3; a++ {
		lo[a] = max(0, min(fd[a]-1, int(math.Floor(src[a]+1e-6))))
		hi[a] = max(0, min(fd[a]-1, int(math.Ceil(src[a]-1e-6))))
		if math.Abs(src[a]-math.Round(src[a])) < 1e-6 {
			lo[a], hi[a] = int(math.Round(src[a])), int(math.Round(src[a]))
		}
	}
	for a := lo[0]; a <= hi[0]; a++ {
		for b := lo[1]; b <= hi[1]; b++ {
			for c := lo[2]; c <= hi[2]; c++ {
				if fake[a+fd[0]*(b+fd[1]*c)] == l {
					return true
				}
			}
		}
	}
	return false
}

// labelsCOrder returns an x-fastest label map in C order (Z fastest), meta.json's convention.
func labelsCOrder(l []uint8, d [3]int) []uint8 {
	c := make([]uint8, len(l))
	for z := 0; z < d[2]; z++ {
		for y := 0; y < d[1]; y++ {
			for x := 0; x < d[0]; x++ {
				c[(x*d[1]+y)*d[2]+z] = l[x+d[0]*(y+d[1]*z)]
			}
		}
	}
	return c
}

func sha256Bytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sha256FloatsCOrder(v *Volume) string {
	c := v.ToDHW()
	b := make([]byte, 4*len(c))
	for i, x := range c {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return sha256Bytes(b)
}
