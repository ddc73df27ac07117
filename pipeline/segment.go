package pipeline

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"time"

	"ctseg/labels"
	"ctseg/model"
	"ctseg/volume"
	"ctseg/volume/dicom"
)

// ErrCancelled is returned when Options.Cancelled asked to stop.
var ErrCancelled = errors.New("cancelled")

// Result is a label map on the input's grid.
type Result struct {
	Labels  []uint8 // x-fastest, Dims
	Dims    [3]int
	Affine  [4][4]float64
	PreDims [3]int // the preprocessed grid the network saw
	Windows int
	PeakGPU uint64 // measured peak GPU memory of the run (GPU runs)
	Plan    *model.GPUPlan
	Spacing float64
	Classes int
	Stages  []Stage // preprocess, GPU setup (when Segment built the network), windows, invert
	// With Options.Confidence, for every voxel of Labels: the softmax probability of its label
	// (P1) from the blended scores, times 255 and rounded, mapped back onto the input grid as
	// the labels are; with Options.RunnerUp too the runner-up's probability (P2) and class
	// (Second).
	P1, P2, Second []uint8
	// PreLabels is the label map on the network's grid ([D][H][W]) with
	// Options.KeepPreLabels: what Prepared.Occlude starts from.
	PreLabels []uint8
	made      made
}

// made is what a result was computed with, for a later run that changes part of it
// (Prepared.Occlude) to refuse other settings.
type made struct {
	net    *model.Net
	f16    bool // f16 storage on the GPU (the CPU path computes in f32)
	window model.WindowOptions
}

// window is the options' sliding window, the bundle's when unset.
func (o Options) window() model.WindowOptions {
	if o.Window.ROI == [3]int{} {
		return model.DefaultWindowOptions()
	}
	return o.Window
}

// Segment runs the bundle's inference on ct: preprocessing, sliding-window inference,
// argmax, inversion onto ct's grid.
func Segment(ct *volume.Volume, net *model.Net, opt Options) (*Result, error) {
	p, err := Prepare(ct, opt)
	if err != nil {
		return nil, err
	}
	return p.Run(net, opt)
}

// Prepared is a CT preprocessed for the network, ready for Run: `ctseg batch` prepares the next
// case on the CPU while the GPU runs the current one.
type Prepared struct {
	vol    *model.Tensor
	inv    *volume.Inversion
	plan   *model.WindowPlan
	dims   [3]int
	affine [4][4]float64
	stage  Stage // the preprocessing's wall time
	opt    Options
}

// Windows is the number of sliding windows Run will compute.
func (p *Prepared) Windows() int { return p.plan.NumWindows() }

// PreDims is the preprocessed grid the network will see.
func (p *Prepared) PreDims() [3]int { return p.inv.PreprocessedDims() }

// Prepare does the CPU work before the network: preprocessing (orientation, spacing,
// intensity) and the window plan for opt's spacing and window.
func Prepare(ct *volume.Volume, opt Options) (*Prepared, error) {
	if opt.Spacing != 1.5 && opt.Spacing != 3 {
		return nil, fmt.Errorf("spacing %v mm: the bundle's models use 1.5 or 3", opt.Spacing)
	}
	t := time.Now()
	pre, inv, err := volume.Preprocess(ct, opt.Spacing)
	if err != nil {
		return nil, err
	}
	pd := pre.Dims
	// The network reads MONAI's [1, X, Y, Z] array: D = X, H = Y, W = Z, W fastest.
	vol := &model.Tensor{C: 1, D: pd[0], H: pd[1], W: pd[2], Data: pre.ToDHW()}
	pre = nil // the x-fastest copy is no longer needed
	plan, err := model.PlanWindows(vol.D, vol.H, vol.W, opt.window())
	if err != nil {
		return nil, err
	}
	return &Prepared{vol: vol, inv: inv, plan: plan, dims: ct.Dims, affine: ct.Affine, opt: opt,
		stage: Stage{"preprocess", time.Since(t).Seconds()}}, nil
}

// Run is the rest of Segment on a prepared CT: sliding-window inference, argmax, inversion.
// opt must have the spacing and window p was prepared with; its device, network and callbacks
// may differ.
func (p *Prepared) Run(net *model.Net, opt Options) (*Result, error) {
	if opt.Spacing != p.opt.Spacing || opt.window() != p.opt.window() {
		return nil, fmt.Errorf("internal error: prepared for %v mm and window %v, run with %v mm and window %v",
			p.opt.Spacing, p.opt.window().ROI, opt.Spacing, opt.window().ROI)
	}
	st := newStages()
	st.list = append(st.list, p.stage)
	pd := p.PreDims()
	res := &Result{Dims: p.dims, Affine: p.affine, PreDims: pd, Windows: p.plan.NumWindows(), Spacing: opt.Spacing, Classes: net.Cfg.OutChannels,
		made: made{net: net, f16: opt.F16 && opt.GPU != nil, window: opt.window()}}
	progress := func(done, total int) error {
		if opt.Progress != nil {
			opt.Progress(done, total)
		}
		if opt.Cancelled != nil && opt.Cancelled() {
			return ErrCancelled
		}
		return nil
	}
	var out model.WindowOutput
	var err error
	if opt.GPU != nil {
		out, err = segmentGPU(p.vol, p.plan, net, opt, res, progress, st)
	} else {
		// the CPU path: the head and argmax slice by slice as slices become final
		n := p.vol.Voxels()
		out.Labels = make([]uint8, n)
		if opt.Confidence {
			out.Conf, out.Second = make([]uint32, n), make([]uint8, n)
		}
		err = net.SlidingWindowOutput(p.vol, opt.window(), out, progress)
	}
	if err != nil {
		return nil, err
	}
	st.done("sliding window")
	// [D][H][W] of the network to the preprocessed volume's x-fastest order, then back onto the
	// input grid
	invert := p.invert
	if opt.KeepPreLabels {
		res.PreLabels = out.Labels
	}
	if res.Labels, err = invert(out.Labels); err != nil {
		return nil, err
	}
	if out.Conf != nil {
		// p1 (and for the page p2 and the runner-up) as bytes on the input grid; the network
		// grid's words go as soon as they are converted
		p1 := make([]uint8, len(out.Conf))
		var p2 []uint8
		if opt.RunnerUp {
			p2 = make([]uint8, len(out.Conf))
		}
		for i, w := range out.Conf {
			a, b := model.UnpackConf(w)
			p1[i] = uint8(math.Round(float64(a) * 255))
			if p2 != nil {
				p2[i] = uint8(math.Round(float64(b) * 255))
			}
		}
		out.Conf = nil
		if res.P1, err = invert(p1); err != nil {
			return nil, err
		}
		if opt.RunnerUp {
			if res.P2, err = invert(p2); err != nil {
				return nil, err
			}
			if res.Second, err = invert(out.Second); err != nil {
				return nil, err
			}
		}
	}
	st.done("invert")
	res.Stages = st.list
	return res, nil
}

// invert takes a map on the network's grid ([D][H][W]) to the preprocessed volume's x-fastest
// order, then back onto the input grid.
func (p *Prepared) invert(dhw []uint8) ([]uint8, error) {
	pd := p.PreDims()
	vol := volume.LabelsFromDHW(dhw, pd)
	if vol == nil {
		return nil, fmt.Errorf("internal error: %d values for the %v grid", len(dhw), pd)
	}
	return p.inv.Invert(vol)
}

func segmentGPU(vol *model.Tensor, plan *model.WindowPlan, net *model.Net, opt Options, res *Result, progress model.GPUWindowProgress, st *stages) (model.WindowOutput, error) {
	ctx := opt.GPU
	gopt := opt.gpuOptions()
	n := vol.Voxels()
	out := model.WindowOutput{Labels: make([]uint8, n)}
	read := model.ReadLabels
	if opt.Confidence {
		out.Conf, out.Second, read = make([]uint32, n), make([]uint8, n), model.ReadConfidence
	}
	p, err := model.PlanGPU(net.Cfg, plan, ctx.Limits, gopt, read)
	if err != nil {
		return out, err
	}
	res.Plan = p
	g := opt.Net
	var base uint64
	if g != nil {
		if g.D != plan.ROI[0] || g.H != plan.ROI[1] || g.W != plan.ROI[2] || g.F16() != opt.F16 {
			return out, fmt.Errorf("internal error: the prepared GPU network does not match the window %v", plan.ROI)
		}
		// the network's buffers were all made before the run: the peak starts from them
		base = ctx.LiveBytes() - g.PlanBytes
		ctx.ResetPeak()
	} else {
		base = ctx.LiveBytes()
		ctx.ResetPeak()
		if g, err = model.NewGPUNet(ctx, net, plan.ROI[0], plan.ROI[1], plan.ROI[2], gopt); err != nil {
			return out, err
		}
		defer g.Release()
		st.done("GPU setup")
	}
	if err := g.SlidingWindow(vol, plan, out, progress); err != nil {
		return out, err
	}
	res.PeakGPU = ctx.PeakBytes() - base
	return out, nil
}

// LabelFileOptions are the options every writer of a label map uses, so `ctseg segment`,
// `ctseg invert` and the browser's download write the same file: the model's class names and
// the shared colours in the embedded label table, and the input header's conventions (sform
// and qform codes) when there is one.
func LabelFileOptions(classes int, ref *volume.Header) volume.LabelOptions {
	return volume.LabelOptions{Names: labels.Names[:min(classes, labels.Count)], Colors: labels.Colors, Write: volume.WriteOptions{Ref: ref}}
}

// CheckClasses refuses a label map that is not of the model's classes: a value past them, or
// a label table (NIfTI extension) that names a present label otherwise (TotalSegmentator v2's
// maps, for one, number other structures on the same grid). name is the file, for messages.
func CheckClasses(name string, lab []uint8, h *volume.Header) error {
	var present [256]bool
	for _, l := range lab {
		present[l] = true
	}
	names := volume.LabelNames(h)
	for l := 1; l < 256; l++ {
		if !present[l] {
			continue
		}
		if l >= labels.Count {
			return fmt.Errorf("%s holds label %d, but the model's classes are 0 to %d: it is a map of other classes", name, l, labels.Count-1)
		}
		if l < len(names) && names[l] != "" && names[l] != labels.Names[l] {
			return fmt.Errorf("%s names its label %d %q, the model's class %d is %q: it is a map of other classes", name, l, names[l], l, labels.Names[l])
		}
	}
	return nil
}

// SegmentationOptions describe the label map as a DICOM Segmentation, for `ctseg segment
// --dicom-seg`, `ctseg dicom-seg` and the browser's download alike: one segment per class with
// its name, SNOMED CT coding and colour, and the model that made it.
func SegmentationOptions(classes int, spacing float64) dicom.SegOptions {
	opt := dicom.SegOptions{
		SeriesDescription: "ctseg whole-body segmentation",
		Algorithm:         "MONAI wholeBody_ct_segmentation SegResNet",
		Software:          SoftwareVersion(),
	}
	if spacing > 0 {
		opt.SeriesDescription = fmt.Sprintf("ctseg whole-body segmentation %g mm", spacing)
	}
	for i := 1; i < min(classes, labels.Count); i++ {
		c := labels.Codings[i]
		sg := dicom.Segment{Value: uint8(i), Label: labels.Names[i], Category: dicom.Code(c.Category), Type: dicom.Code(c.Type), Color: labels.Colors[i]}
		if c.Modifier != nil {
			m := dicom.Code(*c.Modifier)
			sg.Modifier = &m
		}
		opt.Segments = append(opt.Segments, sg)
	}
	return opt
}

// SoftwareVersion names this build for the files it writes: the version Go stamps from the
// module and its commit ("ctseg v0.0.0-20261127111600-f3b10aec040e+dirty"), or "ctseg (devel)".
func SoftwareVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return "ctseg " + info.Main.Version
	}
	return "ctseg (devel)"
}
