package cli

import (
	"fmt"

	"ctseg/internal/atomicfile"
	"ctseg/labels"
	"ctseg/pipeline"
	"ctseg/volume"
)

func init() {
	register("dicom-seg", "write a label map on a DICOM series' grid as a DICOM Segmentation of that series", runDICOMSeg)
}

// runDICOMSeg converts a label map already computed (by `ctseg segment --output`, or saved
// from the page) into the DICOM Segmentation that `segment --dicom-seg` would have written.
func runDICOMSeg(env *Env, args []string) error {
	fs := newFlags(env, "dicom-seg", "--labels LABELS.nii.gz --reference DICOM_FOLDER --output SEG.dcm [--series UID]")
	lp := fs.String("labels", "", "label map on the series' grid (what `ctseg segment --output` writes for it)")
	ref := fs.String("reference", "", "the folder holding the DICOM series the labels were computed from")
	series := fs.String("series", "", seriesHelp)
	out := fs.String("output", "", "DICOM Segmentation to write")
	force := fs.Bool("force", false, "overwrite an existing output")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "labels", "reference", "output"); err != nil {
		return err
	}
	ao := atomicfile.Options{Force: *force, Inputs: []string{*lp, *ref}}
	if err := atomicfile.Check(*out, ao); err != nil {
		return err
	}
	s, err := openSeries(*ref, *series)
	if err != nil {
		return err
	}
	if s == nil {
		return fmt.Errorf("--reference %s: a DICOM Segmentation refers to the images of a DICOM series; give the folder that holds it", *ref)
	}
	report(env, s, false)
	lab, lh, err := volume.ReadLabels(*lp)
	if err != nil {
		return err
	}
	if err := pipeline.CheckClasses(*lp, lab, lh); err != nil {
		return err
	}
	if err := volume.OnGrid(lh, s.Dims, s.Affine); err != nil {
		return fmt.Errorf("%s is not on the series' grid: %v (labels on the network's grid need `ctseg invert --reference %s` first)", *lp, err, *ref)
	}
	var outs atomicfile.Set
	defer outs.Abort()
	desc, err := writeSegmentation(env, &outs, *out, ao, s, lab, labels.Count, 0)
	if err != nil {
		return err
	}
	if err := outs.Commit(); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "wrote %s\n", desc)
	return nil
}
