//go:build !js

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"ctseg/gpu"
	"ctseg/labels"
	"ctseg/model"
	"ctseg/native/desktop"
	"ctseg/pipeline"
	"ctseg/viewer"
	"ctseg/volume"
)

func init() {
	register("app", "the desktop app: the page in your browser, the network on this computer's GPU when the browser cannot", runApp)
}

func runApp(env *Env, args []string) error {
	fs := newFlags(env, "app", "[--no-open] [--device auto|gpu|cpu] [--precision f16|f32] [--weights-dir DIR]")
	noOpen := fs.Bool("no-open", false, "do not open a browser: print the launch URL as the first line of stdout")
	device := fs.String("device", "auto", "where native runs compute: "+deviceHelp)
	precision := fs.String("precision", "f16", "GPU storage of native runs the page does not choose: f16 (as the bundle) or f32")
	wdir := fs.String("weights-dir", "", "directory of weight files: the page may load them, and native runs use model.pt (1.5 mm) and model_lowres.pt (3 mm) from it (default: the weights cache, see ctseg weights)")
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on: 127.0.0.1 and a port (0: a free one)")
	maxMB := fs.Int64("max-upload-mb", desktop.DefaultMaxUpload>>20, fmt.Sprintf("largest CT a native run takes, in MiB (1 to %d)", maxUploadMB))
	verbose := fs.Bool("verbose", false, "print the adapter and each native run (never a patient's data)")
	roi := fs.Int("roi", 96, "sliding-window size of native runs (the bundle's 96; smaller only for tests)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	f16, err := parsePrecision(*precision)
	if err != nil {
		return err
	}
	if *roi <= 0 || *roi%8 != 0 {
		return fmt.Errorf("--roi %d: must be a positive multiple of 8", *roi)
	}
	if *maxMB < 1 || *maxMB > maxUploadMB {
		return fmt.Errorf("--max-upload-mb %d: must be 1 to %d (MiB)", *maxMB, maxUploadMB)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", *addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		// Another loopback address would not match the Host allow-list or the launch URL; any
		// other address would open the API to the network (`ctseg serve` shares the page alone).
		return fmt.Errorf("--addr %s: the app listens only on 127.0.0.1", *addr)
	}
	if err := viewer.CheckWasm(); err != nil {
		return err
	}
	dir, err := desktop.RuntimeDir()
	if err != nil {
		return err
	}
	// Ctrl-C and SIGTERM stop the app cleanly from here on (the runtime file is removed), also
	// while it waits for a running app to hand over or for the GPU to open.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", *addr, err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	me := desktop.Instance{PID: os.Getpid(), Port: port, Secret: desktop.NewSecret()}
	release, other, token, err := desktop.Claim(ctx, dir, me)
	if ctx.Err() != nil {
		if err == nil {
			release()
		}
		return errInterrupted
	}
	if errors.Is(err, desktop.ErrRunning) {
		ln.Close()
		if setFlags(fs, "no-open") != "" {
			fmt.Fprintf(env.Stderr, "ctseg app: the running app (pid %d) keeps its own settings; %s ignored (stop it first to change them)\n", other.PID, setFlags(fs, "no-open"))
		}
		return openRunning(env, dir, *other, token, *noOpen)
	}
	if err != nil {
		return err
	}
	defer release()
	defer desktop.RemoveLaunchFiles(dir) // every launch file in the folder points to this app

	wopt := model.DefaultWindowOptions()
	wopt.ROI = [3]int{*roi, *roi, *roi}
	runner := &appRunner{env: env, weightsDir: *wdir, window: wopt, verbose: *verbose, defaultF16: f16, nets: map[string]*model.Net{}}
	// probing and opening the GPU may take seconds (driver start-up): Ctrl-C ends them
	useGPU, err := interruptibly(ctx, func() (bool, error) { return chooseDevice(env, *device, *verbose) })
	if err != nil {
		return err
	}
	if useGPU {
		if runner.ctx, err = interruptibly(ctx, func() (*gpu.Context, error) { return openGPU(env, *verbose) }); errors.Is(err, errInterrupted) {
			return err
		} else if err != nil {
			return fmt.Errorf("%w (ctseg app --device cpu computes on the processor instead)", err)
		}
	}
	srv := desktop.New(desktop.Options{Port: port, Instance: me.Secret, MaxUpload: *maxMB << 20, Runner: runner, RuntimeDir: dir})
	// However the app ends, the running job is stopped (after its current window) before the
	// GPU network it uses is released: release waits for the run.
	defer func() {
		srv.Close()
		runner.release()
	}()
	vopt := viewer.Options{WeightsDir: *wdir, LoopbackOnly: true}
	if *wdir == "" {
		vopt.Cached = cachedWeights(env, "app")
	}
	page, err := viewer.NewHandler(vopt)
	if err != nil {
		return err
	}
	hs := newHTTPServer(srv.Handler(page))
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()

	if err := launch(env, dir, desktop.LaunchURL(port, srv.LaunchToken()), *noOpen); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "ctseg app: native runs on %s; listening on 127.0.0.1:%d only; Ctrl-C to stop\n", runner.deviceName(), port)

	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	stop() // a second Ctrl-C ends the process at once
	fmt.Fprintln(env.Stderr, "ctseg app: stopping (a run stops after its current window)")
	// A running job stops after its current window; streams end; nothing is kept.
	srv.Close()
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shut); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	fmt.Fprintln(env.Stderr, "ctseg app: stopped")
	return nil
}

// maxUploadMB bounds --max-upload-mb: 64 GiB, far above any CT, and far below overflowing
// bytes in an int64.
const maxUploadMB = 64 << 10

// errInterrupted ends an app stopped by Ctrl-C or SIGTERM before it served.
var errInterrupted = errors.New("interrupted while starting")

// interruptibly runs f (which cannot be cancelled, e.g. opening the GPU) and returns its
// result, or errInterrupted as soon as ctx ends: the process is about to exit, and f's
// goroutine with it.
func interruptibly[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, errInterrupted
	}
}

// openRunning opens the user's running app (another `ctseg app`) with the launch token it
// handed over.
func openRunning(env *Env, dir string, in desktop.Instance, token string, noOpen bool) error {
	fmt.Fprintf(env.Stderr, "ctseg app: already running (pid %d, port %d)\n", in.PID, in.Port)
	return launch(env, dir, desktop.LaunchURL(in.Port, token), noOpen)
}

// launch gives the user the launch URL: printed as the first line of stdout with --no-open,
// else opened in the default browser, with the URL on stderr in case no browser appears (the
// user's own terminal; the token works once and for two minutes).
func launch(env *Env, dir, url string, noOpen bool) error {
	if noOpen {
		fmt.Fprintln(env.Stdout, url)
		return nil
	}
	if err := desktop.OpenBrowser(dir, url); err != nil {
		fmt.Fprintf(env.Stderr, "ctseg app: %v\n", err)
		fmt.Fprintln(env.Stdout, url)
		return nil
	}
	fmt.Fprintf(env.Stdout, "ctseg app: opened in your browser; if it did not appear, open %s\n", url)
	return nil
}

// setFlags lists the flags given on the command line, but the named ones.
func setFlags(fs *flag.FlagSet, except ...string) string {
	var set []string
	fs.Visit(func(f *flag.Flag) {
		if !slices.Contains(except, f.Name) {
			set = append(set, "--"+f.Name)
		}
	})
	return strings.Join(set, " ")
}

// appRunner runs the page's native jobs with `ctseg segment`'s pieces: the same weights
// resolution (or --weights-dir's bundle files), network, tuned tiles and pipeline.Segment.
type appRunner struct {
	env        *Env
	ctx        *gpu.Context // nil: the CPU path
	weightsDir string
	window     model.WindowOptions
	verbose    bool
	defaultF16 bool

	mu   sync.Mutex
	nets map[string]*model.Net // by weight file
	gnet *model.GPUNet         // built for gkey; rebuilt when a run needs other weights or precision
	gkey string
}

func (a *appRunner) deviceName() string {
	if a.ctx == nil {
		return "the CPU"
	}
	return a.ctx.Adapter
}

// weightsFor finds the weight file for a spacing: in --weights-dir (weightsInDir), else the
// weights cache.
func (a *appRunner) weightsFor(spacing float64, f16 bool) (string, error) {
	if a.weightsDir == "" {
		return resolveWeights("", spacing, precisionName(f16))
	}
	return weightsInDir(a.weightsDir, spacing, precisionName(f16))
}

func (a *appRunner) Capabilities() desktop.Capabilities {
	c := desktop.Capabilities{Device: "cpu", Adapter: desktop.Adapter{Name: "this computer's processor (ctseg's CPU path)", Backend: "cpu"}, Precisions: []string{"f32"}, Weights: []desktop.WeightVariant{}}
	if a.ctx != nil {
		c.Device = "gpu"
		c.Adapter = desktop.Adapter{Name: a.ctx.Adapter, Backend: strings.ToLower(a.ctx.Backend), Software: a.ctx.Software}
		c.Precisions = []string{"f16", "f32"}
		if !a.defaultF16 {
			c.Precisions = []string{"f32", "f16"}
		}
	}
	for _, sp := range []float64{1.5, 3} {
		if p, err := a.weightsFor(sp, a.defaultF16); err == nil {
			c.Weights = append(c.Weights, desktop.WeightVariant{Spacing: sp, Name: filepath.Base(p)})
		}
	}
	sort.Slice(c.Weights, func(i, j int) bool { return c.Weights[i].Spacing < c.Weights[j].Spacing })
	return c
}

func (a *appRunner) Check(spacing float64, f16 bool) error {
	_, err := a.weightsFor(spacing, f16)
	return err
}

// net loads (once) the network of a weight file.
func (a *appRunner) net(spacing float64, f16 bool) (*model.Net, string, error) {
	path, err := a.weightsFor(spacing, f16)
	if err != nil {
		return nil, "", err
	}
	if n, ok := a.nets[path]; ok {
		return n, path, nil
	}
	n, err := loadNet(path)
	if err != nil {
		return nil, "", err
	}
	if n.Cfg.OutChannels > labels.Count {
		return nil, "", fmt.Errorf("weights %s have %d classes; the label map has %d", path, n.Cfg.OutChannels, labels.Count)
	}
	a.nets[path] = n
	return n, path, nil
}

func (a *appRunner) Segment(ct *volume.Volume, spacing float64, f16 bool, progress func(done, total int), cancelled func() bool) (*pipeline.Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	net, key, err := a.net(spacing, f16)
	if err != nil {
		return nil, err
	}
	// the confidence, as `ctseg segment --stats` computes it: the statistics carry its mean
	// and, for the page's Teach view, p2 and the runner-up: what a browser run gives it, for
	// a CT the page keeps them for
	opt := pipeline.Options{Spacing: spacing, F16: f16, Window: a.window, Progress: progress, Cancelled: cancelled,
		Confidence: true, RunnerUp: len(ct.Data) <= pipeline.MaxPageConfidenceVoxels}
	if a.ctx != nil {
		opt.GPU = a.ctx
		opt.ConvTiles = tunedTiles(a.env, a.ctx, f16, a.window.ROI, a.verbose)
		key += "|" + precisionName(f16)
		if a.gnet == nil || a.gkey != key {
			a.releaseGPU()
			if a.gnet, err = pipeline.NewGPUNet(net, opt); err != nil {
				return nil, err
			}
			a.gkey = key
		}
		opt.Net = a.gnet
	} else {
		opt.F16 = false // the CPU path computes in f32
	}
	start := time.Now()
	res, err := pipeline.Segment(ct, net, opt)
	if a.verbose && err == nil {
		fmt.Fprintf(a.env.Stderr, "ctseg app: native run: %d windows at %v mm in %.1f s\n", res.Windows, spacing, time.Since(start).Seconds())
	}
	return res, err
}

func (a *appRunner) releaseGPU() {
	if a.gnet != nil {
		a.gnet.Release()
		a.gnet, a.gkey = nil, ""
	}
}

func (a *appRunner) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.releaseGPU()
}
