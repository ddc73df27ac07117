package model

import "fmt"

// SlidingWindowLabels is the CPU sliding window of the network's features followed by the
// head and argmax, as HeadArgmax(SlidingWindow(x, opt, F, n.Features)) computes it, with the
// same float32 operations in the same order, so the labels are the same bit for bit. It holds
// the blended features of ROI[0] padded D-slices instead of the whole volume's (1.4 GB instead
// of 4.3 GB for 287x287x397 at 1.5 mm): windows come in plan order, whose first axis is
// outermost, so a slice is final, and goes through the head, once a window row starts after
// it. progress, when set, is called after every window; an error from it stops the run.
func (n *Net) SlidingWindowLabels(x *Tensor, opt WindowOptions, progress func(done, total int) error) ([]uint8, error) {
	if err := checkTensor("sliding window input", x); err != nil {
		return nil, err
	}
	plan, err := PlanWindows(x.D, x.H, x.W, opt)
	if err != nil {
		return nil, err
	}
	padded, err := PadReplicate(x, plan.PadBefore, plan.PadAfter)
	if err != nil {
		return nil, err
	}
	weights := plan.ImportanceMap()
	if weights == nil {
		return nil, fmt.Errorf("sliding window: no importance map for roi %v, sigma scale %v", plan.ROI, plan.SigmaScale)
	}
	roi, pd := plan.ROI, plan.Padded
	f := n.Cfg.InitFilters
	slots := roi[0]
	plane := pd[1] * pd[2]
	ring := make([]float32, f*slots*plane) // [F][slot][H][W], slot = padded D-slice % slots
	count := make([]float32, slots*plane)  // the importance weights summed so far
	out := make([]uint8, x.Voxels())

	// finish runs the head over padded D-slices [z0, z1) and clears their slots for reuse.
	finish := func(z0, z1 int) {
		parallelFor(z1-z0, func(i int) {
			z := z0 + i
			slot := z % slots
			if d := z - plan.PadBefore[0]; d >= 0 && d < x.D {
				feat := make([]float32, f)
				for h := 0; h < x.H; h++ {
					for w := 0; w < x.W; w++ {
						p := slot*plane + (h+plan.PadBefore[1])*pd[2] + w + plan.PadBefore[2]
						for c := range feat {
							feat[c] = ring[c*slots*plane+p] / count[p] // Blender.Result's division
						}
						out[(d*x.H+h)*x.W+w] = n.argmax1(feat)
					}
				}
			}
			clear(count[slot*plane : (slot+1)*plane])
			for c := 0; c < f; c++ {
				clear(ring[(c*slots+slot)*plane : (c*slots+slot+1)*plane])
			}
		})
	}

	// add blends one window's features (and weights) into the ring, as Blender.Add does.
	win := roi[0] * roi[1] * roi[2]
	add := func(s [3]int, feat *Tensor) {
		parallelFor(f+1, func(c int) { // channel f is the weight sum
			for z := range roi[0] {
				slot := (s[0] + z) % slots
				for y := range roi[1] {
					r := z*roi[1] + y
					off := slot*plane + (s[1]+y)*pd[2] + s[2]
					wr := weights[r*roi[2] : (r+1)*roi[2]]
					if c == f {
						dst := count[off : off+roi[2]]
						for i := range dst {
							dst[i] += wr[i]
						}
						continue
					}
					dst := ring[c*slots*plane+off : c*slots*plane+off+roi[2]]
					l := feat.Data[c*win+r*roi[2] : c*win+(r+1)*roi[2]]
					for i := range dst {
						// rounded on its own, as in Blender.Add
						dst[i] += float32(l[i] * wr[i])
					}
				}
			}
		})
	}

	windows := plan.Windows()
	finished := 0
	for i, s := range windows {
		if s[0] > finished { // a new row: no later window reaches the slices before it
			finish(finished, s[0])
			finished = s[0]
		}
		w, err := Crop(padded, s, roi)
		if err != nil {
			return nil, err
		}
		feat, err := n.Features(w)
		if err != nil {
			return nil, fmt.Errorf("sliding window %d/%d at %v: %w", i+1, len(windows), s, err)
		}
		if feat.C != f || feat.D != roi[0] || feat.H != roi[1] || feat.W != roi[2] {
			return nil, fmt.Errorf("sliding window: features [%d %d %d %d], want [%d %d %d %d]", feat.C, feat.D, feat.H, feat.W, f, roi[0], roi[1], roi[2])
		}
		add(s, feat)
		if progress != nil {
			if err := progress(i+1, len(windows)); err != nil {
				return nil, err
			}
		}
	}
	finish(finished, pd[0])
	return out, nil
}
