//go:build !js

package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"ctseg/internal/atomicfile"
	"ctseg/model"
)

func init() {
	register("forward", "run the network on a raw float32 volume and write the logits", runForward)
}

func runForward(env *Env, args []string) error {
	fs := newFlags(env, "forward", "--weights FILE --input IN.f32 --shape D,H,W [--output OUT.f32] [--confidence CONF.f32] [--probe DIR] [flags]")
	wpath := fs.String("weights", "", "MONAI checkpoint (model.pt) or ctseg weight file")
	in := fs.String("input", "", "raw little-endian float32 input [1,1,D,H,W]")
	shape := fs.String("shape", "", "input size D,H,W")
	out := fs.String("output", "", "raw float32 logits [1,K,D,H,W]")
	confOut := fs.String("confidence", "", "also write p1, the softmax probability of each voxel's argmax class, as raw float32 [1,1,D,H,W]")
	probeDir := fs.String("probe", "", "also write every block's output (MONAI's module names) into this folder: NAME.f32, raw float32 [C,D,H,W], and index.json (whole input only, no --roi)")
	device := fs.String("device", "auto", deviceHelp)
	precision := fs.String("precision", "f32", "GPU activation storage: f32 or f16")
	roi := fs.String("roi", "", "sliding-window size N or D,H,W (default: the whole input at once)")
	overlap := fs.Float64("overlap", 0.25, "sliding-window overlap in [0,1)")
	blend := fs.String("blend", "gaussian", "sliding-window blending: gaussian or constant")
	force := fs.Bool("force", false, "overwrite an existing output")
	verbose := fs.Bool("verbose", false, "print the device and why, and the adapter and its limits")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "weights", "input", "shape"); err != nil {
		return err
	}
	if *out == "" && *confOut == "" && *probeDir == "" {
		return fmt.Errorf("nothing to write: give --output, --confidence or --probe")
	}
	if *probeDir != "" && *roi != "" {
		return fmt.Errorf("--probe takes the whole input through the network at once; it cannot be combined with --roi")
	}
	size, err := parseTriple("shape", *shape)
	if err != nil {
		return err
	}
	f16, err := parsePrecision(*precision)
	if err != nil {
		return err
	}
	opt := model.WindowOptions{ROI: size, Overlap: 0, Mode: model.Constant}
	if *roi != "" {
		r, err := parseTriple("roi", *roi)
		if err != nil {
			return err
		}
		mode, err := model.ParseBlendMode(*blend)
		if err != nil {
			return err
		}
		opt = model.WindowOptions{ROI: r, Overlap: *overlap, Mode: mode, SigmaScale: 0.125}
	}
	if opt.ROI[0]%8 != 0 || opt.ROI[1]%8 != 0 || opt.ROI[2]%8 != 0 {
		return fmt.Errorf("the network needs sizes that are multiples of 8, got %v (use --roi to run a sliding window)", opt.ROI)
	}
	plan, err := model.PlanWindows(size[0], size[1], size[2], opt)
	if err != nil {
		return err
	}
	ao := atomicfile.Options{Force: *force, Inputs: []string{*wpath, *in}}
	for _, f := range []string{*out, *confOut} {
		if f == "" {
			continue
		}
		if err := atomicfile.Check(f, ao); err != nil {
			return err
		}
	}
	if *probeDir != "" {
		if err := checkProbeDir(*probeDir, *force); err != nil {
			return err
		}
	}
	net, err := loadNet(*wpath)
	if err != nil {
		return err
	}
	// the probe's files, known from the network before it runs: checked with the others
	var probeFiles []string
	if *probeDir != "" {
		blocks, err := model.Blocks(net.Cfg, size)
		if err != nil {
			return err
		}
		for _, b := range blocks {
			probeFiles = append(probeFiles, filepath.Join(*probeDir, b.Name+".f32"))
		}
		probeFiles = append(probeFiles, filepath.Join(*probeDir, probeIndexName))
		if _, err := os.Stat(*probeDir); err == nil {
			for _, f := range probeFiles {
				if err := atomicfile.Check(f, ao); err != nil {
					return err
				}
			}
		} else if fi, err := os.Stat(filepath.Dir(filepath.Clean(*probeDir))); err != nil || !fi.IsDir() {
			return fmt.Errorf("--probe %s: its parent folder does not exist", *probeDir)
		}
	}
	if err := distinctOutputs(append([]string{*out, *confOut}, probeFiles...)...); err != nil {
		return err
	}
	useGPU, err := chooseDevice(env, *device, *verbose)
	if err != nil {
		return err
	}
	data, err := readRawF32(*in, size[0]*size[1]*size[2])
	if err != nil {
		return fmt.Errorf("reading input: %w", err)
	}
	vol := &model.Tensor{C: 1, D: size[0], H: size[1], W: size[2], Data: data}
	var logits []float32
	var probe []model.ProbeBlock
	if !useGPU {
		if *probeDir != "" {
			if probe, err = net.Probe(vol); err != nil {
				return err
			}
			logits = probe[len(probe)-1].Data
		} else {
			res, err := model.SlidingWindow(vol, opt, net.Cfg.OutChannels, net.Forward)
			if err != nil {
				return err
			}
			logits = res.Data
		}
	} else {
		ctx, err := openGPU(env, *verbose)
		if err != nil {
			return err
		}
		g, err := model.NewGPUNet(ctx, net, plan.ROI[0], plan.ROI[1], plan.ROI[2], model.GPUOptions{F16: f16, ConvTiles: tunedTiles(env, ctx, f16, plan.ROI, *verbose)})
		if err != nil {
			return err
		}
		defer g.Release()
		if *probeDir != "" {
			// the whole input is one window: its blocks, conv_final being its logits
			if probe, err = g.Probe(data, -1); err != nil {
				return err
			}
			logits = probe[len(probe)-1].Data
		} else {
			logits = make([]float32, net.Cfg.OutChannels*vol.Voxels())
			if err := g.SlidingWindow(vol, plan, model.WindowOutput{Logits: logits}, nil); err != nil {
				return err
			}
		}
		if *verbose {
			fmt.Fprintf(env.Stderr, "plan: %d windows, network buffers %d bytes, largest binding %d bytes, measured peak %d bytes\n",
				plan.NumWindows(), g.PlanBytes, g.MaxBinding, ctx.PeakBytes())
		}
	}
	// all outputs or none
	var outs atomicfile.Set
	defer outs.Abort()
	committed := false
	if *out != "" {
		if err := outs.Write(*out, ao, func(w io.Writer) error { return writeRawF32(w, logits) }); err != nil {
			return err
		}
	}
	if *confOut != "" {
		// p1 from the logits written, in float64 (segment's comes from the GPU head's unorm16)
		p1 := model.SoftmaxP1(logits, net.Cfg.OutChannels)
		if err := outs.Write(*confOut, ao, func(w io.Writer) error { return writeRawF32(w, p1) }); err != nil {
			return err
		}
	}
	if *probeDir != "" {
		made, err := writeProbe(&outs, *probeDir, probe, ao)
		if made {
			// a folder made for this run goes if the run does (os.Remove leaves a folder that
			// holds files)
			defer func() {
				if !committed {
					os.Remove(*probeDir)
				}
			}()
		}
		if err != nil {
			return err
		}
	}
	if err := outs.Commit(); err != nil {
		return err
	}
	committed = true
	return nil
}

// probeIndex is DIR/index.json of `forward --probe`: the blocks in the network's order.
type probeIndex struct {
	Blocks []probeEntry `json:"blocks"`
}

type probeEntry struct {
	Name  string `json:"name"`  // MONAI's module path
	File  string `json:"file"`  // NAME.f32 in the folder
	Shape []int  `json:"shape"` // [C, D, H, W]
	DType string `json:"dtype"` // float32, little endian
}

// checkProbeDir refuses a folder that is a file, or that holds a probe already (without force).
func checkProbeDir(dir string, force bool) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--probe %s: %v", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--probe %s: not a folder", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, probeIndexName)); err == nil && !force {
		return fmt.Errorf("--probe %s holds a probe already (use --force to replace it)", dir)
	}
	return nil
}

// probeIndexName is the probe folder's list of its files.
const probeIndexName = "index.json"

// writeProbe writes every block as DIR/NAME.f32 and DIR/index.json into outs (ao as for the
// other outputs: the inputs are never replaced). made says whether it created DIR.
func writeProbe(outs *atomicfile.Set, dir string, blocks []model.ProbeBlock, ao atomicfile.Options) (made bool, err error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		made = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("--probe: %v", err)
	}
	var idx probeIndex
	for _, b := range blocks {
		name := b.Name + ".f32"
		if err := outs.Write(filepath.Join(dir, name), ao, func(w io.Writer) error { return writeRawF32(w, b.Data) }); err != nil {
			return made, err
		}
		idx.Blocks = append(idx.Blocks, probeEntry{Name: b.Name, File: name, Shape: []int{b.C, b.D, b.H, b.W}, DType: "float32"})
	}
	return made, outs.Write(filepath.Join(dir, probeIndexName), ao, func(w io.Writer) error {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(idx)
	})
}
