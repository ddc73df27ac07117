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
		NZero    int     `json:"n_zero"`
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
	// The zero-ambiguous voxels (README of golden/pipeline): where exact arithmetic gives 0 but
	// MONAI's round-off may not. Spacingd repeats MONAI's arithmetic, so its zero status, and
	// with it NormalizeIntensity's mask, must be MONAI's on every voxel, these included.
	var amb []uint8
	if has("zero_ambiguous_mask.nii.gz") {
		amb = readGoldenLabels(t, c, "zero_ambiguous_mask.nii.gz", sv.Dims)
	}
	nAmb, nAmbZero := 0, 0
	for i, x := range sv.Data {
		if amb != nil && amb[i] != 0 {
			nAmb++
			if x == 0 {
				nAmbZero++
			}
		}
	}
	spacingDiff := math.NaN()
	if has("spacing_only.nii.gz") {
		g, _, err := ReadNIfTI(shared.Path(t, "golden", "pipeline", c, "spacing_only.nii.gz"))
		if err != nil {
			t.Fatal(err)
		}
		// Bit for bit where the grid is axis-aligned; an oblique grid's positions go through
		// the BLAS's matrix product, whose last bits vary between machines (the golden's
		// oblique_1.5mm differs in one voxel from the same MONAI run on another x86-64, by
		// 2.3e-13): there at most 1e-5 of the voxels may differ, each by at most 1e-9 HU
		// (positions a few float64 ulps apart, times a gradient of thousands of HU a voxel).
		spacingDiff = 0
		nBits, nZero, nWorse := 0, 0, 0
		for i := range g.Data {
			a, b := g.Data[i], sv.Data[i]
			if (a == 0) != (b == 0) {
				nZero++
			}
			if math.Float32bits(a) != math.Float32bits(b) {
				nBits++
				if math.Abs(float64(a)-float64(b)) > 1e-9 {
					nWorse++
				}
			}
			spacingDiff = math.Max(spacingDiff, math.Abs(float64(a)-float64(b)))
		}
		if nZero != 0 {
			t.Errorf("zero status differs from MONAI's on %d of %d voxels", nZero, len(g.Data))
		}
		if axisAligned(si.VoxelMap) && nBits != 0 || nWorse != 0 || float64(nBits) > 1e-5*float64(len(g.Data)) {
			t.Errorf("spacing_only: %d voxels differ in some bit (%d by more than 1e-9), max abs diff %g", nBits, nWorse, spacingDiff)
		}
		t.Logf("Spacingd: zero status agrees with MONAI's on all %d voxels (the %d zero-ambiguous ones: MONAI and ctseg keep %d at 0); %d voxels not bit-identical",
			len(g.Data), nAmb, nAmbZero, nBits)
	} else if si.Resampled {
		// ct_1.5mm: the file is omitted; its float64 statistics (within the summation order's
		// 1e-9: one voxel's zero status would move the mean by 1e-7) and MONAI's zeros.
		ss := stats64(sv.Data)
		st := m.AfterSpacing.Stats
		if ss.Min != st.Min || ss.Max != st.Max || math.Abs(ss.Mean-st.Mean) > 1e-9*math.Abs(st.Mean) || math.Abs(ss.Std-st.Std) > 1e-9*st.Std {
			t.Errorf("spacing stats %+v, MONAI's %+v", ss, st)
		}
		nZero := 0
		for i, x := range sv.Data {
			if x == 0 {
				nZero++
				if amb == nil || amb[i] == 0 {
					t.Fatalf("voxel %d is 0 outside the zero-ambiguous mask", i)
				}
			}
		}
		if nZero != m.Normalize.NZero {
			t.Errorf("%d voxels are exactly 0, MONAI has %d", nZero, m.Normalize.NZero)
		}
		t.Logf("Spacingd: %d zeros, all on the zero-ambiguous mask of %d voxels, as MONAI's %d", nZero, nAmb, m.Normalize.NZero)
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
	// With MONAI's zero mask, every voxel, the zero-ambiguous ones included, is within 3e-7 of
	// MONAI's (the float64 statistics against torch's float32 ones; the std cancels out).
	const preTol = 3e-7
	maxAll, maxAmb := 0.0, 0.0
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
			maxAll = math.Max(maxAll, d)
			if amb != nil && amb[i] != 0 {
				maxAmb = math.Max(maxAmb, d)
			}
		}
		if maxAll > preTol {
			t.Errorf("preprocessed max abs diff %g > %g (on the zero-ambiguous voxels %g)", maxAll, preTol, maxAmb)
		}
		if sha256FloatsCOrder(pre) == m.Output.SHA256 {
			t.Logf("preprocessed SHA-256 matches MONAI's bit for bit")
		}
	} else {
		// ct_1.5mm: the file is omitted. Check the statistics and, voxel by voxel, the zero-
		// ambiguous ones included, that the fake label rule applied to our output gives
		// fake_label.nii.gz (made from MONAI's output) except within the tolerance of a bin
		// edge. A zero-ambiguous voxel taken the other way moves 0.15 to 0.34, 8 to 17 bins.
		if !slices.Contains(m.FilesOmitted, "preprocessed.nii.gz") {
			t.Fatalf("preprocessed.nii.gz neither present nor omitted")
		}
		ps := stats64(pre.Data)
		if ps.Min != -1 || ps.Max != 1 || math.Abs(ps.Mean-m.Output.Stats.Mean) > 1e-6 || math.Abs(ps.Std-m.Output.Stats.Std) > 1e-6 {
			t.Errorf("preprocessed stats %+v, want %+v", ps, m.Output.Stats)
		}
		fake := readGoldenLabels(t, c, "fake_label.nii.gz", pre.Dims)
		nEdge := 0
		for i, x := range pre.Data {
			u := (float64(x) + 1) * 52
			l := math.Min(math.Max(math.Floor(u), 0), 104)
			if uint8(l) != fake[i] {
				if math.Abs(u-math.Round(u)) > 52*preTol || math.Abs(l-float64(fake[i])) > 1 {
					t.Fatalf("voxel %d: preprocessed %v gives label %v, fake_label has %d", i, x, l, fake[i])
				}
				nEdge++
			}
		}
		t.Logf("fake-label rule agrees except %d bin-edge voxels", nEdge)
		maxAll, maxAmb = math.NaN(), math.NaN()
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
	// Every voxel equal to MONAI's, ties included: the inverse resampling repeats MONAI's
	// arithmetic, so a source coordinate on k + 0.5 rounds to the side MONAI's round-off
	// puts it on (lps_aniso_3.0mm: 2.5 up, 7.5 .. 22.5 down).
	nMis, nTie, nTieDiff := 0, 0, 0
	for i := range want {
		if got[i] != want[i] {
			nMis++
		}
		if ties != nil && ties[i] != 0 {
			nTie++
			if got[i] != want[i] {
				nTieDiff++
			}
		}
	}
	if nMis != 0 {
		t.Errorf("inverted labels differ on %d voxels (%d of them ties)", nMis, nTieDiff)
	}
	if nTie != m.Inversion.NTies {
		t.Errorf("tie mask has %d voxels, meta says %d", nTie, m.Inversion.NTies)
	}
	if s := sha256Bytes(labelsCOrder(got, in.Dims)); s != m.Inversion.SHA256 {
		t.Errorf("inverted label SHA-256 %s, want %s", s, m.Inversion.SHA256)
	}
	t.Logf("%s: shape %v resampled=%v | affine diff %.2g | spacing_only max diff %.3g | preprocessed max diff %.3g (zero-ambiguous voxels: %d, max diff %.3g) | inversion: %d mismatches, %d ties",
		c, pre.Dims, si.Resampled, math.Max(outAff, dAff), spacingDiff, maxAll, nAmb, maxAmb, nMis, nTie)
}

// axisAligned reports whether a voxel map has no off-diagonal terms.
func axisAligned(m [4][4]float64) bool {
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			if i != j && m[i][j] != 0 {
				return false
			}
		}
	}
	return true
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
