package model

import (
	"fmt"
	"math"
	"strings"
)

// Sliding-window inference with the semantics of MONAI's sliding_window_inference (1.4/1.5),
// as the bundle's SlidingWindowInferer calls it (sw_batch_size 1, padding_mode "replicate").
//
// The work is split in three so that another executor (the GPU) can reuse the geometry and
// replace only the arithmetic: PlanWindows and GaussianMap say where the windows go and how
// they are weighted; Blender accumulates window outputs the way MONAI does; SlidingWindow
// glues them together around a predict function.

// BlendMode is how overlapping window outputs are weighted.
type BlendMode int

const (
	// Gaussian weights each window by GaussianMap (the bundle's mode).
	Gaussian BlendMode = iota
	// Constant weights every window voxel by 1.
	Constant
)

// ParseBlendMode accepts MONAI's names, "gaussian" and "constant".
func ParseBlendMode(s string) (BlendMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "gaussian":
		return Gaussian, nil
	case "constant":
		return Constant, nil
	}
	return 0, fmt.Errorf("blend mode %q: want \"gaussian\" or \"constant\"", s)
}

// String returns MONAI's name of the mode.
func (m BlendMode) String() string {
	switch m {
	case Gaussian:
		return "gaussian"
	case Constant:
		return "constant"
	}
	return fmt.Sprintf("BlendMode(%d)", int(m))
}

// UnmarshalText lets flags and JSON configs name the mode.
func (m *BlendMode) UnmarshalText(b []byte) error {
	v, err := ParseBlendMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalText writes MONAI's name of the mode.
func (m BlendMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// WindowOptions are SlidingWindowInferer's arguments that matter here.
type WindowOptions struct {
	ROI        [3]int // window size D, H, W; a value <= 0 takes the image's size on that axis
	Overlap    float64
	Mode       BlendMode
	SigmaScale float64 // gaussian sigma = SigmaScale * ROI, per axis
}

// DefaultWindowOptions are the bundle's: 96^3 windows, overlap 0.25, gaussian, sigma 0.125.
func DefaultWindowOptions() WindowOptions {
	return WindowOptions{ROI: [3]int{96, 96, 96}, Overlap: 0.25, Mode: Gaussian, SigmaScale: 0.125}
}

// WindowPlan is the geometry of one sliding-window run: the image is replicate-padded up to
// the window size where it is smaller, windows of size ROI start at Starts (per axis, in the
// padded volume), and the blended result is cropped back to Size.
type WindowPlan struct {
	Size       [3]int   // input D, H, W
	Padded     [3]int   // after padding: max(Size, ROI) per axis
	PadBefore  [3]int   // (ROI - Size) // 2 where positive, else 0
	PadAfter   [3]int   // the rest of the difference
	ROI        [3]int   // window size actually used (options' ROI with <= 0 resolved)
	Step       [3]int   // MONAI's scan interval
	Starts     [3][]int // window start positions per axis, in the padded volume
	Mode       BlendMode
	SigmaScale float64
}

// PlanWindows computes MONAI's window layout for a d x h x w image.
func PlanWindows(d, h, w int, opt WindowOptions) (*WindowPlan, error) {
	size := [3]int{d, h, w}
	if d <= 0 || h <= 0 || w <= 0 {
		return nil, fmt.Errorf("sliding window: bad image size %dx%dx%d", d, h, w)
	}
	// MONAI rejects overlap outside [0, 1); written so that NaN is rejected too.
	if !(opt.Overlap >= 0 && opt.Overlap < 1) {
		return nil, fmt.Errorf("sliding window: overlap %v is not in [0, 1)", opt.Overlap)
	}
	switch opt.Mode {
	case Gaussian:
		if !(opt.SigmaScale > 0) || math.IsInf(opt.SigmaScale, 0) {
			return nil, fmt.Errorf("sliding window: gaussian sigma scale %v is not positive", opt.SigmaScale)
		}
	case Constant:
	default:
		return nil, fmt.Errorf("sliding window: unknown blend mode %v", opt.Mode)
	}
	p := &WindowPlan{Size: size, Mode: opt.Mode, SigmaScale: opt.SigmaScale}
	for a := range 3 {
		roi := opt.ROI[a]
		if roi <= 0 { // MONAI's fall_back_tuple: non-positive means the whole axis
			roi = size[a]
		}
		p.ROI[a] = roi
		diff := max(roi-size[a], 0)
		p.PadBefore[a], p.PadAfter[a] = diff/2, diff-diff/2
		p.Padded[a] = size[a] + diff
		p.Step[a] = scanInterval(p.Padded[a], roi, opt.Overlap)
		p.Starts[a] = windowStarts(p.Padded[a], roi, p.Step[a])
	}
	return p, nil
}

// scanInterval is MONAI's _get_scan_interval for one axis: the window size when it covers
// the axis exactly, else int(roi * (1 - overlap)) computed in float64 and at least 1.
func scanInterval(n, roi int, overlap float64) int {
	if roi == n {
		return roi
	}
	return max(int(float64(roi)*(1-overlap)), 1)
}

// windowStarts is MONAI's dense_patch_slices for one axis (n >= roi): starts 0, step, 2 step,
// ... up to the first window that reaches the end, whose start is pulled back to n - roi.
func windowStarts(n, roi, step int) []int {
	var starts []int
	for s := 0; ; s += step {
		if s+roi >= n {
			return append(starts, n-roi)
		}
		starts = append(starts, s)
	}
}

// Windows returns every window's start (D, H, W) in MONAI's order: row-major over the
// per-axis starts, the last axis fastest.
func (p *WindowPlan) Windows() [][3]int {
	out := make([][3]int, 0, p.NumWindows())
	for _, z := range p.Starts[0] {
		for _, y := range p.Starts[1] {
			for _, x := range p.Starts[2] {
				out = append(out, [3]int{z, y, x})
			}
		}
	}
	return out
}

// NumWindows is the number of windows.
func (p *WindowPlan) NumWindows() int {
	return len(p.Starts[0]) * len(p.Starts[1]) * len(p.Starts[2])
}

// Padding reports whether the image is padded on any axis.
func (p *WindowPlan) Padding() bool {
	return p.PadBefore != [3]int{} || p.PadAfter != [3]int{}
}

// ImportanceMap returns the per-window weights of the plan's mode, ROI-sized, W fastest:
// GaussianMap for Gaussian, all ones for Constant.
func (p *WindowPlan) ImportanceMap() []float32 {
	if p.Mode == Gaussian {
		return GaussianMap(p.ROI, p.SigmaScale)
	}
	m := make([]float32, p.ROI[0]*p.ROI[1]*p.ROI[2])
	for i := range m {
		m[i] = 1
	}
	return m
}

// GaussianMap is MONAI's compute_importance_map(mode="gaussian") followed by the clamp that
// sliding_window_inference applies, reproduced operation for operation in float32:
//
//	x_a[i] = exp((t*t) / (-2 sigma_a^2)), t = i - (r_a-1)/2, sigma_a = sigmaScale * r_a
//	map[d][h][w] = (x_0[d] * x_1[h]) * x_2[w]    (torch's unsqueeze-and-multiply order)
//	map = max(map, float32(1e-3))
//
// -2 sigma^2 is formed in float64 (Python) and rounded once to float32 for the division, as
// torch does with a Python scalar; exp is torch's CPU float32 exp (see expf). The map is not
// normalised: its peak is below 1 when the centre falls between voxels. It returns nil for
// a non-positive size or sigma scale.
func GaussianMap(roi [3]int, sigmaScale float64) []float32 {
	if roi[0] <= 0 || roi[1] <= 0 || roi[2] <= 0 || !(sigmaScale > 0) || math.IsInf(sigmaScale, 0) {
		return nil
	}
	var prof [3][]float32
	for a, r := range roi {
		sigma := float64(r) * sigmaScale
		div := float32(-2 * sigma * sigma)
		prof[a] = make([]float32, r)
		for i := range r {
			// torch.arange(-(r-1)/2, (r-1)/2 + 1): half-integers, exact in float32.
			t := float32(float64(i) - float64(r-1)/2)
			prof[a][i] = expf(t * t / div)
		}
	}
	const floor = float32(1e-3)
	m := make([]float32, roi[0]*roi[1]*roi[2])
	k := 0
	for _, gd := range prof[0] {
		for _, gh := range prof[1] {
			dh := gd * gh
			for _, gw := range prof[2] {
				m[k] = max(dh*gw, floor)
				k++
			}
		}
	}
	return m
}

// expf is the float32 exp that torch.exp runs on x86 CPUs: SLEEF's xexpf (the u10 variant,
// with fused multiply-adds, as in Sleef_expf8_u10 / Sleef_expf16_u10 behind
// Vectorized<float>::exp). It is within 1 ulp but not correctly rounded: for the 16^3 golden
// window, exp(-2.53125) and exp(-5.28125) land one ulp below the correctly rounded value,
// and the golden importance map only matches bit for bit with this algorithm.
func expf(d float32) float32 {
	const (
		rLn2 = float32(1.442695040888963407359924681001892137426645954152985934135449406931)
		l2u  = float32(0.693145751953125) // ln 2 split in two so q*l2u is exact
		l2l  = float32(1.428606765330187045e-06)
	)
	switch {
	case d < -104:
		return 0
	case d > 100:
		return float32(math.Inf(1))
	}
	q := float32(math.RoundToEven(float64(d * rLn2)))
	s := fmaf(q, -l2u, d)
	s = fmaf(q, -l2l, s)
	u := float32(0.000198527617612853646278381)
	u = fmaf(u, s, 0.00139304355252534151077271)
	u = fmaf(u, s, 0.00833336077630519866943359)
	u = fmaf(u, s, 0.0416664853692054748535156)
	u = fmaf(u, s, 0.166666671633720397949219)
	u = fmaf(u, s, 0.5)
	u = 1 + fmaf(float32(s*s), u, s)
	// SLEEF scales by 2^(q/2) twice; for q >= -150 that equals one exact scaling by 2^q
	// rounded once, which is what the conversion from float64 does.
	return float32(math.Ldexp(float64(u), int(q)))
}

// fmaf is C's fmaf: a*b + c rounded once to float32, as the vector FMA instructions compute
// it. The product of two float32 is exact in float64, so only the sum rounds, first to
// float64 and then to float32; the second rounding can only go wrong when the float64 sum
// sits exactly halfway between two float32 values without being exact, and then it is
// nudged toward the exact sum (known from TwoSum). Valid for results in float32's normal
// range, which is all expf needs.
func fmaf(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := p + float64(c)
	bv := s - p
	residual := (p - (s - bv)) + (float64(c) - bv) // exact: (p + c) - s
	if residual != 0 && math.Float64bits(s)&(1<<29-1) == 1<<28 {
		s = math.Nextafter(s, math.Copysign(math.Inf(1), residual))
	}
	return float32(s)
}

// PadReplicate returns x padded on each spatial axis by before[a] and after[a] copies of its
// edge voxels (torch's "replicate" mode). It returns x itself when nothing is padded.
func PadReplicate(x *Tensor, before, after [3]int) (*Tensor, error) {
	if err := checkTensor("pad input", x); err != nil {
		return nil, err
	}
	for a := range 3 {
		if before[a] < 0 || after[a] < 0 {
			return nil, fmt.Errorf("pad: negative padding %v / %v", before, after)
		}
	}
	if before == [3]int{} && after == [3]int{} {
		return x, nil
	}
	out := NewTensor(x.C, x.D+before[0]+after[0], x.H+before[1]+after[1], x.W+before[2]+after[2])
	clamp := func(i, n int) int { return min(max(i, 0), n-1) }
	parallelFor(out.C*out.D, func(t int) {
		c, z := t/out.D, t%out.D
		zi := clamp(z-before[0], x.D)
		for y := range out.H {
			yi := clamp(y-before[1], x.H)
			src := x.Data[((c*x.D+zi)*x.H+yi)*x.W:][:x.W]
			dst := out.Data[((c*out.D+z)*out.H+y)*out.W:][:out.W]
			for i := range before[2] {
				dst[i] = src[0]
			}
			copy(dst[before[2]:], src)
			for i := before[2] + x.W; i < out.W; i++ {
				dst[i] = src[x.W-1]
			}
		}
	})
	return out, nil
}

// Crop returns the box of x starting at start (D, H, W) of the given size, all channels.
func Crop(x *Tensor, start, size [3]int) (*Tensor, error) {
	return cropInto(nil, x, start, size)
}

// cropInto is Crop into out when out has the box's shape (a new tensor otherwise).
func cropInto(out, x *Tensor, start, size [3]int) (*Tensor, error) {
	if err := checkTensor("crop input", x); err != nil {
		return nil, err
	}
	dims := [3]int{x.D, x.H, x.W}
	for a := range 3 {
		if start[a] < 0 || size[a] <= 0 || start[a]+size[a] > dims[a] {
			return nil, fmt.Errorf("crop: box %v+%v outside volume %v", start, size, dims)
		}
	}
	if out == nil || out.C != x.C || out.D != size[0] || out.H != size[1] || out.W != size[2] {
		out = NewTensor(x.C, size[0], size[1], size[2])
	}
	for c := range x.C {
		for z := range size[0] {
			for y := range size[1] {
				src := x.Data[((c*x.D+start[0]+z)*x.H+start[1]+y)*x.W+start[2]:][:size[2]]
				copy(out.Data[((c*size[0]+z)*size[1]+y)*size[2]:], src)
			}
		}
	}
	return out, nil
}

// Blender accumulates window outputs like MONAI: out += w * logits and count += w over the
// padded volume, in float32 and in window order, then out / count, cropped to the image.
// The GPU executor replaces this part and keeps the plan and the map.
//
// A ring blender (newRingBlender) holds only ROI[0] padded D-slices, slice z in slot
// z % depth, and sums the weights as windows are added rather than up front: with windows
// added in plan order (first axis outermost) each voxel sees the same additions in the same
// order, and a slice is final once a window row starts after it (Net.SlidingWindowLabels).
type Blender struct {
	plan    *WindowPlan
	weights []float32 // the importance map, ROI-sized
	depth   int       // padded D-slices held: all, or ROI[0] in a ring
	ring    bool      // count is summed in Add; slices are finished and their slots reused
	out     *Tensor   // sum of w * logits, [C][depth][padded H][padded W]
	count   []float32 // sum of w, [depth][padded H][padded W]
	done    bool      // Result has divided out in place
}

// NewBlender prepares the accumulation of channels-channel window outputs for plan. Like
// MONAI's buffer setup, it sums the weight map over every window of the plan at once.
func NewBlender(plan *WindowPlan, channels int) (*Blender, error) {
	b, err := newBlender(plan, channels, false)
	if err != nil {
		return nil, err
	}
	for _, s := range plan.Windows() {
		b.addWeights(s)
	}
	return b, nil
}

// newRingBlender is a Blender of ROI[0] slots (see Blender).
func newRingBlender(plan *WindowPlan, channels int) (*Blender, error) {
	return newBlender(plan, channels, true)
}

func newBlender(plan *WindowPlan, channels int, ring bool) (*Blender, error) {
	if plan == nil || channels <= 0 {
		return nil, fmt.Errorf("blender: need a plan and a positive channel count (got %d)", channels)
	}
	pd := plan.Padded
	depth := pd[0]
	if ring {
		depth = plan.ROI[0]
	}
	b := &Blender{
		plan:    plan,
		weights: plan.ImportanceMap(),
		depth:   depth,
		ring:    ring,
		out:     NewTensor(channels, depth, pd[1], pd[2]),
		count:   make([]float32, depth*pd[1]*pd[2]),
	}
	if b.weights == nil {
		return nil, fmt.Errorf("blender: no importance map for roi %v, sigma scale %v", plan.ROI, plan.SigmaScale)
	}
	return b, nil
}

// eachRow calls f on every W-row of the window at start: dst the row of the held
// single-channel volume vol, w the matching row of the weight map, r the row's index
// within the window (row r of the window's plane-major layout).
func (b *Blender) eachRow(start [3]int, f func(dst, w []float32, r int), vol []float32) {
	roi, pd := b.plan.ROI, b.plan.Padded
	for z := range roi[0] {
		for y := range roi[1] {
			r := z*roi[1] + y
			off := (((start[0]+z)%b.depth)*pd[1]+start[1]+y)*pd[2] + start[2]
			f(vol[off:off+roi[2]], b.weights[r*roi[2]:(r+1)*roi[2]], r)
		}
	}
}

// addWeights adds the window at start's importance map to count.
func (b *Blender) addWeights(start [3]int) {
	b.eachRow(start, func(dst, w []float32, _ int) {
		for i := range dst {
			dst[i] += w[i]
		}
	}, b.count)
}

// Add blends the output of the window at start (one of plan.Windows()).
func (b *Blender) Add(start [3]int, logits *Tensor) error {
	roi, pd := b.plan.ROI, b.plan.Padded
	if b.done {
		return fmt.Errorf("blender: Add after Result")
	}
	if err := checkTensor("window output", logits); err != nil {
		return err
	}
	if logits.C != b.out.C || logits.D != roi[0] || logits.H != roi[1] || logits.W != roi[2] {
		return fmt.Errorf("window output [%d %d %d %d], want [%d %d %d %d]",
			logits.C, logits.D, logits.H, logits.W, b.out.C, roi[0], roi[1], roi[2])
	}
	for a := range 3 {
		if start[a] < 0 || start[a]+roi[a] > pd[a] {
			return fmt.Errorf("window at %v outside the padded volume %v", start, pd)
		}
	}
	vox := len(b.count)
	win := roi[0] * roi[1] * roi[2]
	parallelFor(b.out.C+1, func(c int) {
		if c == b.out.C { // the weights, here only in a ring
			if b.ring {
				b.addWeights(start)
			}
			return
		}
		src := logits.Data[c*win : (c+1)*win]
		b.eachRow(start, func(dst, w []float32, r int) {
			l := src[r*roi[2] : (r+1)*roi[2]]
			for i := range dst {
				// The explicit conversion keeps the product rounded on its own, as torch's
				// separate multiply and add are; Go may otherwise fuse them into one FMA.
				dst[i] += float32(l[i] * w[i])
			}
		}, b.out.Data[c*vox:(c+1)*vox])
	})
	return nil
}

// Result divides out by count and crops the padding: the blended outputs of the image.
func (b *Blender) Result() (*Tensor, error) {
	if b.done {
		return nil, fmt.Errorf("blender: Result called twice")
	}
	if b.ring {
		return nil, fmt.Errorf("blender: a ring holds no whole result")
	}
	b.done = true
	vox := len(b.count)
	parallelFor(b.out.C, func(c int) {
		d := b.out.Data[c*vox : (c+1)*vox]
		for i, n := range b.count {
			d[i] /= n
		}
	})
	if !b.plan.Padding() {
		return b.out, nil
	}
	return Crop(b.out, b.plan.PadBefore, b.plan.Size)
}

// paddedInput plans the windows over x and pads x for them (replicate).
func paddedInput(x *Tensor, opt WindowOptions) (*WindowPlan, *Tensor, error) {
	if err := checkTensor("sliding window input", x); err != nil {
		return nil, nil, err
	}
	plan, err := PlanWindows(x.D, x.H, x.W, opt)
	if err != nil {
		return nil, nil, err
	}
	padded, err := PadReplicate(x, plan.PadBefore, plan.PadAfter)
	if err != nil {
		return nil, nil, err
	}
	return plan, padded, nil
}

// slide runs predict on every window of b's plan, cut out of padded, in plan order, and adds
// the outputs to b. rowStart, when set, is called before the first window of every row along
// the first axis with the row's start; progress, when set, after every window (an error from
// it stops the run). Every window is cut into the same tensor: predict must not keep it.
func (b *Blender) slide(padded *Tensor, predict func(win *Tensor) (*Tensor, error), rowStart func(z int), progress func(done, total int) error) error {
	plan := b.plan
	windows := plan.Windows()
	var win *Tensor
	for i, s := range windows {
		if rowStart != nil && (i == 0 || s[0] != windows[i-1][0]) {
			rowStart(s[0])
		}
		var err error
		win, err = cropInto(win, padded, s, plan.ROI)
		if err != nil {
			return err
		}
		out, err := predict(win)
		if err != nil {
			return fmt.Errorf("sliding window %d/%d at %v: %w", i+1, len(windows), s, err)
		}
		if err := b.Add(s, out); err != nil {
			return fmt.Errorf("sliding window %d/%d: %w", i+1, len(windows), err)
		}
		if progress != nil {
			if err := progress(i+1, len(windows)); err != nil {
				return err
			}
		}
	}
	return nil
}

// SlidingWindow runs predict on every window of x (ROI-sized, x's channels) and blends the
// outChannels-channel outputs as MONAI's SlidingWindowInferer does: replicate padding where
// x is smaller than the window, weighted mean by the importance map, crop back to x's size.
// predict must not keep the window it is given (the next window reuses it).
//
// predict may be Net.Features with outChannels = F, followed by Net.Head on the result: the
// head is linear and the blend a normalised weighted mean, so that equals blending the
// logits (up to rounding) with F/K of the accumulator memory.
func SlidingWindow(x *Tensor, opt WindowOptions, outChannels int, predict func(win *Tensor) (*Tensor, error)) (*Tensor, error) {
	if predict == nil {
		return nil, fmt.Errorf("sliding window: nil predict function")
	}
	plan, padded, err := paddedInput(x, opt)
	if err != nil {
		return nil, err
	}
	blend, err := NewBlender(plan, outChannels)
	if err != nil {
		return nil, err
	}
	if err := blend.slide(padded, predict, nil, nil); err != nil {
		return nil, err
	}
	return blend.Result()
}

// WeightSum returns the denominator of the blend on one slice of the image: for every voxel at
// index w of the last axis (in the image, not the padded volume), the sum of the importance
// weights of the windows covering it, D x H values with D fastest (as volume slices). With Constant blending it
// counts the windows, which jumps at every window's edge: there the blended result can show
// seams; the gaussian weights fall off towards the edges and hide them.
func (p *WindowPlan) WeightSum(w int) ([]float32, error) {
	if w < 0 || w >= p.Size[2] {
		return nil, fmt.Errorf("slice %d is outside 0..%d", w, p.Size[2]-1)
	}
	imp := p.ImportanceMap()
	r := p.ROI
	out := make([]float32, p.Size[0]*p.Size[1])
	pw := w + p.PadBefore[2]
	for _, st := range p.Windows() {
		lw := pw - st[2]
		if lw < 0 || lw >= r[2] {
			continue
		}
		for ld := 0; ld < r[0]; ld++ {
			d := st[0] + ld - p.PadBefore[0]
			if d < 0 || d >= p.Size[0] {
				continue
			}
			for lh := 0; lh < r[1]; lh++ {
				h := st[1] + lh - p.PadBefore[1]
				if h < 0 || h >= p.Size[1] {
					continue
				}
				out[d+p.Size[0]*h] += imp[(ld*r[1]+lh)*r[2]+lw]
			}
		}
	}
	return out, nil
}
