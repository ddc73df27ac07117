package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/shared"
)

func TestParseBlendMode(t *testing.T) {
	for s, want := range map[string]BlendMode{"gaussian": Gaussian, "constant": Constant, " Gaussian ": Gaussian} {
		m, err := ParseBlendMode(s)
		require.NoError(t, err)
		require.Equal(t, want, m)
	}
	_, err := ParseBlendMode("triangle")
	require.Error(t, err)
	var m BlendMode
	require.NoError(t, json.Unmarshal([]byte(`"constant"`), &m))
	require.Equal(t, Constant, m)
	b, err := json.Marshal(Gaussian)
	require.NoError(t, err)
	require.JSONEq(t, `"gaussian"`, string(b))
	require.Equal(t, WindowOptions{ROI: [3]int{96, 96, 96}, Overlap: 0.25, Mode: Gaussian, SigmaScale: 0.125}, DefaultWindowOptions())
}

func TestPlanWindows(t *testing.T) {
	opt := func(roi int) WindowOptions {
		o := DefaultWindowOptions()
		o.ROI = [3]int{roi, roi, roi}
		return o
	}
	cases := []struct {
		name          string
		size          [3]int
		opt           WindowOptions
		starts        [3][]int
		before, after [3]int
		windows       int
		first, last   [3]int
		step          [3]int
	}{
		{
			name: "bundle note: 287x287x397 at roi 96", size: [3]int{287, 287, 397}, opt: opt(96),
			starts:  [3][]int{{0, 72, 144, 191}, {0, 72, 144, 191}, {0, 72, 144, 216, 288, 301}},
			windows: 96, first: [3]int{0, 0, 0}, last: [3]int{191, 191, 301}, step: [3]int{72, 72, 72},
		},
		{
			name: "golden sliding_window: 37x29x45 at roi 16", size: [3]int{37, 29, 45}, opt: opt(16),
			starts:  [3][]int{{0, 12, 21}, {0, 12, 13}, {0, 12, 24, 29}},
			windows: 36, first: [3]int{0, 0, 0}, last: [3]int{21, 13, 29}, step: [3]int{12, 12, 12},
		},
		{
			// D and W shorter than the window: padded by diff//2 before and the rest after;
			// H exactly the window: one window, step = roi.
			name: "padding: 9x16x40 at roi 16", size: [3]int{9, 16, 40}, opt: opt(16),
			starts: [3][]int{{0}, {0}, {0, 12, 24}}, before: [3]int{3, 0, 0}, after: [3]int{4, 0, 0},
			windows: 3, last: [3]int{0, 0, 24}, step: [3]int{16, 16, 12},
		},
		{
			name: "whole axis when roi <= 0, overlap 0", size: [3]int{20, 30, 33},
			opt:    WindowOptions{ROI: [3]int{0, -1, 16}, Overlap: 0, Mode: Constant},
			starts: [3][]int{{0}, {0}, {0, 16, 17}}, windows: 3, last: [3]int{0, 0, 17}, step: [3]int{20, 30, 16},
		},
		{
			name: "high overlap: step int(5 * 0.1) = 0 becomes 1", size: [3]int{5, 5, 8},
			opt:    WindowOptions{ROI: [3]int{5, 5, 5}, Overlap: 0.9, Mode: Constant},
			starts: [3][]int{{0}, {0}, {0, 1, 2, 3}}, windows: 4, last: [3]int{0, 0, 3}, step: [3]int{5, 5, 1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanWindows(tc.size[0], tc.size[1], tc.size[2], tc.opt)
			require.NoError(t, err)
			require.Equal(t, tc.starts, p.Starts)
			require.Equal(t, tc.before, p.PadBefore)
			require.Equal(t, tc.after, p.PadAfter)
			require.Equal(t, tc.step, p.Step)
			for a := range 3 {
				require.Equal(t, tc.size[a]+tc.before[a]+tc.after[a], p.Padded[a])
			}
			w := p.Windows()
			require.Len(t, w, tc.windows)
			require.Equal(t, tc.windows, p.NumWindows())
			require.Equal(t, tc.first, w[0])
			require.Equal(t, tc.last, w[len(w)-1])
			require.Equal(t, tc.before != [3]int{} || tc.after != [3]int{}, p.Padding())
		})
	}
}

// The golden meta.json records MONAI's starts and order; check them from the file itself.
func TestPlanWindowsGoldenMeta(t *testing.T) {
	b, err := os.ReadFile(shared.Path(t, "golden", "sliding_window", "meta.json"))
	require.NoError(t, err)
	var meta struct {
		InfererArgs struct {
			ROI        [3]int  `json:"roi_size"`
			Overlap    float64 `json:"overlap"`
			SigmaScale float64 `json:"sigma_scale"`
		} `json:"inferer_args"`
		Input struct {
			Shape []int `json:"shape"`
		} `json:"input"`
		ScanInterval [3]int   `json:"scan_interval"`
		Starts       [3][]int `json:"window_starts_per_axis"`
		NumWindows   int      `json:"num_windows"`
	}
	require.NoError(t, json.Unmarshal(b, &meta))
	require.Len(t, meta.Input.Shape, 5)
	opt := WindowOptions{ROI: meta.InfererArgs.ROI, Overlap: meta.InfererArgs.Overlap, Mode: Gaussian, SigmaScale: meta.InfererArgs.SigmaScale}
	p, err := PlanWindows(meta.Input.Shape[2], meta.Input.Shape[3], meta.Input.Shape[4], opt)
	require.NoError(t, err)
	require.Equal(t, meta.Starts, p.Starts)
	require.Equal(t, meta.ScanInterval, p.Step)
	require.Equal(t, meta.NumWindows, p.NumWindows())
	// "row-major over (D,H,W) starts, i.e. last spatial axis fastest"
	w := p.Windows()
	require.Equal(t, [3]int{0, 0, 12}, w[1])
	require.Equal(t, [3]int{0, 12, 0}, w[len(meta.Starts[2])])
}

// A literal transcription of MONAI's dense_patch_slices for one axis (ceil, then the first
// d whose window reaches the end, then the pull-back), over many sizes.
func TestPlanWindowsMatchesDensePatchSlices(t *testing.T) {
	monai := func(n, roi int, overlap float64) []int {
		interval := roi
		if roi != n {
			interval = max(int(float64(roi)*(1-overlap)), 1)
		}
		num := int(math.Ceil(float64(n) / float64(interval)))
		scanNum := 1
		for d := range num {
			if d*interval+roi >= n {
				scanNum = d + 1
				break
			}
		}
		var starts []int
		for idx := range scanNum {
			s := idx * interval
			s -= max(s+roi-n, 0)
			starts = append(starts, s)
		}
		return starts
	}
	for _, roi := range []int{1, 7, 16, 96} {
		for _, overlap := range []float64{0, 0.25, 0.5, 0.7, 0.99} {
			for n := roi; n < roi+150; n++ {
				p, err := PlanWindows(n, roi, n, WindowOptions{ROI: [3]int{roi, roi, roi}, Overlap: overlap, Mode: Constant})
				require.NoError(t, err)
				require.Equal(t, monai(n, roi, overlap), p.Starts[0], "n=%d roi=%d overlap=%v", n, roi, overlap)
				require.Equal(t, []int{0}, p.Starts[1])
			}
		}
	}
}

func TestPlanWindowsRejectsBadOptions(t *testing.T) {
	good := DefaultWindowOptions()
	cases := map[string]func(o *WindowOptions){
		"overlap 1":        func(o *WindowOptions) { o.Overlap = 1 },
		"overlap negative": func(o *WindowOptions) { o.Overlap = -0.1 },
		"overlap NaN":      func(o *WindowOptions) { o.Overlap = math.NaN() },
		"sigma 0":          func(o *WindowOptions) { o.SigmaScale = 0 },
		"sigma Inf":        func(o *WindowOptions) { o.SigmaScale = math.Inf(1) },
		"mode":             func(o *WindowOptions) { o.Mode = 7 },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			o := good
			edit(&o)
			_, err := PlanWindows(100, 100, 100, o)
			require.Error(t, err)
		})
	}
	_, err := PlanWindows(0, 10, 10, good)
	require.Error(t, err)
	// sigma does not matter in constant mode
	c := good
	c.Mode, c.SigmaScale = Constant, 0
	_, err = PlanWindows(10, 10, 10, c)
	require.NoError(t, err)
}

func TestGaussianMapGolden(t *testing.T) {
	want := readF32(t, 16*16*16, "golden", "sliding_window", "importance_gaussian.f32")
	got := GaussianMap([3]int{16, 16, 16}, 0.125)
	require.Len(t, got, len(want))
	exact, worst := 0, 0
	for i := range want {
		d := int(math.Float32bits(got[i])) - int(math.Float32bits(want[i])) // same sign: ulp distance
		worst = max(worst, d, -d)
		if d == 0 {
			exact++
		}
	}
	t.Logf("gaussian map 16^3: %d/%d bit-exact, worst %d ulp", exact, len(want), worst)
	require.Equal(t, len(want), exact, "not bit-exact: worst %d ulp", worst)

	// Not normalised, floored at float32(1e-3), symmetric.
	require.Equal(t, float32(1e-3), got[0])
	require.InDelta(t, 0.9105103015899658, float64(got[(7*16+7)*16+7]), 1e-7)
	require.Equal(t, got[(7*16+7)*16+7], got[(8*16+8)*16+8])

	require.Nil(t, GaussianMap([3]int{0, 16, 16}, 0.125))
	require.Nil(t, GaussianMap([3]int{16, 16, 16}, 0))
	// An odd size puts a voxel on the centre: the peak is exactly 1.
	require.Equal(t, float32(1), GaussianMap([3]int{5, 7, 9}, 0.125)[(2*7+3)*9+4])
}

// On every CPU kernel level of this machine and the pure-Go reference.
func TestSlidingWindowGolden(t *testing.T) {
	eachLevel(t, testSlidingWindowGolden)
}

func testSlidingWindowGolden(t *testing.T) {
	n := goldenNet(t, "segresnet_small")
	const d, h, w, k = 37, 29, 45, 9
	x := &Tensor{C: 1, D: d, H: h, W: w, Data: readF32(t, d*h*w, "golden", "sliding_window", "input.f32")}
	for _, mode := range []BlendMode{Gaussian, Constant} {
		t.Run(mode.String(), func(t *testing.T) {
			want := readF32(t, k*d*h*w, "golden", "sliding_window", "output_"+mode.String()+".f32")
			opt := WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: mode, SigmaScale: 0.125}
			calls := 0
			got, err := SlidingWindow(x, opt, k, func(win *Tensor) (*Tensor, error) {
				calls++
				return n.Forward(win)
			})
			require.NoError(t, err)
			require.Equal(t, 36, calls)
			require.Equal(t, [4]int{k, d, h, w}, [4]int{got.C, got.D, got.H, got.W})
			maxAbs, agree := compareGolden(got, want)
			t.Logf("sliding window %s: max abs error %.3g, argmax agreement %.6f", mode, maxAbs, agree)
			require.LessOrEqual(t, maxAbs, goldenTol)
			require.Greater(t, agree, 0.999)
		})
	}
	// The bundle note's observation: blending the F features and applying the linear head
	// once gives the blended logits.
	t.Run("gaussian features then head", func(t *testing.T) {
		want := readF32(t, k*d*h*w, "golden", "sliding_window", "output_gaussian.f32")
		feat, err := SlidingWindow(x, WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: Gaussian, SigmaScale: 0.125},
			n.Cfg.InitFilters, n.Features)
		require.NoError(t, err)
		got := n.Head(feat)
		require.NotNil(t, got)
		maxAbs, agree := compareGolden(got, want)
		t.Logf("features blended then head: max abs error %.3g, argmax agreement %.6f", maxAbs, agree)
		require.LessOrEqual(t, maxAbs, goldenTol)
	})
}

// A fake predictor whose output depends on the window's content and position in a way no
// two windows share, so that a misplaced, missing or doubled window changes the result.
func fakePredict(k int) func(win *Tensor) (*Tensor, error) {
	return func(win *Tensor) (*Tensor, error) {
		out := NewTensor(k, win.D, win.H, win.W)
		vox := win.Voxels()
		for c := range k {
			for v := range vox {
				// mixes the voxel's value, its neighbour and its position in the window
				out.Data[c*vox+v] = float32(c+1)*win.Data[v] - 0.5*win.Data[(v+c+1)%vox] + float32(v%7)*0.01
			}
		}
		return out, nil
	}
}

// naiveSlidingWindow blends in float64 straight from the definition, given an image that
// needs no padding: sum over windows of w*logits / sum of w, voxel by voxel.
func naiveSlidingWindow(t *testing.T, x *Tensor, opt WindowOptions, k int, predict func(*Tensor) (*Tensor, error)) *t64 {
	t.Helper()
	p, err := PlanWindows(x.D, x.H, x.W, opt)
	require.NoError(t, err)
	require.False(t, p.Padding())
	w := p.ImportanceMap()
	num := newT64(k, x.D, x.H, x.W)
	den := newT64(1, x.D, x.H, x.W)
	r := p.ROI
	for _, s := range p.Windows() {
		win, err := Crop(x, s, r)
		require.NoError(t, err)
		out, err := predict(win)
		require.NoError(t, err)
		for z := range r[0] {
			for y := range r[1] {
				for xx := range r[2] {
					wt := float64(w[(z*r[1]+y)*r[2]+xx])
					den.set(0, s[0]+z, s[1]+y, s[2]+xx, den.at(0, s[0]+z, s[1]+y, s[2]+xx)+wt)
					for c := range k {
						l := float64(out.Data[((c*r[0]+z)*r[1]+y)*r[2]+xx])
						num.set(c, s[0]+z, s[1]+y, s[2]+xx, num.at(c, s[0]+z, s[1]+y, s[2]+xx)+wt*l)
					}
				}
			}
		}
	}
	for i := range num.Data {
		num.Data[i] /= den.Data[i%len(den.Data)]
	}
	return num
}

// Padding: golden has no padded case, so an image shorter than the window is checked
// against an explicit replicate pad, the unpadded algorithm (the naive float64 blend), and
// a crop back to the input.
func TestSlidingWindowPadding(t *testing.T) {
	cases := []struct {
		size [3]int
		mode BlendMode
	}{
		{[3]int{9, 16, 40}, Gaussian}, // D short by 7: 3 before, 4 after
		{[3]int{5, 3, 21}, Constant},
		{[3]int{1, 14, 15}, Gaussian},
	}
	const k = 3
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v_%v", tc.size, tc.mode), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(9, uint64(tc.size[0])))
			x := randTensor(rng, 1, tc.size[0], tc.size[1], tc.size[2], 0)
			opt := WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: tc.mode, SigmaScale: 0.125}
			got, err := SlidingWindow(x, opt, k, fakePredict(k))
			require.NoError(t, err)
			require.Equal(t, [4]int{k, tc.size[0], tc.size[1], tc.size[2]}, [4]int{got.C, got.D, got.H, got.W})

			// The independent path: pad by hand (replicate, diff//2 before), blend, crop.
			var before [3]int
			padded := [3]int{}
			for a := range 3 {
				diff := max(16-tc.size[a], 0)
				before[a] = diff / 2
				padded[a] = tc.size[a] + diff
			}
			xp := NewTensor(1, padded[0], padded[1], padded[2])
			cl := func(i, n int) int { return min(max(i, 0), n-1) }
			for z := range padded[0] {
				for y := range padded[1] {
					for xx := range padded[2] {
						v := x.Data[(cl(z-before[0], x.D)*x.H+cl(y-before[1], x.H))*x.W+cl(xx-before[2], x.W)]
						xp.Data[(z*padded[1]+y)*padded[2]+xx] = v
					}
				}
			}
			full := naiveSlidingWindow(t, xp, opt, k, fakePredict(k))
			maxDiff := 0.0
			for c := range k {
				for z := range x.D {
					for y := range x.H {
						for xx := range x.W {
							want := full.at(c, z+before[0], y+before[1], xx+before[2])
							g := float64(got.Data[((c*x.D+z)*x.H+y)*x.W+xx])
							maxDiff = max(maxDiff, math.Abs(g-want))
						}
					}
				}
			}
			require.LessOrEqual(t, maxDiff, 1e-5)
		})
	}
}

// Without padding, the float32 blend against the float64 definition, on a shape with
// uneven window overlaps in all three axes.
func TestSlidingWindowMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	x := randTensor(rng, 1, 23, 17, 30, 0)
	const k = 4
	for _, mode := range []BlendMode{Gaussian, Constant} {
		opt := WindowOptions{ROI: [3]int{8, 16, 12}, Overlap: 0.4, Mode: mode, SigmaScale: 0.2}
		got, err := SlidingWindow(x, opt, k, fakePredict(k))
		require.NoError(t, err)
		e, scale := maxErr(got, naiveSlidingWindow(t, x, opt, k, fakePredict(k)))
		require.LessOrEqual(t, e, 1e-5*max(scale, 1), "%s", mode)
	}
}

func TestSlidingWindowErrors(t *testing.T) {
	x := NewTensor(1, 20, 20, 20)
	opt := WindowOptions{ROI: [3]int{16, 16, 16}, Overlap: 0.25, Mode: Constant}
	boom := errors.New("boom")
	_, err := SlidingWindow(x, opt, 2, func(*Tensor) (*Tensor, error) { return nil, boom })
	require.ErrorIs(t, err, boom)
	_, err = SlidingWindow(x, opt, 2, func(w *Tensor) (*Tensor, error) { return NewTensor(3, w.D, w.H, w.W), nil })
	require.ErrorContains(t, err, "want [2 16 16 16]")
	_, err = SlidingWindow(x, opt, 2, func(w *Tensor) (*Tensor, error) { return NewTensor(2, 8, 8, 8), nil })
	require.Error(t, err)
	_, err = SlidingWindow(x, opt, 2, nil)
	require.Error(t, err)
	_, err = SlidingWindow(nil, opt, 2, fakePredict(2))
	require.Error(t, err)
	_, err = SlidingWindow(x, opt, 0, fakePredict(2))
	require.Error(t, err)

	p, err := PlanWindows(20, 20, 20, opt)
	require.NoError(t, err)
	b, err := NewBlender(p, 1)
	require.NoError(t, err)
	require.Error(t, b.Add([3]int{5, 0, 0}, NewTensor(1, 16, 16, 16)), "outside the volume")
	_, err = b.Result()
	require.NoError(t, err)
	_, err = b.Result()
	require.Error(t, err)
	require.Error(t, b.Add([3]int{0, 0, 0}, NewTensor(1, 16, 16, 16)))
}

func TestPadReplicateAndCrop(t *testing.T) {
	x := &Tensor{C: 2, D: 1, H: 2, W: 2, Data: []float32{1, 2, 3, 4, 5, 6, 7, 8}}
	p, err := PadReplicate(x, [3]int{1, 0, 1}, [3]int{0, 1, 2})
	require.NoError(t, err)
	require.Equal(t, [4]int{2, 2, 3, 5}, [4]int{p.C, p.D, p.H, p.W})
	// every D plane is the single input plane; rows: [1 1 2 2 2] [3 3 4 4 4] [3 3 4 4 4]
	plane := []float32{1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 3, 3, 4, 4, 4}
	require.Equal(t, plane, p.Data[0:15])
	require.Equal(t, plane, p.Data[15:30])
	c, err := Crop(p, [3]int{1, 0, 1}, [3]int{1, 2, 2})
	require.NoError(t, err)
	require.Equal(t, x.Data, c.Data)
	_, err = Crop(p, [3]int{1, 0, 4}, [3]int{1, 2, 2})
	require.Error(t, err)
	_, err = PadReplicate(x, [3]int{-1, 0, 0}, [3]int{})
	require.Error(t, err)
	same, err := PadReplicate(x, [3]int{}, [3]int{})
	require.NoError(t, err)
	require.Same(t, x, same)
}

// expf is SLEEF's algorithm, so it is not correctly rounded, but it must stay within 1 ulp.
func TestExpfWithinOneULP(t *testing.T) {
	worst := 0
	for d := float32(-103); d <= 88; d += 0.0137 {
		want := float32(math.Exp(float64(d)))
		u := int(math.Float32bits(expf(d))) - int(math.Float32bits(want))
		worst = max(worst, u, -u)
	}
	require.LessOrEqual(t, worst, 1)
	require.Equal(t, float32(1), expf(0))
	require.Equal(t, float32(0), expf(-105))
	require.True(t, math.IsInf(float64(expf(101)), 1))
}

// fmaf must round once, like the hardware FMA: compare with exact big.Float arithmetic,
// including a case where rounding through float64 first would be wrong.
func TestFmafRoundsOnce(t *testing.T) {
	exact := func(a, b, c float32) float32 {
		x := new(big.Float).SetPrec(200).SetFloat64(float64(a))
		x.Mul(x, new(big.Float).SetPrec(200).SetFloat64(float64(b)))
		x.Add(x, new(big.Float).SetPrec(200).SetFloat64(float64(c)))
		f, _ := x.Float32()
		return f
	}
	// (1+2^-23) * 2^-24 (1-2^-23) + (1+2^-23) = 1 + 2^-23 + 2^-24 - 2^-70: just below the
	// float32 midpoint, but float64 rounds it onto the midpoint, which then ties to even.
	a := float32(1 + 0x1p-23)
	b := float32(0x1p-24 * (1 - 0x1p-23))
	require.Equal(t, a, fmaf(a, b, a))
	require.Equal(t, exact(a, b, a), fmaf(a, b, a))
	require.NotEqual(t, a, float32(math.FMA(float64(a), float64(b), float64(a))))

	rng := rand.New(rand.NewPCG(11, 11))
	for range 100000 {
		a, b, c := float32(rng.NormFloat64()), float32(rng.NormFloat64()), float32(rng.NormFloat64())
		require.Equal(t, exact(a, b, c), fmaf(a, b, c), "fmaf(%v, %v, %v)", a, b, c)
	}
}
