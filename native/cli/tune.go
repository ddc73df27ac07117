//go:build !js

package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"ctseg/gpu"
	"ctseg/internal/atomicfile"
	"ctseg/model"
	"ctseg/shaders"
	"ctseg/weights"
)

func init() {
	register("tune", "time the convolution tiles on this GPU and keep the fastest for later runs", runTune)
}

// EnvTuning names the environment variable that moves the tuning file.
const EnvTuning = "CTSEG_TUNING"

// tuningFile is where `ctseg tune` keeps its choices: $CTSEG_TUNING, else
// os.UserCacheDir()/ctseg/tuning.json (beside the weights cache).
func tuningFile() (string, error) {
	if p := os.Getenv(EnvTuning); p != "" {
		return filepath.Abs(p)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache folder (%v): set %s", err, EnvTuning)
	}
	return filepath.Join(base, "ctseg", "tuning.json"), nil
}

// tunings is the tuning file: one entry per adapter, storage precision and window.
type tunings struct {
	Version int              `json:"version"`
	Entries map[string]tuned `json:"entries"`
}

type tuned struct {
	Adapter        string  `json:"adapter"`
	Precision      string  `json:"precision"`
	ROI            [3]int  `json:"roi"`
	Tiles          string  `json:"tiles"` // "" when the defaults were fastest
	DefaultSeconds float64 `json:"default_window_seconds"`
	TunedSeconds   float64 `json:"tuned_window_seconds"`
	Method         string  `json:"method"`
	Date           string  `json:"date"`
}

const tuningVersion = 1

// maxTuningBytes bounds what is read: a file this large is not ours.
const maxTuningBytes = 1 << 20

func tuningKey(adapter, precision string, roi [3]int) string {
	return fmt.Sprintf("%s|%s|%dx%dx%d", adapter, precision, roi[0], roi[1], roi[2])
}

func readTunings(path string) (*tunings, error) {
	t := &tunings{Version: tuningVersion, Entries: map[string]tuned{}}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTuningBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxTuningBytes {
		return nil, fmt.Errorf("%s is over %d bytes", path, maxTuningBytes)
	}
	if err := json.Unmarshal(b, t); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if t.Version != tuningVersion {
		return nil, fmt.Errorf("%s: version %d, want %d", path, t.Version, tuningVersion)
	}
	if t.Entries == nil {
		t.Entries = map[string]tuned{}
	}
	return t, nil
}

// tunedTiles returns the tiles `ctseg tune` chose for this adapter, precision and window, or
// nil for the defaults. A missing or unreadable file never stops a run: tiles change speed,
// not results, so an unreadable file is reported on stderr and the defaults are used.
func tunedTiles(env *Env, ctx *gpu.Context, f16 bool, roi [3]int, verbose bool) map[int]shaders.ConvTile {
	path, err := tuningFile()
	if err != nil {
		return nil
	}
	t, err := readTunings(path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ctseg: ignoring the tuning file (%v); run ctseg tune again or delete it\n", err)
		return nil
	}
	e, ok := t.Entries[tuningKey(ctx.Adapter, precisionName(f16), roi)]
	if !ok || e.Tiles == "" {
		return nil
	}
	tiles, err := model.ParseConvTiles(e.Tiles)
	if err != nil {
		fmt.Fprintf(env.Stderr, "ctseg: ignoring the tuning file's tiles %q (%v)\n", e.Tiles, err)
		return nil
	}
	if verbose {
		fmt.Fprintf(env.Stderr, "convolution tiles tuned for this adapter (%s): %s\n", path, e.Tiles)
	}
	return tiles
}

func precisionName(f16 bool) string {
	if f16 {
		return "f16"
	}
	return "f32"
}

func runTune(env *Env, args []string) error {
	fs := newFlags(env, "tune", "[--precision f16|f32] [--roi N] [--tiles LIST] [--repeat N]")
	precision := fs.String("precision", "f16", "activation storage to tune for: f16 or f32")
	roi := fs.String("roi", "96", "window size N or D,H,W (the bundle's 96)")
	tiles := fs.String("tiles", model.TuneCandidates, "candidate tiles, comma-separated (see ctseg bench --tiles)")
	repeat := fs.Int("repeat", 3, "timed runs per candidate (medians are compared)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	f16, err := parsePrecision(*precision)
	if err != nil {
		return err
	}
	r, err := parseTriple("roi", *roi)
	if err != nil {
		return err
	}
	if *repeat < 1 {
		return fmt.Errorf("--repeat must be at least 1")
	}
	cands, err := shaders.ParseConvTileList(*tiles)
	if err != nil {
		return fmt.Errorf("--tiles: %w", err)
	}
	path, err := tuningFile()
	if err != nil {
		return err
	}
	all, err := readTunings(path)
	if err != nil {
		return fmt.Errorf("the tuning file: %w (delete it to start afresh)", err)
	}
	ctx, err := openGPU(env, false)
	if err != nil {
		return err
	}
	// timing does not depend on the weights' values: random weights of the bundle's shape
	net, err := model.NewNet(weights.Random(weights.BundleConfig(), 1))
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "adapter: %s\ntuning %d tiles for a %v window, %s storage\n", ctx.Adapter, len(cands), r, *precision)
	res, err := model.Tune(ctx, net, r, f16, cands, *repeat, env.Stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "chosen by %s:\n", res.Method)
	for _, w := range res.Widths {
		name := fmt.Sprintf("width %d", w.Width)
		if w.Width == 0 {
			name = "all layers"
		}
		fmt.Fprintf(env.Stdout, "  %-10s %-14s %.4f s (default %s: %.4f s)\n", name, w.Tile, w.Seconds, w.Default, w.DefaultSeconds)
	}
	if res.Tiles == "" {
		fmt.Fprintf(env.Stdout, "the defaults are the fastest here (window %.4f s); recorded so\n", res.DefaultSeconds)
	} else {
		fmt.Fprintf(env.Stdout, "window: %.4f s tuned (%s) vs %.4f s with the defaults, %.2fx\n",
			res.TunedSeconds, res.Tiles, res.DefaultSeconds, res.DefaultSeconds/res.TunedSeconds)
	}
	all.Entries[tuningKey(ctx.Adapter, *precision, r)] = tuned{
		Adapter: ctx.Adapter, Precision: *precision, ROI: r, Tiles: res.Tiles, Method: res.Method,
		DefaultSeconds: res.DefaultSeconds, TunedSeconds: res.TunedSeconds, Date: time.Now().UTC().Format(time.RFC3339),
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	err = atomicfile.Write(path, atomicfile.Options{Force: true}, func(w io.Writer) error {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(all)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s; ctseg segment, forward and bench use it on this adapter\n", path)
	return nil
}
