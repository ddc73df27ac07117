//go:build !js

package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"ctseg/gpu"
	"ctseg/internal/atomicfile"
	"ctseg/labels"
	"ctseg/model"
	"ctseg/pipeline"
	"ctseg/volume"
	"ctseg/volume/dicom"
	"ctseg/weights"
	"ctseg/weights/cache"
)

func init() {
	register("segment", "segment a CT (NIfTI or DICOM series) into the bundle's 104 structures", runSegment)
	register("preprocess", "apply the bundle's preprocessing and write the network's input", runPreprocess)
	register("invert", "map a label map on the preprocessed grid back onto the input CT's grid", runInvert)
}

func runSegment(env *Env, args []string) error {
	fs := newFlags(env, "segment", "--input CT.nii.gz|DICOM_FOLDER --output LABELS.nii.gz|--dicom-seg SEG.dcm [--weights FILE] [flags]")
	in := fs.String("input", "", inputHelp)
	series := fs.String("series", "", seriesHelp)
	out := fs.String("output", "", "label map to write (.nii or .nii.gz), on the input's grid")
	segOut := fs.String("dicom-seg", "", "also (or instead) write the labels as a DICOM Segmentation of the input series (needs a DICOM folder as --input)")
	wpath := fs.String("weights", "", "MONAI checkpoint or ctseg weight file (default: the cached weights of --spacing, see `ctseg weights`)")
	spacing := fs.Float64("spacing", 1.5, "model spacing in mm: 1.5 (model.pt) or 3 (model_lowres.pt)")
	device := fs.String("device", "auto", deviceHelp)
	precision := fs.String("precision", "f16", "GPU storage: f16 (as the bundle's f16 autocast) or f32")
	stats := fs.String("stats", "", "also write per-structure statistics (.json or .csv), with each structure's mean confidence")
	confOut := fs.String("confidence", "", "also write p1, the probability the network gave each voxel's label, on the input's grid (.nii or .nii.gz, uint8 with scl_slope 1/255)")
	dry := fs.Bool("dry-run", false, "print the grid, windows, FLOPs and planned peak GPU memory, and stop")
	force := fs.Bool("force", false, "overwrite existing outputs")
	verbose := fs.Bool("verbose", false, "print the device and why, the adapter, its limits and the plan")
	roi := fs.Int("roi", 96, "sliding-window size (the bundle's 96; smaller only for tests)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "input"); err != nil {
		return err
	}
	if !*dry && *out == "" && *segOut == "" && *confOut == "" && *stats == "" {
		return fmt.Errorf("nothing to write: give --output LABELS.nii.gz, --dicom-seg SEG.dcm, --confidence P1.nii.gz or --stats FILE")
	}
	if *segOut != "" {
		if st, err := os.Stat(*in); err == nil && !st.IsDir() {
			return fmt.Errorf("--dicom-seg: a DICOM Segmentation refers to the images of a DICOM series; --input %s is a file, not a DICOM folder", *in)
		}
	}
	if *spacing != 1.5 && *spacing != 3 {
		return fmt.Errorf("--spacing %v: the bundle's models use 1.5 or 3", *spacing)
	}
	f16, err := parsePrecision(*precision)
	if err != nil {
		return err
	}
	if *roi <= 0 || *roi%8 != 0 {
		return fmt.Errorf("--roi %d: must be a positive multiple of 8", *roi)
	}
	wopt := model.DefaultWindowOptions()
	wopt.ROI = [3]int{*roi, *roi, *roi}
	useGPU, err := chooseDevice(env, *device, *verbose)
	if err != nil {
		return err
	}
	if *dry {
		read := model.ReadLabels
		if *confOut != "" || *stats != "" {
			read = model.ReadConfidence
		}
		return segmentDryRun(env, *in, *series, *wpath, *spacing, wopt, f16, useGPU, read)
	}
	ao := atomicfile.Options{Force: *force, Inputs: []string{*in, *wpath}}
	var table string
	if *out != "" {
		if err := atomicfile.Check(*out, ao); err != nil {
			return err
		}
		if err := checkNIfTIName("--output", *out); err != nil {
			return err
		}
		table = colorTablePath(*out)
		if err := atomicfile.Check(table, ao); err != nil {
			return err
		}
	}
	if *segOut != "" {
		if err := atomicfile.Check(*segOut, ao); err != nil {
			return err
		}
	}
	if err := distinctOutputs(*out, table, *segOut, *stats, *confOut); err != nil {
		return err
	}
	if *confOut != "" {
		if err := checkNIfTIName("--confidence", *confOut); err != nil {
			return err
		}
		if err := atomicfile.Check(*confOut, ao); err != nil {
			return err
		}
	}
	statsCSV := false
	if *stats != "" {
		switch strings.ToLower(filepath.Ext(*stats)) {
		case ".json":
		case ".csv":
			statsCSV = true
		default:
			return fmt.Errorf("--stats %s: the name must end in .json or .csv", *stats)
		}
		if err := atomicfile.Check(*stats, ao); err != nil {
			return err
		}
	}
	start := time.Now()
	wfile, err := resolveWeights(*wpath, *spacing, *precision)
	if err != nil {
		return err
	}
	net, err := loadNet(wfile)
	if err != nil {
		return err
	}
	if net.Cfg.OutChannels > labels.Count {
		return fmt.Errorf("weights %s have %d classes; the label map has %d", wfile, net.Cfg.OutChannels, labels.Count)
	}
	// the confidence comes from the same pass as the labels: the statistics carry its mean
	opt := pipeline.Options{Spacing: *spacing, F16: f16, Window: wopt, Confidence: *confOut != "" || *stats != ""}
	stages := []pipeline.Stage{{Name: "load weights", Seconds: time.Since(start).Seconds()}}
	// The GPU is set up (device, pipelines compiled, weights uploaded) while the CT is read.
	setup := make(chan error, 1)
	var setupSecs float64
	if useGPU {
		go func() {
			t := time.Now()
			err := buildGPUNet(env, net, &opt, "", *verbose)
			setupSecs = time.Since(t).Seconds()
			setup <- err
		}()
	} else {
		setup <- nil
	}
	t := time.Now()
	ct, ctHeader, ctSeries, readErr := readCT(env, *in, *series, *verbose)
	stages = append(stages, pipeline.Stage{Name: "read CT", Seconds: time.Since(t).Seconds()})
	err = <-setup
	if opt.Net != nil {
		defer opt.Net.Release()
		stages = append(stages, pipeline.Stage{Name: "GPU setup (beside reading)", Seconds: setupSecs})
	}
	if readErr != nil {
		return readErr
	}
	if err != nil {
		return err
	}
	bar := newWindowBar(env)
	opt.Progress = bar.update
	res, err := pipeline.Segment(ct, net, opt)
	bar.finish()
	if err != nil {
		return err
	}
	stages = append(stages, res.Stages...)
	t = time.Now()
	// all outputs or none, and an existing file (--force) stays until all are written
	var outs atomicfile.Set
	defer outs.Abort()
	written, err := writeSegOutputs(env, &outs, segOutputs{labels: *out, table: table, dicomSeg: *segOut, stats: *stats, statsCSV: statsCSV, confidence: *confOut},
		ao, res, ct, ctHeader, ctSeries)
	if err != nil {
		return err
	}
	if err := outs.Commit(); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "segmented %s: %v voxels, %d windows at %v mm, %.1f s", *in, res.Dims, res.Windows, *spacing, time.Since(start).Seconds())
	if opt.GPU != nil {
		fmt.Fprintf(env.Stderr, ", peak GPU memory %.1f MB (planned %.1f MB)", float64(res.PeakGPU)/1e6, float64(res.Plan.PeakBytes)/1e6)
	}
	if rss := peakRSS(); *verbose && rss > 0 {
		fmt.Fprintf(env.Stderr, ", peak host memory %.1f MB", float64(rss)/1e6)
	}
	fmt.Fprintf(env.Stderr, "\nwrote %s\n", strings.Join(written, ", "))
	if *verbose {
		stages = append(stages, pipeline.Stage{Name: "write", Seconds: time.Since(t).Seconds()})
		fmt.Fprintf(env.Stderr, "stages:")
		for _, s := range stages {
			fmt.Fprintf(env.Stderr, " %s %.2f s;", s.Name, s.Seconds)
		}
		fmt.Fprintln(env.Stderr)
	}
	return nil
}

// buildGPUNet opens the GPU (adapter as native.DeviceOptions.Adapter) and builds the network on
// it for opt's window and precision (pipelines compiled, weights uploaded, the tiles `ctseg tune`
// chose), into opt.GPU, opt.ConvTiles and opt.Net. The caller releases opt.Net.
func buildGPUNet(env *Env, net *model.Net, opt *pipeline.Options, adapter string, verbose bool) error {
	ctx, err := openAdapter(env, adapter, verbose)
	if err != nil {
		return err
	}
	opt.GPU = ctx
	opt.ConvTiles = tunedTiles(env, ctx, opt.F16, opt.Window.ROI, verbose)
	opt.Net, err = pipeline.NewGPUNet(net, *opt)
	return err
}

// segOutputs are the files a segmentation is written to; an empty path is not written.
type segOutputs struct {
	labels, table string // the label map (.nii or .nii.gz) and its ITK-SNAP description
	dicomSeg      string
	stats         string
	statsCSV      bool   // stats as CSV, else JSON
	confidence    string // p1 on the input's grid (.nii or .nii.gz)
}

// writeSegOutputs adds a result's outputs to outs (committed by the caller, so that they land
// all or none) and describes each file written. Notes (the series' and the segmentation's) go
// to env. A result with no structure gets no DICOM Segmentation, only a note.
func writeSegOutputs(env *Env, outs *atomicfile.Set, o segOutputs, ao atomicfile.Options, res *pipeline.Result,
	ct *volume.Volume, ctHeader *volume.Header, ctSeries *dicom.Series) ([]string, error) {
	lopt := pipeline.LabelFileOptions(res.Classes, ctHeader)
	names := lopt.Names
	var written []string
	if o.labels != "" {
		gz := strings.HasSuffix(strings.ToLower(o.labels), ".gz")
		if err := outs.Write(o.labels, ao, func(w io.Writer) error {
			return volume.EncodeLabels(w, gz, res.Dims, res.Affine, res.Labels, lopt)
		}); err != nil {
			return nil, err
		}
		if err := outs.Write(o.table, ao, func(w io.Writer) error {
			return volume.EncodeColorTable(w, o.table, names, labels.Colors)
		}); err != nil {
			return nil, err
		}
		written = append(written, o.labels, o.table)
	}
	if o.dicomSeg != "" {
		if ctSeries == nil {
			return nil, fmt.Errorf("--dicom-seg: the input is not a DICOM series") // callers check first; kept for safety
		}
		desc, err := writeSegmentation(env, outs, o.dicomSeg, ao, ctSeries, res.Labels, res.Classes, res.Spacing)
		switch {
		case errors.Is(err, dicom.ErrNoStructures):
			// the other outputs still say what was found (nothing); a segmentation cannot
			env.notes = append(env.notes, fmt.Sprintf("no structure was found, so no DICOM Segmentation was written (%s)", o.dicomSeg))
		case err != nil:
			return nil, err
		default:
			written = append(written, desc)
		}
	}
	if o.confidence != "" {
		if res.P1 == nil {
			return nil, fmt.Errorf("internal error: no confidence was computed")
		}
		gz := strings.HasSuffix(strings.ToLower(o.confidence), ".gz")
		if err := outs.Write(o.confidence, ao, func(w io.Writer) error {
			return volume.EncodeProbability(w, gz, res.Dims, res.Affine, res.P1, lopt.Write)
		}); err != nil {
			return nil, err
		}
		written = append(written, o.confidence)
	}
	if o.stats != "" {
		st := volume.LabelStats(res.Labels, ct, names)
		if res.P1 != nil {
			if err := volume.AddConfidence(st, res.Labels, res.P1); err != nil {
				return nil, err
			}
		}
		if err := outs.Write(o.stats, ao, func(w io.Writer) error {
			if o.statsCSV {
				return volume.WriteStatsCSV(w, st)
			}
			return volume.WriteStatsJSON(w, st)
		}); err != nil {
			return nil, err
		}
		written = append(written, o.stats)
	}
	return written, nil
}

// checkNIfTIName refuses an output name that is not .nii or .nii.gz.
func checkNIfTIName(flag, name string) error {
	if low := strings.ToLower(name); !strings.HasSuffix(low, ".nii") && !strings.HasSuffix(low, ".nii.gz") {
		return fmt.Errorf("%s %s: the name must end in .nii or .nii.gz", flag, name)
	}
	return nil
}

// distinctOutputs refuses two outputs of one command at the same path (one would silently
// replace the other); empty paths are outputs not asked for.
func distinctOutputs(paths ...string) error {
	seen := map[string]string{}
	for _, p := range paths {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		if prev, ok := seen[abs]; ok {
			return fmt.Errorf("%s and %s are the same file: give each output its own name", prev, p)
		}
		seen[abs] = p
	}
	return nil
}

// writeSegmentation adds the DICOM Segmentation of lab (on the series' grid) to outs, queues
// what the series lacked for it as notes, and describes the file.
func writeSegmentation(env *Env, outs *atomicfile.Set, path string, ao atomicfile.Options, s *dicom.Series, lab []uint8, classes int, spacing float64) (string, error) {
	var sum dicom.SegSummary
	err := outs.Write(path, ao, func(w io.Writer) error {
		var err error
		sum, err = s.WriteSegmentation(w, lab, pipeline.SegmentationOptions(classes, spacing))
		return err
	})
	if err != nil {
		return "", err
	}
	env.notes = append(env.notes, sum.Notes...)
	return fmt.Sprintf("%s (DICOM Segmentation: %d structures, %d frames, %.1f MB)", path, sum.Segments, sum.Frames, float64(sum.Bytes)/1e6), nil
}

// colorTablePath is the ITK-SNAP label description written beside a label map.
func colorTablePath(out string) string {
	base := strings.TrimSuffix(strings.TrimSuffix(out, ".gz"), ".nii")
	return base + ".labels.txt"
}

// resolveWeights returns --weights, or the cached weights of the spacing's variant.
func resolveWeights(path string, spacing float64, precision string) (string, error) {
	if path != "" {
		return path, nil
	}
	variant := "1.5mm"
	if spacing == 3 {
		variant = "3mm"
	}
	e, err := cache.Find("", variant)
	if err != nil {
		return "", fmt.Errorf("no --weights given and %w", err)
	}
	return e.Path(precision)
}

// segmentDryRun prints the plan from the same planner the run uses, reading only the header.
func segmentDryRun(env *Env, in, series, wpath string, spacing float64, wopt model.WindowOptions, f16, useGPU bool, read model.Readback) error {
	h, err := readGrid(env, in, series, false)
	if err != nil {
		return err
	}
	inv, err := volume.InversionFor(h, spacing)
	if err != nil {
		return err
	}
	cfg := weights.BundleConfig()
	if wpath != "" {
		sd, err := weights.Load(wpath)
		if err != nil {
			return err
		}
		if cfg, err = weights.InferConfig(sd); err != nil {
			return err
		}
	}
	pd := inv.PreprocessedDims()
	plan, err := model.PlanWindows(pd[0], pd[1], pd[2], wopt)
	if err != nil {
		return err
	}
	limits, adapter := gpu.DefaultLimits(), "WebGPU default limits"
	if useGPU {
		if ctx, err := openGPU(env, false); err == nil {
			limits, adapter = ctx.Limits, ctx.Adapter
		}
	}
	p, err := model.PlanGPU(cfg, plan, limits, model.GPUOptions{F16: f16}, read)
	if err != nil {
		return err
	}
	prec := "f32"
	if f16 {
		prec = "f16"
	}
	w := env.Stdout
	fmt.Fprintf(w, "input:            %s, %v voxels\n", in, h.Dims)
	fmt.Fprintf(w, "model:            %s, %v mm, %s storage\n", cfg, spacing, prec)
	fmt.Fprintf(w, "preprocessed grid: %v at %v mm\n", pd, spacing)
	fmt.Fprintf(w, "windows:          %d of %v (starts %v x %v x %v)\n", p.Windows, p.ROI, plan.Starts[0], plan.Starts[1], plan.Starts[2])
	fmt.Fprintf(w, "compute:          %.1f TFLOP (%.1f GFLOP per window)\n", p.TotalFLOPs/1e12, p.WindowFLOPs/1e9)
	fmt.Fprintf(w, "planned GPU peak: %.1f MB = network %.1f + accumulator and head %.1f + transient %.1f (ring of %d slices along axis %d)\n",
		mb(p.PeakBytes), mb(p.NetworkBytes), mb(p.WindowBytes), mb(p.TransientBytes), p.RingSlices, p.RingAxis)
	fmt.Fprintf(w, "largest binding:  %.1f MB (limits of %s)\n", mb(p.MaxBinding), adapter)
	return nil
}

func mb(b uint64) float64 { return float64(b) / 1e6 }

// windowBar is the progress bar of a run: windows done / total, elapsed and ETA on a
// terminal; silent when stderr is not one (logs, CI, pipes).
type windowBar struct {
	out io.Writer
	on  bool
	bar *progressbar.ProgressBar
}

func newWindowBar(env *Env) *windowBar {
	f, ok := env.Stderr.(*os.File)
	return &windowBar{out: env.Stderr, on: ok && term.IsTerminal(int(f.Fd()))}
}

func (b *windowBar) update(done, total int) {
	if !b.on {
		return
	}
	if b.bar == nil {
		b.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(b.out), progressbar.OptionSetDescription("windows"),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionClearOnFinish())
	}
	_ = b.bar.Set(done)
}

func (b *windowBar) finish() {
	if b.bar != nil {
		_ = b.bar.Finish()
	}
}

func runPreprocess(env *Env, args []string) error {
	fs := newFlags(env, "preprocess", "--input CT --spacing 1.5|3 --output OUT.nii.gz")
	in := fs.String("input", "", inputHelp)
	series := fs.String("series", "", seriesHelp)
	out := fs.String("output", "", "float32 NIfTI to write")
	spacing := fs.Float64("spacing", 1.5, "target spacing in mm: 1.5 or 3")
	force := fs.Bool("force", false, "overwrite an existing output")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "input", "output"); err != nil {
		return err
	}
	if *spacing != 1.5 && *spacing != 3 {
		return fmt.Errorf("--spacing %v: the bundle's models use 1.5 or 3", *spacing)
	}
	if err := atomicfile.Check(*out, atomicfile.Options{Force: *force, Inputs: []string{*in}}); err != nil {
		return err
	}
	ct, h, _, err := readCT(env, *in, *series, false)
	if err != nil {
		return err
	}
	pre, _, err := volume.Preprocess(ct, *spacing)
	if err != nil {
		return err
	}
	return volume.WriteNIfTI(*out, pre, volume.WriteOptions{Ref: h, Description: fmt.Sprintf("ctseg preprocess %v mm", *spacing)})
}

func runInvert(env *Env, args []string) error {
	fs := newFlags(env, "invert", "--labels LABELS.nii.gz --reference CT --output OUT.nii.gz [--spacing 1.5|3]")
	lp := fs.String("labels", "", "label map on the preprocessed grid")
	ref := fs.String("reference", "", "the CT the labels were computed from (NIfTI file or DICOM folder)")
	series := fs.String("series", "", seriesHelp)
	out := fs.String("output", "", "label map to write on the reference's grid")
	spacing := fs.Float64("spacing", 0, "the preprocessing spacing (default: read from the labels' voxel size)")
	force := fs.Bool("force", false, "overwrite an existing output")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "labels", "reference", "output"); err != nil {
		return err
	}
	if err := atomicfile.Check(*out, atomicfile.Options{Force: *force, Inputs: []string{*lp, *ref}}); err != nil {
		return err
	}
	lab, lh, err := volume.ReadLabels(*lp)
	if err != nil {
		return err
	}
	rh, err := readGrid(env, *ref, *series, false)
	if err != nil {
		return err
	}
	sp := *spacing
	if sp == 0 {
		v := &volume.Volume{Affine: lh.Affine}
		s := v.Spacing()
		switch {
		case near(s, 1.5):
			sp = 1.5
		case near(s, 3):
			sp = 3
		default:
			return fmt.Errorf("the labels' voxel size %.4g x %.4g x %.4g mm is neither 1.5 nor 3 mm: give --spacing", s[0], s[1], s[2])
		}
	} else if sp != 1.5 && sp != 3 {
		return fmt.Errorf("--spacing %v: want 1.5 or 3", sp)
	}
	inv, err := volume.InversionFor(rh, sp)
	if err != nil {
		return err
	}
	if pd := inv.PreprocessedDims(); pd != lh.Dims {
		return fmt.Errorf("the labels are %v voxels, but %s preprocessed at %v mm is %v", lh.Dims, *ref, sp, pd)
	}
	orig, err := inv.Invert(lab)
	if err != nil {
		return err
	}
	lopt := pipeline.LabelFileOptions(labels.Count, rh)
	if names := volume.LabelNames(lh); len(names) > 0 { // keep the input's own table
		lopt.Names = names
	}
	return volume.WriteLabelsWith(*out, inv.OrigDims(), inv.OrigAffine(), orig, lopt)
}

func near(s [3]float64, p float64) bool {
	for _, v := range s {
		if v < p*0.999 || v > p*1.001 {
			return false
		}
	}
	return true
}
