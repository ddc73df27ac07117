//go:build !js

package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"ctseg/volume"
	"ctseg/volume/dicom"
)

// inputHelp is the --input text of every command that reads a CT.
const inputHelp = "CT: a NIfTI file (.nii, .nii.gz) or a folder holding a DICOM series"

// seriesHelp is the --series text: which DICOM series of a folder to read.
const seriesHelp = "SeriesInstanceUID of the DICOM series to read when the folder holds several CT series (- for the one without a UID)"

// readCT reads the CT at path: a DICOM series when path is a folder (returned too, for a
// DICOM Segmentation of it), NIfTI otherwise. The header describes the input's grid, for
// outputs written on it.
func readCT(env *Env, path, series string, verbose bool) (*volume.Volume, *volume.Header, *dicom.Series, error) {
	s, err := openSeries(path, series)
	if err != nil {
		return nil, nil, nil, err
	}
	if s == nil {
		v, h, err := volume.ReadNIfTI(path)
		return v, h, nil, err
	}
	v, err := s.Volume()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	report(env, s, verbose)
	return v, s.Header(), s, nil
}

// readGrid reads only the grid of the CT at path (the DICOM headers, or the NIfTI header).
func readGrid(env *Env, path, series string, verbose bool) (*volume.Header, error) {
	s, err := openSeries(path, series)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return volume.ReadHeader(path)
	}
	report(env, s, verbose)
	return s.Header(), nil
}

// openSeries returns the checked DICOM series in the folder path, or nil when path is not a folder.
func openSeries(path, series string) (*dicom.Series, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		if series != "" {
			return nil, fmt.Errorf("--series applies to a DICOM folder; %s is a file", path)
		}
		if isDICOMFile(path) {
			return nil, fmt.Errorf("%s is a single DICOM image: give the folder that holds the whole series", path)
		}
		return nil, nil
	}
	srcs, err := dicom.Dir(path)
	if err != nil {
		return nil, err
	}
	s, err := dicom.Open(srcs, dicom.Options{Series: series})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// isDICOMFile reports whether the file at path starts like a DICOM file.
func isDICOMFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 132)
	_, err = io.ReadFull(f, head)
	return err == nil && dicom.IsDICOM(head)
}

// report tells the user what they should know of a series once it has been read: where the
// reading departed from MONAI's slice order always (once the command has succeeded), the
// series itself with --verbose.
func report(env *Env, s *dicom.Series, verbose bool) {
	if verbose {
		uid := s.UID
		if uid == "" {
			uid = "without a SeriesInstanceUID"
		}
		sp := s.Header().Pixdim
		fmt.Fprintf(env.Stderr, "DICOM series %s %q: %dx%dx%d voxels of %.4g x %.4g x %.4g mm, %d other files skipped\n",
			uid, strings.TrimSpace(s.Description), s.Dims[0], s.Dims[1], s.Dims[2], sp[0], sp[1], sp[2], len(s.Skipped))
	}
	env.notes = append(env.notes, s.Notes...)
}
