package gpu

import "sort"

// maxTimedDispatches bounds a timed batch: one timestamp before every dispatch and one after
// the last must fit a query set (wgpu's limit is 8192 queries).
const maxTimedDispatches = 4095

// Timing collects GPU time per dispatch kind from timestamps written between dispatches, each
// in its own compute pass (the binding cannot put timestamps inside a pass, and wgpu separates
// dependent dispatches with barriers anyway). It needs the timestamp-query feature
// (Context.Timestamps); the browser side never has it, as encoder timestamps are native-only.
// A Runner with a Timing waits for each batch (Ahead is ignored) to read its timestamps.
type Timing struct {
	ctx *Context
	q   queries // the platform's query set and buffers

	// Key names the group a dispatch's time is booked to: its Kind unless set (Label gives
	// one row per layer).
	Key func(Dispatch) string

	ticks map[string]uint64
	count map[string]int
	flops map[string]float64
	busy  uint64  // ticks from each batch's first timestamp to its last, summed
	wall  float64 // seconds from each batch's submission to its completion, summed
	ratio float64 // the smallest batch wall time per tick: an upper bound of the tick
}

// KindTime is the GPU time of one dispatch kind (or of whatever Timing.Key groups by).
type KindTime struct {
	Kind       string
	Seconds    float64
	FLOPs      float64
	Dispatches int
}

// tickPeriods are the timestamp periods Vulkan drivers report, in seconds: NVIDIA, ARM,
// lavapipe and MoltenVK count nanoseconds; AMD 10 or 40 ns; Intel 52.083 or 83.333 ns.
var tickPeriods = []float64{1e-9, 10e-9, 40e-9, 52.083e-9, 83.333e-9}

// TickSeconds is the length of one timestamp tick. WebGPU specifies nanoseconds, but wgpu
// passes Vulkan's raw ticks through and the binding does not expose the queue's timestamp
// period. Every batch's timed span lies inside its submit-to-done wall time, so the smallest
// wall time per tick over the batches bounds the period from above (submission overhead only
// adds to it); the period is the largest known one within that bound (2 % slack for clocks),
// or the bound itself when no known period fits.
func (t *Timing) TickSeconds() float64 {
	if t.ratio <= 0 {
		return 1e-9
	}
	best := 0.0
	for _, p := range tickPeriods {
		if p <= 1.02*t.ratio {
			best = p
		}
	}
	if best == 0 {
		return t.ratio
	}
	return best
}

// BusySeconds is the GPU time from the first to the last timestamp of each timed batch,
// summed; WallSeconds the host's submit-to-done time of the same batches. Their difference is
// what submission and waiting cost.
func (t *Timing) BusySeconds() float64 { return float64(t.busy) * t.TickSeconds() }
func (t *Timing) WallSeconds() float64 { return t.wall }

// Kinds lists the time per dispatch kind, longest first.
func (t *Timing) Kinds() []KindTime {
	tick := t.TickSeconds()
	out := make([]KindTime, 0, len(t.ticks))
	for k, v := range t.ticks {
		out = append(out, KindTime{Kind: k, Seconds: float64(v) * tick, FLOPs: t.flops[k], Dispatches: t.count[k]})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Seconds > out[b].Seconds })
	return out
}

// add books one finished batch: ts holds the timestamp before each dispatch and after the last.
func (t *Timing) add(ds []Dispatch, ts []uint64, wallSeconds float64) {
	for i, d := range ds {
		k := d.Kind
		if t.Key != nil {
			k = t.Key(d)
		}
		if ts[i+1] >= ts[i] { // a driver may reset its counter; such a pair is dropped
			t.ticks[k] += ts[i+1] - ts[i]
		}
		t.count[k]++
		t.flops[k] += d.FLOPs
	}
	if span := ts[len(ds)] - ts[0]; ts[len(ds)] > ts[0] {
		t.busy += span
		t.wall += wallSeconds
		if r := wallSeconds / float64(span); t.ratio == 0 || r < t.ratio {
			t.ratio = r
		}
	}
}

// Reset forgets what was collected.
func (t *Timing) Reset() {
	t.ticks, t.count, t.flops, t.busy, t.wall, t.ratio = map[string]uint64{}, map[string]int{}, map[string]float64{}, 0, 0, 0
}
