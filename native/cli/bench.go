//go:build !js

package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"runtime"
	"strings"
	"time"

	"ctseg/gpu"
	"ctseg/internal/atomicfile"
	"ctseg/model"
	"ctseg/weights"
)

func init() {
	register("bench", "benchmark the model on the GPU or the CPU: per-layer GFLOP/s, window time, end to end", runBench)
}

// BenchReport is what `ctseg bench --json` writes.
type BenchReport struct {
	Device         string             `json:"device"` // "gpu" or "cpu"
	Adapter        string             `json:"adapter"`
	CPUKernels     string             `json:"cpu_kernels,omitempty"` // avx512, avx2, neon or generic
	Threads        int                `json:"threads,omitempty"`
	Limits         map[string]uint64  `json:"limits"`
	Config         string             `json:"config"`
	Precision      string             `json:"precision"`
	ConvTiles      string             `json:"conv_tiles"` // "defaults" or "tuned ..." (ctseg tune)
	ROI            [3]int             `json:"roi"`
	WindowGFLOP    float64            `json:"window_gflop"`
	WindowSeconds  []float64          `json:"window_seconds"`
	WindowMedian   float64            `json:"window_median_seconds"`
	WindowGFLOPS   float64            `json:"window_gflops"`
	Layers         []model.KindTiming `json:"layers"`
	LayerTiming    string             `json:"layer_timing"` // "gpu timestamps" or "wall clock"
	Shape          [3]int             `json:"shape"`
	Windows        int                `json:"windows"`
	EndToEnd       float64            `json:"end_to_end_seconds"`
	PeakGPUBytes   uint64             `json:"peak_gpu_bytes"`
	NetworkBytes   uint64             `json:"network_plan_bytes"`
	LargestBinding uint64             `json:"largest_binding_bytes"`
	// With timestamps, a second end-to-end run timed on the GPU per dispatch kind: where the
	// time goes, and how much of the untimed run the GPU was busy.
	EndToEndKinds   []model.KindTiming `json:"end_to_end_gpu_kinds,omitempty"`
	EndToEndGPUBusy float64            `json:"end_to_end_gpu_busy_seconds,omitempty"`
	Tiles           map[string]float64 `json:"tile_window_seconds,omitempty"`
	// With timestamps: each 3x3x3 layer's GPU time under every tile ("default" and the
	// --tiles choices), for choosing tiles per layer.
	TileLayers     map[string]map[string]float64 `json:"tile_layer_seconds,omitempty"`
	TileLayerOrder []string                      `json:"tile_layer_order,omitempty"` // network order
}

func runBench(env *Env, args []string) error {
	fs := newFlags(env, "bench", "[--device auto|gpu|cpu] [--spacing 1.5|3] [--shape X,Y,Z] [--precision f32|f16] [--json FILE] [--verbose]")
	device := fs.String("device", "auto", deviceHelp)
	spacing := fs.Float64("spacing", 1.5, "model spacing in mm; picks the default shape")
	shape := fs.String("shape", "", "preprocessed volume size (default: a 512x512x397 CT at that spacing: 287,287,397 at 1.5 mm, 144,144,199 at 3 mm)")
	precision := fs.String("precision", "f16", "activation storage: f32 or f16")
	wpath := fs.String("weights", "", "weight file (default: random weights of the bundle's shape)")
	roi := fs.String("roi", "96", "window size N or D,H,W")
	repeat := fs.Int("repeat", 3, "timed window runs (the median is reported)")
	jsonOut := fs.String("json", "", "also write the report as JSON")
	force := fs.Bool("force", false, "overwrite the JSON file")
	verbose := fs.Bool("verbose", false, "say which device runs it and why")
	tiles := fs.String("tiles", "", "also time one window per 3x3x3 conv tile MXxMN[xCK][c][/tyN][/tnN] (x-voxels and output channels per invocation, staged input channels; c: consecutive x-voxels; rows and output channels per workgroup), e.g. 2x8x4,8x8x4c/tn16; WIDTH=TILE+WIDTH=TILE gives tiles per layer width, e.g. 96=8x8x4c+12=2x8x4/tn16 (tuning)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	f16, err := parsePrecision(*precision)
	if err != nil {
		return err
	}
	size := [3]int{287, 287, 397}
	if *spacing == 3 {
		size = [3]int{144, 144, 199}
	} else if *spacing != 1.5 {
		return fmt.Errorf("--spacing %v: want 1.5 or 3", *spacing)
	}
	if *shape != "" {
		if size, err = parseTriple("shape", *shape); err != nil {
			return err
		}
	}
	r, err := parseTriple("roi", *roi)
	if err != nil {
		return err
	}
	if *repeat < 1 {
		return fmt.Errorf("--repeat must be at least 1")
	}
	if *jsonOut != "" {
		if err := atomicfile.Check(*jsonOut, atomicfile.Options{Force: *force, Inputs: []string{*wpath}}); err != nil {
			return err
		}
	}
	var net *model.Net
	if *wpath != "" {
		if net, err = loadNet(*wpath); err != nil {
			return err
		}
	} else if net, err = model.NewNet(weights.Random(weights.BundleConfig(), 1)); err != nil {
		return err
	}
	useGPU, err := chooseDevice(env, *device, *verbose)
	if err != nil {
		return err
	}
	if !useGPU {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		switch {
		case set["precision"] && *precision != "f32":
			return fmt.Errorf("--precision %s: the CPU path computes in f32", *precision)
		case *tiles != "":
			return fmt.Errorf("--tiles: convolution tiles are the GPU's (give --device gpu)")
		}
		return benchCPU(env, net, r, *repeat, set["shape"] || set["spacing"], size, *jsonOut, atomicfile.Options{Force: *force, Inputs: []string{*wpath}})
	}
	ctx, err := openGPU(env, false)
	if err != nil {
		return err
	}
	rep := &BenchReport{Device: "gpu", Adapter: ctx.Adapter, Config: net.Cfg.String(), Precision: *precision, ROI: r, Shape: size,
		Limits: map[string]uint64{
			"maxStorageBufferBindingSize":       ctx.Limits.MaxStorageBufferBindingSize,
			"maxBufferSize":                     ctx.Limits.MaxBufferSize,
			"maxComputeWorkgroupStorageSize":    uint64(ctx.Limits.MaxWorkgroupStorageSize),
			"maxComputeInvocationsPerWorkgroup": uint64(ctx.Limits.MaxInvocationsPerWorkgroup),
		}}
	fmt.Fprintf(env.Stdout, "adapter: %s\nmodel: %s, %s storage, window %v\n", ctx.Adapter, rep.Config, *precision, r)

	// the tiles a segment on this adapter would use: tuned (`ctseg tune`) or the defaults
	tuned := tunedTiles(env, ctx, f16, r, false)
	rep.ConvTiles = "defaults"
	if tuned != nil {
		rep.ConvTiles = "tuned " + model.FormatConvTiles(tuned)
	}
	fmt.Fprintf(env.Stdout, "convolution tiles: %s\n", rep.ConvTiles)
	g, err := model.NewGPUNet(ctx, net, r[0], r[1], r[2], model.GPUOptions{F16: f16, ConvTiles: tuned})
	if err != nil {
		return err
	}
	defer g.Release()
	rep.NetworkBytes, rep.LargestBinding = g.PlanBytes, g.MaxBinding
	rep.WindowGFLOP = g.FLOPs() / 1e9
	rng := rand.New(rand.NewSource(2))
	in := randomTensor(rng, r).Data
	if err := ctx.Write(g.Input, 0, gpu.Float32Bytes(in)); err != nil {
		return err
	}
	if err := g.RunWindow(); err != nil { // warm-up: pipelines, caches, clocks
		return err
	}
	if rep.WindowSeconds, err = g.TimeWindows(*repeat); err != nil {
		return err
	}
	rep.WindowMedian = model.Median(rep.WindowSeconds)
	if *tiles != "" {
		layers := ctx.Timestamps
		if layers {
			if err := addTileLayers(rep, "default", g); err != nil {
				fmt.Fprintf(env.Stdout, "per-layer tile times: not available (%v)\n", err)
				layers = false
			}
		}
		if err := benchTiles(env, ctx, net, r, f16, *tiles, in, *repeat, layers, rep); err != nil {
			return err
		}
		printTileLayers(env.Stdout, rep)
	}
	rep.WindowGFLOPS = rep.WindowGFLOP / rep.WindowMedian
	fmt.Fprintf(env.Stdout, "window: %.1f GFLOP, median %.3f s of %d runs, %.1f GFLOP/s\n", rep.WindowGFLOP, rep.WindowMedian, *repeat, rep.WindowGFLOPS)
	if rep.Layers, rep.LayerTiming, err = g.Profile(); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "per layer kind, one window (%s):\n", rep.LayerTiming)
	printKinds(env.Stdout, rep.Layers)

	_, plan, err := benchPlan(size, r)
	if err != nil {
		return err
	}
	rep.Windows = plan.NumWindows()
	vol := randomTensor(rng, size)
	ctx.ResetPeak()
	start := time.Now()
	if err := g.SlidingWindow(vol, plan, model.WindowOutput{Labels: make([]uint8, vol.Voxels())}, nil); err != nil {
		return err
	}
	rep.EndToEnd = time.Since(start).Seconds()
	rep.PeakGPUBytes = ctx.PeakBytes()
	fmt.Fprintf(env.Stdout, "end to end: %v volume, %d windows, %.2f s (sliding window, blending, argmax, readback)\npeak GPU memory: %.1f MB (network %.1f MB, largest binding %.1f MB)\n",
		size, rep.Windows, rep.EndToEnd, float64(rep.PeakGPUBytes)/1e6, float64(rep.NetworkBytes)/1e6, float64(rep.LargestBinding)/1e6)
	if ctx.Timestamps {
		if err := benchTimedWindow(env, ctx, g, vol, plan, rep); err != nil {
			// the untimed figures above stand; a driver's timestamps should not cost them
			fmt.Fprintf(env.Stdout, "end to end, timed on the GPU: not available (%v)\n", err)
		}
	}
	return writeBenchJSON(*jsonOut, atomicfile.Options{Force: *force, Inputs: []string{*wpath}}, rep)
}

// benchPlan is the bundle's sliding window over a volume of size with windows of roi.
func benchPlan(size, roi [3]int) (model.WindowOptions, *model.WindowPlan, error) {
	opt := model.WindowOptions{ROI: roi, Overlap: 0.25, Mode: model.Gaussian, SigmaScale: 0.125}
	plan, err := model.PlanWindows(size[0], size[1], size[2], opt)
	return opt, plan, err
}

// randomTensor is a one-channel volume of size filled from rng's normal distribution.
func randomTensor(rng *rand.Rand, size [3]int) *model.Tensor {
	t := model.NewTensor(1, size[0], size[1], size[2])
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}

func writeBenchJSON(path string, ao atomicfile.Options, rep *BenchReport) error {
	if path == "" {
		return nil
	}
	return atomicfile.Write(path, ao, func(w io.Writer) error {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(rep)
	})
}

// benchCPU is bench on the CPU path: the window median of repeat runs of the whole network
// (features and head, as PyTorch's timing of the same network), time and GFLOP/s per layer
// kind, and with endToEnd a sliding window over a random volume of size with the head and
// argmax (SlidingWindowLabels, what segment runs).
func benchCPU(env *Env, net *model.Net, r [3]int, repeat int, endToEnd bool, size [3]int, jsonOut string, ao atomicfile.Options) error {
	kernels, err := model.CPUKernels()
	if err != nil {
		return err
	}
	threads := runtime.GOMAXPROCS(0)
	rep := &BenchReport{Device: "cpu", Adapter: fmt.Sprintf("CPU, %s kernels, %d threads", kernels, threads), CPUKernels: kernels,
		Threads: threads, Config: net.Cfg.String(), Precision: "f32", ConvTiles: "none (CPU)", ROI: r, LayerTiming: "wall clock"}
	fmt.Fprintf(env.Stdout, "device: %s\nmodel: %s, f32, window %v\n", rep.Adapter, rep.Config, r)
	rng := rand.New(rand.NewSource(2))
	x := randomTensor(rng, r)
	// warm-up: packs the weights, fills the buffer pool
	if _, err := net.Forward(x); err != nil {
		return err
	}
	for range repeat {
		start := time.Now()
		if _, err := net.Forward(x); err != nil {
			return err
		}
		rep.WindowSeconds = append(rep.WindowSeconds, time.Since(start).Seconds())
	}
	rep.WindowMedian = model.Median(rep.WindowSeconds)
	if rep.Layers, err = net.ProfileCPU(r[0], r[1], r[2]); err != nil {
		return err
	}
	for _, k := range rep.Layers {
		rep.WindowGFLOP += k.FLOPs / 1e9
	}
	rep.WindowGFLOPS = rep.WindowGFLOP / rep.WindowMedian
	fmt.Fprintf(env.Stdout, "window: %.1f GFLOP, median %.3f s of %d runs, %.1f GFLOP/s\n", rep.WindowGFLOP, rep.WindowMedian, repeat, rep.WindowGFLOPS)
	fmt.Fprintf(env.Stdout, "per layer kind, one window (wall clock, all %d threads):\n", threads)
	printKinds(env.Stdout, rep.Layers)
	if endToEnd {
		rep.Shape = size
		opt, plan, err := benchPlan(size, r)
		if err != nil {
			return err
		}
		rep.Windows = plan.NumWindows()
		vol := randomTensor(rng, size)
		start := time.Now()
		if _, err := net.SlidingWindowLabels(vol, opt, nil); err != nil {
			return err
		}
		rep.EndToEnd = time.Since(start).Seconds()
		fmt.Fprintf(env.Stdout, "end to end: %v volume, %d windows, %.2f s (sliding window, blending, head, argmax)\n", size, rep.Windows, rep.EndToEnd)
	} else {
		fmt.Fprintf(env.Stdout, "end to end: not run on the CPU unless --shape or --spacing is given (a 1.5 mm volume is 80 windows)\n")
	}
	return writeBenchJSON(jsonOut, ao, rep)
}

// benchTimedWindow runs the sliding window again with every dispatch timed on the GPU. The
// timed run waits after each window to read its timestamps, so only its GPU times are
// reported; set against the untimed run's wall time they show what the host adds.
func benchTimedWindow(env *Env, ctx *gpu.Context, g *model.GPUNet, vol *model.Tensor, plan *model.WindowPlan, rep *BenchReport) error {
	t, err := ctx.NewTiming()
	if err != nil {
		return err
	}
	defer t.Release()
	g.Timing = t
	defer func() { g.Timing = nil }()
	if err := g.SlidingWindow(vol, plan, model.WindowOutput{Labels: make([]uint8, vol.Voxels())}, nil); err != nil {
		return err
	}
	rep.EndToEndKinds = model.KindTimings(t)
	for _, k := range rep.EndToEndKinds {
		rep.EndToEndGPUBusy += k.Seconds
	}
	// The timed run puts every dispatch in a pass of its own and waits after each window, so
	// its busy time is set beside the untimed run's wall time, not subtracted from it.
	fmt.Fprintf(env.Stdout, "end to end, timed on the GPU (a second run): dispatches busy %.2f s; the untimed run above took %.2f s\n",
		rep.EndToEndGPUBusy, rep.EndToEnd)
	printKinds(env.Stdout, rep.EndToEndKinds)
	return nil
}

func printKinds(w io.Writer, ks []model.KindTiming) {
	fmt.Fprintf(w, "  %-10s %9s %9s %10s %6s\n", "kind", "seconds", "GFLOP", "GFLOP/s", "count")
	for _, k := range ks {
		fmt.Fprintf(w, "  %-10s %9.4f %9.2f %10.1f %6d\n", k.Kind, k.Seconds, k.FLOPs/1e9, k.GFLOPS(), k.Count)
	}
}

// benchTiles times one window per conv tile shape, for choosing the defaults per GPU.
func benchTiles(env *Env, ctx *gpu.Context, net *model.Net, r [3]int, f16 bool, list string, in []float32, repeat int, layers bool, rep *BenchReport) error {
	for _, t := range strings.Split(list, ",") {
		tiles, err := model.ParseConvTiles(t)
		if err != nil {
			return fmt.Errorf("--tiles: %w", err)
		}
		g, err := model.NewGPUNet(ctx, net, r[0], r[1], r[2], model.GPUOptions{F16: f16, ConvTiles: tiles})
		if err != nil {
			return err
		}
		err = ctx.Write(g.Input, 0, gpu.Float32Bytes(in))
		if err == nil {
			err = g.RunWindow() // compiles and warms up
		}
		var secs []float64
		if err == nil {
			secs, err = g.TimeWindows(repeat)
		}
		if err == nil && layers {
			err = addTileLayers(rep, t, g)
		}
		g.Release()
		if err != nil {
			return err
		}
		m := model.Median(secs)
		if rep.Tiles == nil {
			rep.Tiles = map[string]float64{}
		}
		rep.Tiles[t] = m
		fmt.Fprintf(env.Stdout, "tile %-6s window median %.4f s, %.1f GFLOP/s\n", t, m, rep.WindowGFLOP/m)
	}
	return nil
}

// addTileLayers books every 3x3x3 layer's GPU time under tile name.
func addTileLayers(rep *BenchReport, name string, g *model.GPUNet) error {
	lt, err := g.ProfileLayers("conv3x3")
	if err != nil {
		return err
	}
	if rep.TileLayers == nil {
		rep.TileLayers = map[string]map[string]float64{}
	}
	for _, l := range lt {
		if rep.TileLayers[l.Kind] == nil {
			rep.TileLayers[l.Kind] = map[string]float64{}
			rep.TileLayerOrder = append(rep.TileLayerOrder, l.Kind)
		}
		rep.TileLayers[l.Kind][name] = l.Seconds
	}
	return nil
}

// printTileLayers shows, per 3x3x3 layer, the fastest tile and the default's time, and what a
// window's 3x3x3 layers would take with the best tile for each.
func printTileLayers(w io.Writer, rep *BenchReport) {
	if len(rep.TileLayers) == 0 {
		return
	}
	layers := rep.TileLayerOrder
	fmt.Fprintf(w, "per 3x3x3 layer (GPU timestamps): fastest tile vs this run's tiles (\"default\")\n")
	fmt.Fprintf(w, "  %-28s %-8s %9s %9s\n", "layer", "best", "seconds", "default")
	sumBest, sumDefault := 0.0, 0.0
	for _, l := range layers {
		best, bestS := "", 0.0
		for tile, s := range rep.TileLayers[l] {
			if best == "" || s < bestS || (s == bestS && tile < best) {
				best, bestS = tile, s
			}
		}
		def := rep.TileLayers[l]["default"]
		sumBest += bestS
		sumDefault += def
		fmt.Fprintf(w, "  %-28s %-8s %9.5f %9.5f\n", l, best, bestS, def)
	}
	fmt.Fprintf(w, "  3x3x3 layers of a window: %.4f s with the best tile per layer, %.4f s with the default\n", sumBest, sumDefault)
}
