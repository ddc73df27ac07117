//go:build !js

package cli

import (
	"fmt"
	"io"

	"ctseg/viewer"
	"ctseg/weights"
	"ctseg/weights/cache"
)

func init() {
	register("site", "write the browser app as a static site that any web server can host", runSite)
}

func runSite(env *Env, args []string) error {
	fs := newFlags(env, "site", "--out DIR [--weights-dir DIR] [--force] [--brotli-quality 1..11]")
	out := fs.String("out", "", "folder to write the site into")
	wdir := fs.String("weights-dir", "", "also put the weights of this folder (model.pt for 1.5 mm, model_lowres.pt for 3 mm, or the cache's names) on the site, converted to f16, so the page finds them on its own origin")
	force := fs.Bool("force", false, "replace an existing site folder")
	quality := fs.Int("brotli-quality", 11, "quality of the .br copies, 1 to 11: 11 is the smallest and takes minutes for the wasm, 9 seconds")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "out"); err != nil {
		return err
	}
	var files []viewer.SiteFile
	if *wdir != "" {
		for _, v := range cache.Official().Variants {
			p, err := weightsInDir(*wdir, v.Spacing, "f16")
			if err != nil {
				continue
			}
			sd, err := weights.Load(p)
			if err != nil {
				return err
			}
			if _, err := weights.InferConfig(sd); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			files = append(files, viewer.SiteFile{Name: viewer.SiteWeightName(v.Name), Write: func(w io.Writer) error {
				return weights.WriteSafetensors(w, sd, weights.WriteOptions{F16: true})
			}})
		}
		if len(files) == 0 {
			return fmt.Errorf("--weights-dir %s: no weights found (model.pt for 1.5 mm, model_lowres.pt for 3 mm)", *wdir)
		}
	}
	if *quality < 1 || *quality > 11 {
		return fmt.Errorf("--brotli-quality %d: want 1 to 11", *quality)
	}
	infos, err := viewer.WriteSite(*out, viewer.SiteOptions{Weights: files, Replace: *force, BrotliQuality: *quality})
	if err != nil {
		return err
	}
	var total int64
	for _, f := range infos {
		total += f.Size
		if f.Name == "gen/ctseg.wasm" || f.Gzip > 0 && f.Size > 1<<20 {
			fmt.Fprintf(env.Stdout, "%s: %.1f MB (gzip %.1f MB, brotli %.1f MB)\n", f.Name, float64(f.Size)/1e6, float64(f.Gzip)/1e6, float64(f.Brot)/1e6)
		}
	}
	info, _, _ := viewer.Build()
	fmt.Fprintf(env.Stdout, "wrote %s: %d files, %.1f MB, build %s\n", *out, len(infos), float64(total)/1e6, info.ID)
	return nil
}
