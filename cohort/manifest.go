// Package cohort holds what `ctseg batch` keeps on disk for a cohort: the manifest of cases it
// reads, the case.json record it writes last for each case, and the summary files that
// `ctseg batch summarize` merges from them. It runs nothing; native/cli drives the GPU.
package cohort

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on a manifest, which may come from anywhere: a file larger than MaxManifestBytes or a
// row wider than MaxColumns is refused before it is held in memory whole. 256 MiB is about a
// million cases with long paths; a cohort larger than that is better split.
const (
	MaxManifestBytes = 256 << 20
	MaxColumns       = 1024
	MaxCaseIDBytes   = 200 // the case's folder name, under the 255 bytes of common file systems
)

var maxManifestBytes int64 = MaxManifestBytes // lowered by a test

// The columns a manifest must (case_id, input) or may (series) have; any other is carried.
const (
	ColCaseID = "case_id"
	ColInput  = "input"
	ColSeries = "series"
)

// Manifest is a parsed manifest: the cases in the file's order, inputs resolved.
type Manifest struct {
	Header []string // the file's columns, in its order
	Cases  []Case
	id     int // column indices
	input  int
	series int // -1 without a series column
}

// Case is one row of a manifest.
type Case struct {
	Index  int    // 0-based position among the cases: shards stride over it
	Line   int    // the line it started on, for messages
	ID     string // the case's folder name under DIR/cases
	Input  string // a NIfTI file or a DICOM folder, absolute (resolved against the manifest's folder)
	Series string // SeriesInstanceUID to read from a DICOM folder ("" the only one, "-" the one without a UID)
	Row    []string
}

// Carried lists the columns other than case_id, input and series, in the file's order: the
// summary repeats them after case_id.
func (m *Manifest) Carried() []string {
	var out []string
	for i, h := range m.Header {
		if i != m.id && i != m.input && i != m.series {
			out = append(out, h)
		}
	}
	return out
}

// CarriedValues are c's values of the carried columns.
func (m *Manifest) CarriedValues(c Case) []string {
	var out []string
	for i, v := range c.Row {
		if i != m.id && i != m.input && i != m.series {
			out = append(out, v)
		}
	}
	return out
}

// Shard returns the cases of shard i of n: every n-th case from the i-th, in the manifest's
// order (a stride, so that shards get similar mixes of a cohort sorted by site or date).
func (m *Manifest) Shard(i, n int) []Case {
	var out []Case
	if n <= 0 || i < 0 || i >= n {
		return nil
	}
	for k := i; k < len(m.Cases); k += n {
		out = append(out, m.Cases[k])
	}
	return out
}

// Encode writes the manifest in its own form (the same columns in the same order) with every
// input absolute, so that the copy kept in DIR and rerun.csv work from any folder. rows picks
// the cases by Index; nil writes them all.
func (m *Manifest) Encode(w io.Writer, rows []Case) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(m.Header); err != nil {
		return err
	}
	if rows == nil {
		rows = m.Cases
	}
	for _, c := range rows {
		if err := cw.Write(c.Row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// ErrManifest marks a manifest that is refused before anything runs.
var ErrManifest = errors.New("manifest")

// Parse reads a manifest CSV: a header holding at least case_id and input (optionally series),
// then one row per case. Relative inputs are resolved against dir (the manifest's folder;
// absolute). Every case id must make a safe, distinct folder name. Problems are reported with
// the line they are on, the first one in full and how many more there are.
func Parse(r io.Reader, name, dir string) (*Manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(b)) > maxManifestBytes {
		return nil, fmt.Errorf("%w %s: larger than %d MiB; split the cohort into several manifests", ErrManifest, name, maxManifestBytes>>20)
	}
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w %s: not UTF-8 text (save it as CSV UTF-8)", ErrManifest, name)
	}
	b = bytes.TrimPrefix(b, []byte("\ufeff")) // spreadsheet programs start UTF-8 CSV with a BOM
	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = 0 // every row as wide as the header
	header, err := cr.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%w %s: empty; want a header with at least case_id,input", ErrManifest, name)
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrManifest, name, csvError(err))
	}
	if len(header) > MaxColumns {
		return nil, fmt.Errorf("%w %s: %d columns; at most %d", ErrManifest, name, len(header), MaxColumns)
	}
	m := &Manifest{id: -1, input: -1, series: -1}
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("%w %s: column %d of the header has no name", ErrManifest, name, i+1)
		}
		if seen[h] {
			return nil, fmt.Errorf("%w %s: the header names column %q twice", ErrManifest, name, h)
		}
		seen[h] = true
		m.Header = append(m.Header, h)
		switch h {
		case ColCaseID:
			m.id = i
		case ColInput:
			m.input = i
		case ColSeries:
			m.series = i
		}
	}
	if m.id < 0 || m.input < 0 {
		return nil, fmt.Errorf("%w %s: the header %q lacks case_id or input (want at least case_id,input)", ErrManifest, name, strings.Join(header, ","))
	}
	if err := checkCarried(m.Carried()); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrManifest, name, err)
	}
	var problems []string
	ids := map[string]Case{} // by folded id: folders collide on case-insensitive file systems
	for {
		row, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// a row of the wrong width or a broken quote: the rest cannot be trusted
			problems = append(problems, csvError(err))
			break
		}
		line, _ := cr.FieldPos(0)
		c := Case{Index: len(m.Cases), Line: line, ID: row[m.id], Row: row}
		if err := CheckCaseID(c.ID); err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", line, err))
		} else if prev, dup := ids[strings.ToLower(c.ID)]; dup {
			if prev.ID == c.ID {
				problems = append(problems, fmt.Sprintf("line %d: case id %q repeats line %d", line, c.ID, prev.Line))
			} else {
				problems = append(problems, fmt.Sprintf("line %d: case id %q differs from %q of line %d only in case (their folders collide on case-insensitive file systems)", line, c.ID, prev.ID, prev.Line))
			}
		} else {
			ids[strings.ToLower(c.ID)] = c
		}
		in := row[m.input]
		if strings.TrimSpace(in) == "" {
			problems = append(problems, fmt.Sprintf("line %d: case %q has no input", line, c.ID))
		} else {
			if !filepath.IsAbs(in) {
				in = filepath.Join(dir, in)
			}
			c.Input = filepath.Clean(in)
		}
		if m.series >= 0 {
			c.Series = strings.TrimSpace(row[m.series])
		}
		c.Row = append([]string(nil), row...)
		c.Row[m.input] = c.Input
		m.Cases = append(m.Cases, c)
	}
	if len(problems) > 0 {
		more := ""
		if len(problems) > 1 {
			more = fmt.Sprintf(" (and %d more problems)", len(problems)-1)
		}
		return nil, fmt.Errorf("%w %s: %s%s", ErrManifest, name, problems[0], more)
	}
	if len(m.Cases) == 0 {
		return nil, fmt.Errorf("%w %s: no cases under the header", ErrManifest, name)
	}
	return m, nil
}

// csvError words encoding/csv's errors ("record on line 3: wrong number of fields") for a user.
func csvError(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return fmt.Sprintf("line %d: not as many fields as the header has columns", pe.StartLine)
		}
		return fmt.Sprintf("line %d: %v", pe.Line, pe.Err)
	}
	return err.Error()
}

// CheckCaseID refuses a case id that would not make one safe folder of its own: empty, too
// long, with leading or trailing spaces, hidden (a leading dot; it also covers . and ..), with a
// path separator, a control character or a character Windows forbids in names.
func CheckCaseID(id string) error {
	switch {
	case id == "":
		return errors.New("empty case id")
	case len(id) > MaxCaseIDBytes:
		return fmt.Errorf("case id %.20q... is %d bytes long; at most %d", id, len(id), MaxCaseIDBytes)
	case strings.TrimSpace(id) != id:
		return fmt.Errorf("case id %q has leading or trailing spaces", id)
	case strings.HasPrefix(id, "."):
		return fmt.Errorf("case id %q is path-like: it starts with a dot", id)
	}
	for _, r := range id {
		if r == '/' || r == '\\' {
			return fmt.Errorf("case id %q is path-like: it holds %q", id, r)
		}
		if unicode.IsControl(r) || strings.ContainsRune(`<>:"|?*`, r) {
			return fmt.Errorf("case id %q holds %q, which cannot be in a folder name on every system", id, r)
		}
	}
	return nil
}

// reservedColumns are the summary's own column names: a carried column of the same name would
// make them ambiguous.
var reservedColumns = append(append([]string{ColCaseID, ColInput, ColSeries}, StatsColumns...), "touches_border", "mean_confidence")

func checkCarried(cols []string) error {
	for _, c := range cols {
		for _, r := range reservedColumns {
			if c == r {
				return fmt.Errorf("column %q is one of the summary's own columns: rename it", c)
			}
		}
		if strings.HasSuffix(c, volumeSuffix) {
			return fmt.Errorf("column %q ends like the summary's volume columns (%s): rename it", c, volumeSuffix)
		}
	}
	return nil
}

// Within checks that every case of m is a case of full, with the same columns and values: a
// batch's folder keeps its whole manifest, and takes again all or part of it (rerun.csv).
func (m *Manifest) Within(full *Manifest) error {
	if !slices.Equal(m.Header, full.Header) {
		return fmt.Errorf("its columns %q are not %q", strings.Join(m.Header, ","), strings.Join(full.Header, ","))
	}
	byID := make(map[string]Case, len(full.Cases))
	for _, c := range full.Cases {
		byID[c.ID] = c
	}
	for _, c := range m.Cases {
		f, ok := byID[c.ID]
		if !ok {
			return fmt.Errorf("case %q (line %d) is not one of its cases", c.ID, c.Line)
		}
		if !slices.Equal(c.Row, f.Row) {
			return fmt.Errorf("case %q (line %d) differs from its row", c.ID, c.Line)
		}
	}
	return nil
}
