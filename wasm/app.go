//go:build js

package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall/js"
	"time"

	"ctseg/gpu"
	"ctseg/labels"
	"ctseg/model"
	"ctseg/pipeline"
	"ctseg/shaders"
	"ctseg/volume"
	"ctseg/volume/dicom"
	"ctseg/weights"
)

// maxBrowserVoxels bounds the CT a page accepts: wasm32 has 4 GiB of memory and the CT is held
// as float32 (Go) and int16 (the viewer), next to the labels.
const maxBrowserVoxels = 320 << 20

// state is what the worker keeps between calls: a run can be retried (another device, another
// model) without loading the CT or the weights again.
var state struct {
	mu      sync.Mutex
	ct      *volume.Volume
	header  *volume.Header // the CT's, for the label file's header conventions
	series  *dicom.Series  // the CT's DICOM series (detached from its files), nil for NIfTI
	net     *model.Net
	result  *pipeline.Result
	stats   []volume.StructureStats
	running bool
	// prep is the CT preprocessed for the last run's spacing and window: the Teach view's
	// probes and experiments start from it (nil until a run, and for a CT loaded since)
	prep *pipeline.Prepared
}

// userError is an error the page shows as is; Kind lets it choose what to offer (retry,
// another model, another file).
type userError struct {
	Kind string // NotNIfTI, NotDICOM, NotCT, NotLabels, TooLarge, NotWeights, GPUTooSmall, GPUError, Cancelled, Busy, SoftwareGPU
	Msg  string
}

func (e *userError) Error() string { return e.Msg }

func busy() error {
	return &userError{"Busy", "the GPU is busy with another run (a segmentation, a tuning or one of the Teach view's): wait for it or cancel it first"}
}

// claim marks the worker busy with one GPU run (segment or tune); done frees it.
func claim() (done func(), err error) {
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.running {
		return nil, busy()
	}
	state.running = true
	return func() {
		state.mu.Lock()
		state.running = false
		state.mu.Unlock()
	}, nil
}

// claimLoaded claims the worker for a run of the network on the loaded CT and weights.
func claimLoaded() (done func(), ct *volume.Volume, net *model.Net, err error) {
	if done, err = claim(); err != nil {
		return nil, nil, nil, err
	}
	state.mu.Lock()
	ct, net = state.ct, state.net
	state.mu.Unlock()
	if ct == nil || net == nil {
		done()
		return nil, nil, nil, errors.New("load a CT and the weights first")
	}
	return done, ct, net, nil
}

// loadCT(bytes: Uint8Array, name: string)
func loadCT(args []js.Value) (any, error) {
	data, err := bytesArg(args[0], "CT")
	if err != nil {
		return nil, err
	}
	name := args[1].String()
	if dicom.IsDICOM(data) {
		return nil, &userError{"NotNIfTI", fmt.Sprintf("%s is a single DICOM image: choose the folder that holds the whole series", name)}
	}
	v, h, err := volume.ParseNIfTIWith(data, volume.ReadOptions{MaxVoxels: maxBrowserVoxels})
	data = nil
	if err != nil {
		if strings.Contains(err.Error(), "exceeds the limit") {
			return nil, &userError{"TooLarge", fmt.Sprintf("%s is too large for the browser (%v). The ctseg command handles it: ctseg segment --input %s.", name, err, name)}
		}
		return nil, &userError{"NotNIfTI", fmt.Sprintf("%s is not a NIfTI image (.nii or .nii.gz) that ctseg can read: %v", name, err)}
	}
	return ctLoaded(v, h, nil, name, nil)
}

// loadSeries(files: Uint8Array[], names: string[], name: string, series?: string,
// progress?: (done, total) => void) reads a DICOM series. Each file is copied into Go only while it is parsed or decoded, so Go never
// holds the series' files and its volume at once. Where the files hold several CT series and
// none is named, it returns {series: [{uid, description, images}]} for the page to offer.
func loadSeries(args []js.Value) (any, error) {
	files, names, name := args[0], args[1], args[2].String()
	uid := ""
	if len(args) > 3 && args[3].Type() == js.TypeString {
		uid = args[3].String()
	}
	var progress func(done, total int)
	if len(args) > 4 && args[4].Type() == js.TypeFunction {
		progress = func(done, total int) { args[4].Invoke(done, total) }
	}
	// The JS references to the files are dropped by Go's collector: run it when done, so the
	// worker does not hold the series' bytes into the segmentation.
	defer runtime.GC()
	srcs := make([]dicom.Source, files.Length())
	for i := range srcs {
		f := files.Index(i)
		srcs[i] = dicom.Source{Name: names.Index(i).String(), Open: func() ([]byte, error) {
			n := f.Get("length").Int()
			if n > dicom.MaxFileBytes {
				return nil, dicom.ErrFileTooLarge
			}
			// Only a DICOM file is copied whole (a folder may hold a video beside the series).
			head := make([]byte, min(n, 132))
			js.CopyBytesToGo(head, f.Call("subarray", 0, len(head)))
			if !dicom.IsDICOM(head) {
				return nil, dicom.ErrNotDICOM
			}
			b := make([]byte, n)
			js.CopyBytesToGo(b, f)
			return b, nil
		}}
	}
	s, err := dicom.Open(srcs, dicom.Options{MaxVoxels: maxBrowserVoxels, Series: uid, Progress: progress})
	var several *dicom.SeveralSeriesError
	if errors.As(err, &several) {
		list := make([]any, len(several.Series))
		for i, si := range several.Series {
			list[i] = map[string]any{"uid": si.UID, "description": si.Description, "images": si.Images}
		}
		return map[string]any{"series": list}, nil
	}
	if err == nil {
		var v *volume.Volume
		if v, err = s.Volume(); err == nil {
			s.Detach() // keep the headers for a DICOM Segmentation, not the files
			return ctLoaded(v, s.Header(), s, name, s.Notes)
		}
	}
	switch {
	case errors.Is(err, dicom.ErrTooLarge):
		return nil, &userError{"TooLarge", fmt.Sprintf("%s is too large for the browser (%v). The ctseg command handles it: ctseg segment --input FOLDER.", name, err)}
	}
	return nil, &userError{"NotDICOM", fmt.Sprintf("%s is not a DICOM CT series that ctseg can read: %v", name, err)}
}

// ctLoaded keeps a CT read by loadCT or loadSeries and returns what the page shows of it.
func ctLoaded(v *volume.Volume, h *volume.Header, s *dicom.Series, name string, notes []string) (any, error) {
	hu, lo, hi, bad := int16Array(v.Data)
	if bad >= 0 {
		return nil, &userError{"NotCT", fmt.Sprintf("%s holds NaN or infinite values (the first at voxel %d); a CT holds finite Hounsfield units", name, bad)}
	}
	notCT := notCTReason(v, lo, hi)
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.running {
		return nil, busy()
	}
	state.ct, state.header, state.series, state.result, state.stats, state.prep = v, h, s, nil, nil, nil
	sp := v.Spacing()
	aff := make([]any, 0, 16)
	for _, row := range v.Affine {
		for _, a := range row {
			aff = append(aff, a)
		}
	}
	return map[string]any{
		"name":        name,
		"dims":        []any{v.Dims[0], v.Dims[1], v.Dims[2]},
		"spacing":     []any{sp[0], sp[1], sp[2]},
		"affine":      aff,
		"min":         float64(lo),
		"max":         float64(hi),
		"notCT":       notCT,
		"description": h.Description,
		"notes":       strings.Join(notes, "; "),
		"dicom":       s != nil,
		"hu":          hu,
	}, nil
}

// int16Array converts the CT to the viewer's Int16Array (rounded HU, clamped), in chunks so
// that Go never holds a second full-size copy, and returns the value range and the index of
// the first non-finite value (-1: none).
func int16Array(data []float32) (out js.Value, lo, hi float32, bad int) {
	out = js.Global().Get("Int16Array").New(len(data))
	bytes := js.Global().Get("Uint8Array").New(out.Get("buffer"))
	lo, hi, bad = float32(math.Inf(1)), float32(math.Inf(-1)), -1
	const chunk = 1 << 20
	buf := make([]byte, 2*chunk)
	for off := 0; off < len(data); off += chunk {
		part := data[off:min(off+chunk, len(data))]
		for i, x := range part {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				if bad < 0 {
					bad = off + i
				}
				x = 0
			}
			lo, hi = min(lo, x), max(hi, x)
			r := math.Round(float64(x))
			binary.LittleEndian.PutUint16(buf[2*i:], uint16(int16(max(-32768, min(32767, r)))))
		}
		js.CopyBytesToJS(bytes.Call("subarray", 2*off, 2*(off+len(part))), buf[:2*len(part)])
	}
	return out, lo, hi, bad
}

// notCTReason says why v does not look like a CT in Hounsfield units, or "". A body CT holds
// air (about -1000 HU) and tissue or bone above 0; label maps, MR images and probability maps
// do not.
func notCTReason(v *volume.Volume, lo, hi float32) string {
	d := v.Dims
	if d[0] < 8 || d[1] < 8 || d[2] < 8 {
		return fmt.Sprintf("it is %dx%dx%d voxels, not a 3-D CT volume", d[0], d[1], d[2])
	}
	if lo > -200 || hi-lo < 300 {
		return fmt.Sprintf("its values run from %.0f to %.0f, but a CT in Hounsfield units has air near -1000 (a label map, an MR image, or a CT stored without its rescale?)", lo, hi)
	}
	return ""
}

// loadWeights(bytes: Uint8Array, name: string)
func loadWeights(args []js.Value) (any, error) {
	data, err := bytesArg(args[0], "weights")
	if err != nil {
		return nil, err
	}
	name := args[1].String()
	sd, err := weights.Parse(data)
	data = nil
	if err != nil {
		return nil, &userError{"NotWeights", fmt.Sprintf("%s is not a MONAI checkpoint (model.pt, model_lowres.pt) or a ctseg weight file: %v", name, err)}
	}
	net, err := model.NewNet(sd)
	if err != nil {
		return nil, &userError{"NotWeights", fmt.Sprintf("%s does not hold the weights of this model (the wholeBody_ct_segmentation SegResNet): %v", name, err)}
	}
	if k := net.Cfg.OutChannels; k > labels.Count {
		return nil, &userError{"NotWeights", fmt.Sprintf("%s has %d classes; this model's label map has %d: these are not the wholeBody_ct_segmentation weights", name, k, labels.Count)}
	}
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.running {
		return nil, busy()
	}
	state.net = net
	cfg := net.Cfg
	return map[string]any{
		"name":    name,
		"config":  cfg.String(),
		"filters": cfg.InitFilters,
		"classes": cfg.OutChannels,
		"params":  cfg.ParamCount(),
		"bundle":  cfg.InitFilters == 32 && cfg.OutChannels == labels.Count,
		"spacing": guessSpacing(name, sd.Meta),
	}, nil
}

// guessSpacing tells the model's voxel size from the file: the project file records it in
// its metadata; the bundle's checkpoints are model.pt (1.5 mm) and model_lowres.pt (3 mm),
// also published as model_lowres_wholebody_ct_segmentation.pt. 0: unknown.
func guessSpacing(name string, meta map[string]string) float64 {
	for _, key := range []string{"spacing", "spacing_mm"} { // the weight cache writes spacing_mm
		if s, ok := meta[key]; ok {
			if v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "mm"), 64); err == nil && (v == 1.5 || v == 3) {
				return v
			}
		}
	}
	n := strings.ToLower(path.Base(name))
	switch {
	case strings.Contains(n, "lowres") || strings.Contains(n, "3mm") || strings.Contains(n, "3.0mm"):
		return 3
	case strings.Contains(n, "wholebody") || n == "model.pt" || strings.Contains(n, "1.5mm"):
		return 1.5
	}
	return 0
}

// testROI reads the test-only smaller window (?roi=N), which the browser end-to-end test
// compares with `ctseg segment --roi N`; without it, the bundle's window.
func testROI(o js.Value) (roi [3]int, set bool, err error) {
	r := o.Get("roi")
	if !r.Truthy() || r.Int() <= 0 {
		return model.DefaultWindowOptions().ROI, false, nil
	}
	if n := r.Int(); n%8 != 0 {
		return roi, false, fmt.Errorf("window %d: must be a multiple of 8", n)
	}
	return [3]int{r.Int(), r.Int(), r.Int()}, true, nil
}

// runOptions are the pipeline options of a run on the page's device (segment and the Teach
// view's runs): {spacing, precision, roi, tiles, limits, adapter, software, takeError}.
func runOptions(jsDev, o js.Value) (pipeline.Options, func() error, error) {
	opt, err := parseRunOptions(o)
	if err != nil {
		return opt, nil, err
	}
	ctx, takeErr := newContext(jsDev, o)
	opt.GPU = ctx
	return opt, takeErr, nil
}

// parseRunOptions reads runOptions' settings, without the device.
func parseRunOptions(o js.Value) (pipeline.Options, error) {
	spacing := o.Get("spacing").Float()
	if spacing != 1.5 && spacing != 3 {
		return pipeline.Options{}, fmt.Errorf("spacing %v mm: the bundle's models use 1.5 or 3", spacing)
	}
	// f16 activation storage by default, as `ctseg segment` (the bundle runs under f16
	// autocast); it also halves the GPU memory a run needs.
	opt := pipeline.Options{Spacing: spacing, F16: o.Get("precision").String() != "f32"}
	if roi, set, err := testROI(o); err != nil {
		return opt, err
	} else if set {
		opt.Window = model.DefaultWindowOptions()
		opt.Window.ROI = roi
	}
	// tiles tuned on this adapter earlier (worker.js keeps them); they change speed only
	if t := o.Get("tiles"); t.Type() == js.TypeString && t.String() != "" {
		if tt, err := model.ParseConvTiles(t.String()); err == nil {
			opt.ConvTiles = tt
		}
	}
	return opt, nil
}

// prepared is the loaded CT preprocessed for opt: the one kept from the last run when it fits.
func prepared(ct *volume.Volume, opt pipeline.Options) (*pipeline.Prepared, error) {
	state.mu.Lock()
	p := state.prep
	same := state.ct == ct
	state.mu.Unlock()
	if p != nil && same && p.Fits(opt) {
		return p, nil
	}
	p, err := pipeline.Prepare(ct, opt)
	if err != nil {
		return nil, err
	}
	state.mu.Lock()
	if state.ct == ct {
		state.prep = p
	}
	state.mu.Unlock()
	return p, nil
}

// segment(device: GPUDevice, options: {limits, adapter, takeError, spacing, roi, precision,
// confidence, progress(done, total), phase(text), cancelled() bool}). With confidence (and a CT
// that leaves wasm the memory for it) the result also has p1, p2 and second (Result.P1, P2,
// Second) and each structure's mean p1.
func segment(args []js.Value) (any, error) {
	jsDev, o := args[0], args[1]
	done, ct, net, err := claimLoaded()
	if err != nil {
		return nil, err
	}
	defer done()
	opt, takeErr, err := runOptions(jsDev, o)
	if err != nil {
		return nil, err
	}
	ctx, spacing := opt.GPU, opt.Spacing
	opt.Confidence = o.Get("confidence").Truthy() && len(ct.Data) <= pipeline.MaxPageConfidenceVoxels
	opt.RunnerUp = opt.Confidence
	opt.KeepPreLabels = true // the Teach view's experiment starts from them (a byte a voxel)
	tiles := ""
	if opt.ConvTiles != nil {
		tiles = o.Get("tiles").String()
	}
	phase := o.Get("phase")
	progress := o.Get("progress")
	opt.Progress = func(done, total int) {
		if progress.Type() == js.TypeFunction {
			progress.Invoke(done, total)
		}
	}
	if c := o.Get("cancelled"); c.Type() == js.TypeFunction {
		opt.Cancelled = func() bool { return c.Invoke().Truthy() }
	}
	if phase.Type() == js.TypeFunction {
		phase.Invoke(fmt.Sprintf("Resampling to %g mm and running the network on %s", spacing, ctx.Adapter))
	}
	start := time.Now()
	res, err := runSegment(ct, net, opt)
	if err != nil {
		return nil, gpuError(err, takeErr(), spacing)
	}
	st := volume.LabelStats(res.Labels, ct, labels.Names[:res.Classes])
	if res.P1 != nil {
		if err := volume.AddConfidence(st, res.Labels, res.P1); err != nil {
			return nil, err
		}
	}
	state.mu.Lock()
	state.result, state.stats = res, st
	state.mu.Unlock()
	out := map[string]any{
		"labels":  uint8Array(res.Labels),
		"stats":   statsList(st),
		"windows": res.Windows,
		"seconds": time.Since(start).Seconds(),
		"adapter": ctx.Adapter,
		"peakMB":  float64(res.PeakGPU) / (1 << 20),
		"tiles":   tiles,
	}
	if res.P1 != nil {
		out["p1"], out["p2"], out["second"] = uint8Array(res.P1), uint8Array(res.P2), uint8Array(res.Second)
		// the page holds them now; Go keeps only what the statistics and experiments need
		res.P2, res.Second = nil, nil
	}
	return out, nil
}

// statsList is what the page's legend shows of the structures found.
func statsList(st []volume.StructureStats) []any {
	list := make([]any, 0, len(st))
	for _, s := range st {
		if s.Voxels > 0 {
			m := map[string]any{"label": s.Label, "name": s.Name, "voxels": s.Voxels, "ml": s.VolumeML, "meanHU": s.MeanHU}
			if s.MeanConfidence != nil {
				m["meanP1"] = *s.MeanConfidence
			}
			list = append(list, m)
		}
	}
	return list
}

// loadLabels(bytes: Uint8Array, name: string, spacing?: number, p1?: Uint8Array) takes a label
// map made earlier for the loaded CT (by `ctseg segment`, downloaded from this page, or a native
// run of `ctseg app`, which gives its model spacing and its p1): it is shown, measured and
// downloadable as a run's result would be, without running the network again. With p1 (the
// native run's p1.u8: one byte a voxel, in the label map's voxel order) and a CT within the
// bound a browser run keeps the confidence for, the statistics carry each structure's mean p1
// and the result has p1, as segment's has.
func loadLabels(args []js.Value) (any, error) {
	done, err := claim()
	if err != nil {
		return nil, err
	}
	defer done()
	name := args[1].String()
	state.mu.Lock()
	ct := state.ct
	state.mu.Unlock()
	if ct == nil {
		return nil, &userError{"NotLabels", "Load the CT first, then its label map."}
	}
	b := make([]byte, args[0].Length())
	js.CopyBytesToGo(b, args[0])
	// a map larger than the CT is refused before its voxels are allocated
	lab, lh, err := volume.ParseLabelsWith(b, volume.ReadOptions{MaxVoxels: int64(len(ct.Data))})
	if err != nil {
		return nil, &userError{"NotLabels", fmt.Sprintf("%s is not a label map of this CT: %v", name, err)}
	}
	if err := volume.OnGrid(lh, ct.Dims, ct.Affine); err != nil {
		return nil, &userError{"NotLabels", fmt.Sprintf("%s is not a label map of this CT: %v", name, err)}
	}
	if err := pipeline.CheckClasses(name, lab, lh); err != nil {
		return nil, &userError{"NotLabels", err.Error()}
	}
	st := volume.LabelStats(lab, ct, labels.Names)
	spacing := 0.0 // unknown for a map made elsewhere; a native run of ctseg app says
	if len(args) > 2 && args[2].Type() == js.TypeNumber {
		spacing = args[2].Float()
	}
	var p1 []byte
	if len(args) > 3 && args[3].Truthy() && len(ct.Data) <= pipeline.MaxPageConfidenceVoxels {
		if p1, err = bytesArg(args[3], "p1"); err != nil {
			return nil, err
		}
		if err := volume.AddConfidence(st, lab, p1); err != nil {
			return nil, &userError{"NotLabels", fmt.Sprintf("the confidence of %s: %v", name, err)}
		}
	}
	state.mu.Lock()
	state.result = &pipeline.Result{Labels: lab, Dims: ct.Dims, Affine: ct.Affine, Classes: labels.Count, Spacing: spacing}
	state.stats = st
	state.mu.Unlock()
	out := map[string]any{"labels": uint8Array(lab), "stats": statsList(st)}
	if p1 != nil {
		out["p1"] = uint8Array(p1)
	}
	return out, nil
}

// tune(device, {limits, adapter, software, takeError, precision, roi, tiles, repeat, phase})
// times the convolution tiles on this GPU with the loaded weights (whole windows: browsers
// have no timestamps between dispatches) and returns {tiles, defaultSeconds, tunedSeconds,
// method}; tiles is "" when the defaults were the fastest. worker.js keeps the result.
func tune(args []js.Value) (any, error) {
	jsDev, o := args[0], args[1]
	done, err := claim()
	if err != nil {
		return nil, err
	}
	defer done()
	state.mu.Lock()
	net := state.net
	state.mu.Unlock()
	if net == nil {
		return nil, errors.New("choose the weights first")
	}
	roi, set, err := testROI(o)
	if err != nil {
		return nil, err
	}
	if !set && o.Get("software").Truthy() {
		return nil, &userError{"SoftwareGPU", "This is a software adapter (no GPU): tuning would take hours and gain little here."}
	}
	list := model.TuneCandidatesQuick
	if t := o.Get("tiles"); t.Type() == js.TypeString && t.String() != "" {
		list = t.String() // test-only: fewer candidates
	}
	cands, err := shaders.ParseConvTileList(list)
	if err != nil {
		return nil, err
	}
	repeat := 2
	if r := o.Get("repeat"); r.Type() == js.TypeNumber && r.Int() > 0 {
		repeat = r.Int()
	}
	ctx, takeErr := newContext(jsDev, o)
	phase := o.Get("phase")
	log := lineWriter(func(line string) {
		if phase.Type() == js.TypeFunction {
			phase.Invoke("Tuning: " + strings.Join(strings.Fields(line), " "))
		}
	})
	res, err := runTune(ctx, net, roi, o.Get("precision").String() != "f32", cands, repeat, log)
	if err != nil {
		return nil, gpuError(err, takeErr(), 0)
	}
	return map[string]any{
		"tiles":          res.Tiles,
		"defaultSeconds": res.DefaultSeconds,
		"tunedSeconds":   res.TunedSeconds,
		"method":         res.Method,
		"adapter":        ctx.Adapter,
	}, nil
}

// runTune is model.Tune with panics (a JS exception from a lost device) as errors.
func runTune(ctx *gpu.Context, net *model.Net, roi [3]int, f16 bool, cands []shaders.ConvTile, repeat int, log io.Writer) (res *model.TuneResult, err error) {
	defer recovered(&err)
	return model.Tune(ctx, net, roi, f16, cands, repeat, log)
}

// recovered turns a panic into *err, and puts the Go stack on the console: the page shows the
// message, the console says where it came from (for a bug report).
func recovered(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("the GPU stopped responding (%v)", r)
		js.Global().Get("console").Call("error", fmt.Sprintf("ctseg: %v\n%s", r, debug.Stack()))
	}
}

// lineWriter calls f with every complete line written to it.
type lineWriter func(string)

func (f lineWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if l != "" {
			f(l)
		}
	}
	return len(p), nil
}

// runSegment is pipeline.Segment with panics (a JS exception from a lost device) as errors;
// the preprocessed CT is kept for the Teach view.
func runSegment(ct *volume.Volume, net *model.Net, opt pipeline.Options) (res *pipeline.Result, err error) {
	defer recovered(&err)
	p, err := prepared(ct, opt)
	if err != nil {
		return nil, err
	}
	return p.Run(net, opt)
}

// gpuError turns a failed run into what the user should read: the device's own error first
// (it is the cause; what Go saw is usually a consequence), and a way out when the adapter is
// too small.
func gpuError(err, devErr error, spacing float64) error {
	if errors.Is(err, pipeline.ErrCancelled) {
		return &userError{"Cancelled", "cancelled"}
	}
	var ue *userError
	if errors.As(err, &ue) {
		return ue
	}
	msg := err.Error()
	if devErr != nil {
		msg = devErr.Error()
	}
	low := strings.ToLower(msg + " " + err.Error())
	if strings.Contains(low, "maxbuffersize") || strings.Contains(low, "maxstoragebufferbindingsize") ||
		strings.Contains(low, "out of memory") || strings.Contains(low, "outofmemory") || strings.Contains(low, "binding limit") {
		hint := "Try the 3 mm model (model_lowres.pt): it needs far less GPU memory."
		if spacing == 3 {
			hint = "Close other tabs and applications that use the GPU, or run the ctseg command on a machine with a larger GPU."
		}
		return &userError{"GPUTooSmall", fmt.Sprintf("This GPU adapter is too small for this run (%s). %s", msg, hint)}
	}
	return &userError{"GPUError", fmt.Sprintf("The GPU run failed: %s", msg)}
}

// labelsNifti() encodes the last result as .nii.gz on the input's grid, as `ctseg segment`
// writes it.
func labelsNifti(args []js.Value) (any, error) {
	state.mu.Lock()
	res, header := state.result, state.header
	state.mu.Unlock()
	if res == nil {
		return nil, errors.New("no segmentation yet")
	}
	b, err := encodeLabels(res, header)
	if err != nil {
		return nil, err
	}
	return uint8Array(b), nil
}

// dicomSeg() encodes the last result as a DICOM Segmentation of the CT's series, as
// `ctseg segment --dicom-seg` writes it, and says what the series lacked for it.
func dicomSeg(args []js.Value) (any, error) {
	state.mu.Lock()
	res, s := state.result, state.series
	state.mu.Unlock()
	if res == nil {
		return nil, errors.New("no segmentation yet")
	}
	if s == nil {
		return nil, errors.New("a DICOM Segmentation refers to the images of a DICOM series; this CT was not one")
	}
	// A whole-body segmentation is hundreds of MB: it goes to JS in pieces as it is written, so
	// Go holds one piece at a time and the page makes its Blob of the pieces without a copy.
	w := &jsChunks{parts: js.Global().Get("Array").New()}
	sum, err := s.WriteSegmentation(w, res.Labels, pipeline.SegmentationOptions(res.Classes, res.Spacing))
	if err != nil {
		return nil, err
	}
	w.flush()
	return map[string]any{"parts": w.parts, "notes": strings.Join(sum.Notes, "; "), "segments": sum.Segments, "frames": sum.Frames}, nil
}

// jsChunks collects what is written into JS Uint8Arrays of up to 8 MiB.
type jsChunks struct {
	parts js.Value
	buf   []byte
}

func (c *jsChunks) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if c.buf == nil {
			c.buf = make([]byte, 0, 8<<20)
		}
		k := min(len(p), cap(c.buf)-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == cap(c.buf) {
			c.flush()
		}
	}
	return n, nil
}

func (c *jsChunks) flush() {
	if len(c.buf) > 0 {
		c.parts.Call("push", uint8Array(c.buf))
		c.buf = c.buf[:0]
	}
}

// ctNifti() encodes the loaded CT as a NIfTI-2 file (.nii, in pieces like dicomSeg's), for a
// run on this computer's native GPU through `ctseg app`: the voxels as read (int16 where every
// value is a whole number int16 holds, else float32), the affine in float64 so the native
// side sees exactly the grid the page shows, and the header conventions of the input.
func ctNifti(args []js.Value) (any, error) {
	state.mu.Lock()
	ct, header := state.ct, state.header
	state.mu.Unlock()
	if ct == nil {
		return nil, errors.New("load a CT first")
	}
	w := &jsChunks{parts: js.Global().Get("Array").New()}
	if err := volume.EncodeNIfTI(w, false, ct, volume.WriteOptions{NIfTI2: true, Ref: header, Int16IfExact: true}); err != nil {
		return nil, err
	}
	w.flush()
	return w.parts, nil
}

// statsCSV() is the statistics of the last result, as `ctseg segment --statistics` writes
// them.
func statsCSV(args []js.Value) (any, error) {
	state.mu.Lock()
	st := state.stats
	state.mu.Unlock()
	if st == nil {
		return nil, errors.New("no segmentation yet")
	}
	var b bytes.Buffer
	if err := volume.WriteStatsCSV(&b, st); err != nil {
		return nil, err
	}
	return b.String(), nil
}

// labelTable is the class names and display colours shared with the native tools.
func labelTable() any {
	names := make([]any, len(labels.Names))
	colors := make([]any, len(labels.Colors))
	for i, n := range labels.Names {
		names[i] = n
		c := labels.Colors[i]
		colors[i] = []any{int(c[0]), int(c[1]), int(c[2])}
	}
	return map[string]any{"names": names, "colors": colors}
}
