//go:build !js

package cli

import (
	"fmt"

	"ctseg/internal/atomicfile"
	"ctseg/weights"
)

func init() {
	register("convert", "convert a MONAI checkpoint to the ctseg weight file", runConvert)
}

func runConvert(env *Env, args []string) error {
	fs := newFlags(env, "convert", "--input model.pt --output FILE [--f16]")
	in := fs.String("input", "", "MONAI checkpoint (torch.save zip) or ctseg weight file")
	out := fs.String("output", "", "ctseg weight file to write (safetensors layout)")
	f16 := fs.Bool("f16", false, "store the tensors as f16 (half the size)")
	force := fs.Bool("force", false, "overwrite an existing output")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "input", "output"); err != nil {
		return err
	}
	if err := atomicfile.Check(*out, atomicfile.Options{Force: *force, Inputs: []string{*in}}); err != nil {
		return err
	}
	sd, err := weights.Load(*in)
	if err != nil {
		return err
	}
	cfg, err := weights.InferConfig(sd)
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	if err := weights.Save(*out, sd, weights.WriteOptions{F16: *f16}); err != nil {
		return err
	}
	prec := "f32"
	if *f16 {
		prec = "f16"
	}
	fmt.Fprintf(env.Stdout, "%s\nparameters: %d\nwrote %s (%s)\n", cfg, cfg.ParamCount(), *out, prec)
	return nil
}
