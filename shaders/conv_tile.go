package shaders

import (
	"fmt"
	"strconv"
	"strings"
)

// ConvTile is the blocking of the tiled 3x3x3 convolution (conv3d_tiled.wgsl); zero fields take
// the defaults. Its text form, for `ctseg bench --tiles` and reports, is MXxMN[xCK][c][p]
// followed by optional /tyN and /tnN: "2x8x4", "8x8x4c", "4x8x4cp/ty4/tn16".
type ConvTile struct {
	MX     int  // x-voxels per invocation (default 2)
	MN     int  // output channels per invocation, a multiple of 4 (default 8)
	CK     int  // cap on input channels staged per chunk, even (default 4)
	Contig bool // MX consecutive x-voxels read as vec4s (MX a multiple of 4), else interleaved
	// Prefetch loads the next chunk's inputs and weights into registers before computing the
	// current one, so global-memory latency overlaps the FMAs (more registers per invocation).
	Prefetch bool
	TY       int // cap on rows per workgroup (default: what the invocation limit allows)
	TN       int // output channels per workgroup, a multiple of 4 (default 32)
}

// ParseConvTile reads a tile's text form.
func ParseConvTile(s string) (ConvTile, error) {
	var t ConvTile
	bad := func() (ConvTile, error) {
		return ConvTile{}, fmt.Errorf("tile %q: want MXxMN[xCK][c][p][/tyN][/tnN], e.g. 2x8x4 or 8x8x4cp/tn16", s)
	}
	parts := strings.Split(s, "/")
	head, prefetch := strings.CutSuffix(parts[0], "p")
	head, contig := strings.CutSuffix(head, "c")
	t.Contig, t.Prefetch = contig, prefetch
	nums := strings.Split(head, "x")
	if len(nums) < 2 || len(nums) > 3 {
		return bad()
	}
	dst := []*int{&t.MX, &t.MN, &t.CK}
	for i, n := range nums {
		v, err := strconv.Atoi(n)
		if err != nil || v <= 0 {
			return bad()
		}
		*dst[i] = v
	}
	for _, p := range parts[1:] {
		var f *int
		switch {
		case strings.HasPrefix(p, "ty"):
			f = &t.TY
		case strings.HasPrefix(p, "tn"):
			f = &t.TN
		default:
			return bad()
		}
		v, err := strconv.Atoi(p[2:])
		if err != nil || v <= 0 {
			return bad()
		}
		*f = v
	}
	if err := t.check(); err != nil {
		return ConvTile{}, fmt.Errorf("tile %q: %w", s, err)
	}
	return t, nil
}

// ParseConvTileList reads comma-separated tiles.
func ParseConvTileList(s string) ([]ConvTile, error) {
	var out []ConvTile
	for _, part := range strings.Split(s, ",") {
		t, err := ParseConvTile(part)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// check refuses tiles no layer can use.
func (t ConvTile) check() error {
	switch {
	case t.MX < 0 || t.MN < 0 || t.CK < 0 || t.TY < 0 || t.TN < 0:
		return fmt.Errorf("negative size")
	case t.MN%4 != 0:
		return fmt.Errorf("%d output channels per invocation: want a multiple of 4", t.MN)
	case t.TN%4 != 0:
		return fmt.Errorf("%d output channels per workgroup: want a multiple of 4", t.TN)
	case t.CK%2 != 0:
		return fmt.Errorf("%d staged input channels: want an even number", t.CK)
	case t.Contig && t.MX%4 != 0:
		return fmt.Errorf("contiguous tiles need a multiple of 4 x-voxels per invocation, not %d", t.MX)
	case t.MX > 16 || t.MN > 32:
		return fmt.Errorf("a %dx%d register tile is too large", t.MX, t.MN)
	}
	return nil
}

// String is the text form ParseConvTile reads.
func (t ConvTile) String() string {
	s := fmt.Sprintf("%dx%d", t.MX, t.MN)
	if t.CK > 0 {
		s += fmt.Sprintf("x%d", t.CK)
	}
	if t.Contig {
		s += "c"
	}
	if t.Prefetch {
		s += "p"
	}
	if t.TY > 0 {
		s += fmt.Sprintf("/ty%d", t.TY)
	}
	if t.TN > 0 {
		s += fmt.Sprintf("/tn%d", t.TN)
	}
	return s
}
