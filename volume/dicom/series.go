package dicom

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"ctseg/volume"
)

// Source is one file of a series: a name for messages and a way to get its bytes. A folder's
// files are read twice (geometry first, pixels after the volume is allocated), so only one
// file's bytes per decoder are held at a time; the browser's sources hold their bytes already.
type Source struct {
	Name string
	Open func() ([]byte, error)
}

// Options bounds and steers what a series reader accepts.
type Options struct {
	// MaxVoxels caps columns × rows × slices before the volume is allocated; 0 means
	// volume.DefaultMaxVoxels.
	MaxVoxels int64
	// Series picks one SeriesInstanceUID when the files hold several series (NoUID: the
	// files without one).
	Series string
	// Progress, when set, is called after each slice Volume decodes, with the slices done and
	// in all (a large JPEG 2000 series takes a minute in a browser), one call at a time.
	Progress func(done, total int)
}

// ErrTooLarge and ErrSeveralSeries mark the refusals a caller may word for its own user
// (the page and the command offer different ways out).
var (
	ErrTooLarge      = errors.New("the series exceeds the voxel limit")
	ErrSeveralSeries = errors.New("the files hold several CT series")
)

// MaxFileBytes bounds one file of a series: a single-frame CT image is well under this, and
// a larger file is not one. A Source returns ErrFileTooLarge for it, and Open skips it.
const MaxFileBytes = 1 << 30

// ErrFileTooLarge and ErrNotDICOM, returned by a Source's Open, make Open skip that file
// (a source may say so from the file's size or first 132 bytes without reading it whole).
var (
	ErrFileTooLarge = errors.New("file too large for one DICOM image")
	ErrNotDICOM     = errNotDICOM
)

// Series is a DICOM CT series whose geometry has been read and checked; Volume decodes it.
type Series struct {
	UID, Description, Modality string
	Syntax                     string // transfer syntax of the first slice
	Dims                       [3]int // columns, rows, slices
	Affine                     [4][4]float64
	// Skipped names the files that are not images (no DICOM marker, or no pixel data, such as a
	// DICOMDIR or a dose report, or over MaxFileBytes).
	Skipped []string
	// Notes says where the reading departed from MONAI's order (see orderSlices).
	Notes []string

	slices   []slice // in volume order
	progress func(done, total int)
}

type slice struct {
	src Source
	h   *header // without its pixel bytes (they are read again by Volume)
}

// Open scans the sources and checks that they form one CT series with a regular grid.
func Open(srcs []Source, opt Options) (*Series, error) {
	groups := map[string][]slice{}
	var order []string
	var skipped []string
	for _, src := range srcs {
		b, err := src.Open()
		if errors.Is(err, ErrFileTooLarge) || errors.Is(err, ErrNotDICOM) {
			skipped = append(skipped, src.Name)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.Name, err)
		}
		h, err := parse(b)
		if errors.Is(err, errNotDICOM) || (err == nil && !h.hasPixels) {
			skipped = append(skipped, src.Name)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.Name, err)
		}
		h.pixels, h.fragments = nil, nil
		if _, ok := groups[h.seriesUID]; !ok {
			order = append(order, h.seriesUID)
		}
		groups[h.seriesUID] = append(groups[h.seriesUID], slice{src, h})
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("no DICOM images among %d files", len(srcs))
	}
	uid, err := pickSeries(groups, order, opt.Series)
	if err != nil {
		return nil, err
	}
	s := &Series{UID: uid, Skipped: skipped, slices: groups[uid], progress: opt.Progress}
	first := s.slices[0].h
	s.Description, s.Modality, s.Syntax = first.seriesDesc, first.modality, first.syntax
	if err := s.checkGeometry(); err != nil {
		return nil, fmt.Errorf("series %s: %w", describe(uid, s.slices), err)
	}
	limit := opt.MaxVoxels
	if limit <= 0 {
		limit = volume.DefaultMaxVoxels
	}
	if n := int64(s.Dims[0]) * int64(s.Dims[1]) * int64(s.Dims[2]); n > limit {
		return nil, fmt.Errorf("series %s: %dx%dx%d voxels: %w of %d", describe(uid, s.slices), s.Dims[0], s.Dims[1], s.Dims[2], ErrTooLarge, limit)
	}
	return s, nil
}

// pickSeries chooses the series to read: the one asked for, else the only CT series.
func pickSeries(groups map[string][]slice, order []string, want string) (string, error) {
	if want != "" {
		if want == NoUID {
			want = ""
		}
		if _, ok := groups[want]; ok {
			return want, nil
		}
		return "", fmt.Errorf("no series %s among the files: they hold %s", want, list(groups, order))
	}
	var ct []string
	for _, uid := range order {
		if m := groups[uid][0].h.modality; m == "CT" || m == "" {
			ct = append(ct, uid)
		}
	}
	switch {
	case len(ct) == 1:
		return ct[0], nil
	case len(ct) == 0:
		return "", fmt.Errorf("no CT series among the files (they hold %s): the model segments CT", list(groups, order))
	}
	e := &SeveralSeriesError{list: list(groups, order)}
	for _, uid := range ct {
		h := groups[uid][0].h
		e.Series = append(e.Series, SeriesInfo{UID: cmp.Or(uid, NoUID), Description: strings.TrimSpace(h.seriesDesc), Images: len(groups[uid])})
	}
	return "", e
}

// NoUID names, in Options.Series and SeriesInfo.UID, the files without a SeriesInstanceUID
// (anonymisers remove it); a UID holds only digits and dots, so it cannot be one.
const NoUID = "-"

// SeriesInfo describes one CT series found among the files.
type SeriesInfo struct {
	UID, Description string
	Images           int
}

// SeveralSeriesError is ErrSeveralSeries with the CT series found, for a caller to offer.
type SeveralSeriesError struct {
	Series []SeriesInfo
	list   string // every series, CT or not, for the message
}

func (e *SeveralSeriesError) Error() string {
	return fmt.Sprintf("%v (%d), choose one by its SeriesInstanceUID: %s", ErrSeveralSeries, len(e.Series), e.list)
}

func (e *SeveralSeriesError) Is(target error) bool { return target == ErrSeveralSeries }

func list(groups map[string][]slice, order []string) string {
	var parts []string
	for _, uid := range order {
		parts = append(parts, describe(uid, groups[uid]))
	}
	return strings.Join(parts, "; ")
}

func describe(uid string, sl []slice) string {
	h := sl[0].h
	d := h.modality
	if h.seriesDesc != "" {
		d += " " + strings.TrimSpace(h.seriesDesc)
	}
	if uid == "" {
		uid = NoUID + " (no SeriesInstanceUID)"
	}
	return fmt.Sprintf("%s (%s, %d images)", uid, strings.TrimSpace(d), len(sl))
}

// checkGeometry verifies that the slices share one image plane and lie at equal steps along
// a line, orders them, and builds the affine.
func (s *Series) checkGeometry() error {
	if s.Modality != "" && s.Modality != "CT" {
		return fmt.Errorf("modality %s: the model segments CT", s.Modality)
	}
	if len(s.slices) < 2 {
		return fmt.Errorf("a single image: a CT series needs at least 2 slices")
	}
	f := s.slices[0].h
	for _, sl := range s.slices {
		h := sl.h
		if err := h.checkPixelFormat(); err != nil {
			return fmt.Errorf("%s: %w", sl.src.Name, err)
		}
		switch {
		case h.position == nil || h.orientation == nil || h.pixelSpacing == nil:
			return fmt.Errorf("%s: no ImagePositionPatient, ImageOrientationPatient or PixelSpacing", sl.src.Name)
		case h.rows != f.rows || h.cols != f.cols:
			return fmt.Errorf("%s is %dx%d, %s is %dx%d: one series must have one image size", sl.src.Name, h.cols, h.rows, s.slices[0].src.Name, f.cols, f.rows)
		case !near(h.orientation, f.orientation, 1e-4):
			return fmt.Errorf("%s and %s differ in ImageOrientationPatient", sl.src.Name, s.slices[0].src.Name)
		case !near(h.pixelSpacing, f.pixelSpacing, 1e-4*f.pixelSpacing[0]):
			return fmt.Errorf("%s and %s differ in PixelSpacing", sl.src.Name, s.slices[0].src.Name)
		}
	}
	row, col := f.orientation[:3], f.orientation[3:]
	if math.Abs(norm(row)-1) > 1e-3 || math.Abs(norm(col)-1) > 1e-3 || math.Abs(dot(row, col)) > 1e-3 {
		return fmt.Errorf("ImageOrientationPatient %v is not two orthogonal unit vectors", f.orientation)
	}
	if f.pixelSpacing[0] <= 0 || f.pixelSpacing[1] <= 0 {
		return fmt.Errorf("PixelSpacing %v must be positive", f.pixelSpacing)
	}
	step, err := s.orderSlices(cross(row, col))
	if err != nil {
		return err
	}
	// Voxel (i, j, k) = column i, row j, slice k; LPS → RAS negates the first two world axes.
	origin := s.slices[0].h.position
	dc, dr := f.pixelSpacing[1], f.pixelSpacing[0]
	lps := [3][4]float64{}
	for a := 0; a < 3; a++ {
		lps[a] = [4]float64{row[a] * dc, col[a] * dr, step[a], origin[a]}
	}
	for a := 0; a < 3; a++ {
		sign := 1.0
		if a < 2 {
			sign = -1
		}
		for c := 0; c < 4; c++ {
			s.Affine[a][c] = sign * lps[a][c]
		}
	}
	s.Affine[3] = [4]float64{0, 0, 0, 1}
	s.Dims = [3]int{f.cols, f.rows, len(s.slices)}
	return nil
}

// orderSlices sorts the slices as MONAI does (by InstanceNumber) and returns the step between
// consecutive slices, (last − first)/(n − 1), after checking that every consecutive pair is
// that step apart. Where the instance numbers are missing, repeated, or do not follow the
// positions (MONAI would stack such slices out of place), the slices are ordered by their
// position along the plane's normal instead, and a note says so.
func (s *Series) orderSlices(normal []float64) ([]float64, error) {
	byPosition := func() {
		sort.SliceStable(s.slices, func(a, b int) bool {
			return dot(s.slices[a].h.position, normal) < dot(s.slices[b].h.position, normal)
		})
	}
	seen := map[int]bool{}
	numbered := true
	for _, sl := range s.slices {
		numbered = numbered && sl.h.hasInstance && !seen[sl.h.instance]
		seen[sl.h.instance] = true
	}
	if numbered {
		sort.SliceStable(s.slices, func(a, b int) bool { return s.slices[a].h.instance < s.slices[b].h.instance })
		step, err := s.regularStep()
		if err == nil {
			return step, nil
		}
		byPosition()
		if step, err2 := s.regularStep(); err2 == nil {
			s.Notes = append(s.Notes, "the instance numbers do not follow the slice positions; slices ordered by position")
			return step, nil
		}
		return nil, err
	}
	byPosition()
	s.Notes = append(s.Notes, "instance numbers missing or repeated; slices ordered by position")
	return s.regularStep()
}

// regularStep checks that consecutive slices are one constant step apart (a missing slice,
// a repeated position or a change of spacing would put the voxels in the wrong place).
func (s *Series) regularStep() ([]float64, error) {
	n := len(s.slices)
	first, last := s.slices[0].h.position, s.slices[n-1].h.position
	step := make([]float64, 3)
	for a := range step {
		step[a] = (last[a] - first[a]) / float64(n-1)
	}
	size := norm(step)
	if size < 1e-3 {
		return nil, fmt.Errorf("the slices share one position: not a volume")
	}
	tol := math.Max(1e-3, 0.01*size)
	for k := 1; k < n; k++ {
		p, q := s.slices[k-1].h.position, s.slices[k].h.position
		d := []float64{q[0] - p[0], q[1] - p[1], q[2] - p[2]}
		if !near(d, step, tol) {
			return nil, fmt.Errorf("slices %s and %s are %.4g mm apart, the series' step is %.4g mm: a missing slice, or varying spacing (not supported)",
				s.slices[k-1].src.Name, s.slices[k].src.Name, norm(d), size)
		}
	}
	return step, nil
}

// Volume decodes every slice into one float32 volume of HU values, indexed column + C·(row + R·slice).
//
// The first slice is decoded before the volume is allocated: compressed pixel data can code a
// flat image in a few bytes, so its size is believed only once one slice has decoded to it.
func (s *Series) Volume() (*volume.Volume, error) {
	nx, ny, nz := s.Dims[0], s.Dims[1], s.Dims[2]
	first := make([]float32, nx*ny)
	if err := s.decodeSlice(0, first); err != nil {
		return nil, err
	}
	if s.progress != nil {
		s.progress(1, nz)
	}
	v := &volume.Volume{Dims: s.Dims, Affine: s.Affine, Data: make([]float32, nx*ny*nz)}
	copy(v.Data, first)
	workers := min(runtime.GOMAXPROCS(0), nz)
	errs := make([]error, nz)
	var wg sync.WaitGroup
	var mu sync.Mutex // serialises the progress calls
	done := 1
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				errs[k] = s.decodeSlice(k, v.Data[k*nx*ny:(k+1)*nx*ny])
				if s.progress != nil {
					mu.Lock()
					done++
					s.progress(done, nz)
					mu.Unlock()
				}
			}
		}()
	}
	for k := 1; k < nz; k++ {
		next <- k
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return v, nil
}

func (s *Series) decodeSlice(k int, out []float32) error {
	sl := s.slices[k]
	if sl.src.Open == nil {
		return fmt.Errorf("%s: the series was detached from its files", sl.src.Name)
	}
	b, err := sl.src.Open()
	if err != nil {
		return fmt.Errorf("%s: %w", sl.src.Name, err)
	}
	h, err := parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", sl.src.Name, err)
	}
	if err := h.checkPixelFormat(); err != nil {
		return fmt.Errorf("%s: %w", sl.src.Name, err)
	}
	if h.rows != sl.h.rows || h.cols != sl.h.cols {
		return fmt.Errorf("%s changed while it was read", sl.src.Name)
	}
	if err := h.decode(out); err != nil {
		return fmt.Errorf("%s: %w", sl.src.Name, err)
	}
	return nil
}

// Detach drops the series' sources, and with them whatever their Open reaches (a browser's
// file bytes), keeping the headers a segmentation of the series refers to. Volume cannot be
// called afterwards.
func (s *Series) Detach() {
	for i := range s.slices {
		s.slices[i].src.Open = nil
	}
}

// Header describes the series' grid as a NIfTI header, for outputs written on the input's grid
// (scanner coordinates, millimetres).
func (s *Series) Header() *volume.Header {
	v := volume.Volume{Affine: s.Affine}
	desc := strings.TrimSpace("DICOM " + s.Description) // the NIfTI writer keeps 79 bytes of it
	return &volume.Header{Version: 1, Dims: s.Dims, Datatype: 16, Pixdim: v.Spacing(), Qfac: 1,
		Affine: s.Affine, AffineSource: "dicom", SformCode: 1, QformCode: 1, XYZTUnits: 2, Description: desc}
}

// Dir lists the files under a folder (recursively, hidden ones excepted) as sources, in name order.
// A folder given as a link is followed, and so are links to files in it (PACS exports and
// viewers' caches use both); links to folders inside are not, so a cycle cannot arise.
func Dir(dir string) ([]Source, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	var srcs []Source
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && path != root {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		regular := d.Type().IsRegular()
		if d.Type()&fs.ModeSymlink != 0 {
			st, err := os.Stat(path)
			regular = err == nil && st.Mode().IsRegular()
		}
		if regular {
			name := path // as the user named the folder, for messages
			if rel, err := filepath.Rel(root, path); err == nil {
				name = filepath.Join(dir, rel)
			}
			srcs = append(srcs, Source{Name: name, Open: func() ([]byte, error) { return readFile(path) }})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("%s: no files", dir)
	}
	return srcs, nil
}

// readFile reads a DICOM file whole, after its first 132 bytes say it is one: other files in
// the folder (a large video, say) are neither read nor bounded.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, 132)
	if _, err := io.ReadFull(f, head); err != nil || !IsDICOM(head) {
		return nil, errNotDICOM
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxFileBytes {
		return nil, ErrFileTooLarge // not a CT slice: skipped, whatever else it is
	}
	b := make([]byte, st.Size())
	copy(b, head)
	if _, err := io.ReadFull(f, b[len(head):]); err != nil {
		return nil, err
	}
	return b, nil
}

// ReadDir reads the CT series in a folder.
func ReadDir(dir string, opt Options) (*volume.Volume, *Series, error) {
	srcs, err := Dir(dir)
	if err != nil {
		return nil, nil, err
	}
	s, err := Open(srcs, opt)
	if err != nil {
		return nil, nil, err
	}
	v, err := s.Volume()
	if err != nil {
		return nil, nil, err
	}
	return v, s, nil
}

func dot(a, b []float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func norm(a []float64) float64   { return math.Sqrt(dot(a, a)) }
func cross(a, b []float64) []float64 {
	return []float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}

// near reports whether a and b differ by at most tol in every component.
func near(a, b []float64, tol float64) bool {
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol {
			return false
		}
	}
	return true
}
