// Package labels holds the bundle's 105 class names (0 background, 1..104 structures, from the
// bundle's label map, kept in labels.json) and a colour for each, shared by the label files,
// the statistics and the viewer.
package labels

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

//go:embed labels.json
var raw []byte

// Count is the number of classes including background.
const Count = 105

// Names[i] is the name of class i.
var Names = mustNames()

// Colors[i] is the display colour of class i (background black). The colours are spread
// around the hue circle by the golden angle with alternating lightness, so neighbouring
// indices (often neighbouring organs: vertebrae, ribs, lung lobes) never look alike.
var Colors = makeColors()

func mustNames() []string {
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		panic(fmt.Sprintf("labels.json: %v", err)) // embedded at build time: a bug, not input
	}
	out := make([]string, Count)
	for k, v := range m {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= Count {
			panic(fmt.Sprintf("labels.json: bad index %q", k))
		}
		out[i] = v
	}
	for i, n := range out {
		if n == "" {
			panic(fmt.Sprintf("labels.json: class %d has no name", i))
		}
	}
	return out
}

func makeColors() [][3]uint8 {
	out := make([][3]uint8, Count)
	for i := 1; i < Count; i++ {
		h := math.Mod(float64(i)*137.50776405, 360)
		l := []float64{0.55, 0.42, 0.68}[i%3]
		s := []float64{0.85, 0.7}[i%2]
		out[i] = hsl(h, s, l)
	}
	return out
}

func hsl(h, s, l float64) [3]uint8 {
	c := (1 - math.Abs(2*l-1)) * s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := l - c/2
	var r, g, b float64
	switch {
	case h < 60:
		r, g, b = c, x, 0
	case h < 120:
		r, g, b = x, c, 0
	case h < 180:
		r, g, b = 0, c, x
	case h < 240:
		r, g, b = 0, x, c
	case h < 300:
		r, g, b = x, 0, c
	default:
		r, g, b = c, 0, x
	}
	to := func(v float64) uint8 { return uint8(math.Round(255 * (v + m))) }
	return [3]uint8{to(r), to(g), to(b)}
}
