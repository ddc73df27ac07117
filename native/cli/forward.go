//go:build !js

package cli

import (
	"fmt"
	"io"

	"ctseg/internal/atomicfile"
	"ctseg/model"
)

func init() {
	register("forward", "run the network on a raw float32 volume and write the logits", runForward)
}

func runForward(env *Env, args []string) error {
	fs := newFlags(env, "forward", "--weights FILE --input IN.f32 --shape D,H,W --output OUT.f32 [flags]")
	wpath := fs.String("weights", "", "MONAI checkpoint (model.pt) or ctseg weight file")
	in := fs.String("input", "", "raw little-endian float32 input [1,1,D,H,W]")
	shape := fs.String("shape", "", "input size D,H,W")
	out := fs.String("output", "", "raw float32 logits [1,K,D,H,W]")
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
	if err := required(fs, "weights", "input", "shape", "output"); err != nil {
		return err
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
	if err := atomicfile.Check(*out, ao); err != nil {
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
	net, err := loadNet(*wpath)
	if err != nil {
		return err
	}
	vol := &model.Tensor{C: 1, D: size[0], H: size[1], W: size[2], Data: data}
	var logits []float32
	if !useGPU {
		res, err := model.SlidingWindow(vol, opt, net.Cfg.OutChannels, net.Forward)
		if err != nil {
			return err
		}
		logits = res.Data
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
		logits = make([]float32, net.Cfg.OutChannels*vol.Voxels())
		if err := g.SlidingWindow(vol, plan, model.WindowOutput{Logits: logits}, nil); err != nil {
			return err
		}
		if *verbose {
			fmt.Fprintf(env.Stderr, "plan: %d windows, network buffers %d bytes, largest binding %d bytes, measured peak %d bytes\n",
				plan.NumWindows(), g.PlanBytes, g.MaxBinding, ctx.PeakBytes())
		}
	}
	return atomicfile.Write(*out, ao, func(w io.Writer) error { return writeRawF32(w, logits) })
}
