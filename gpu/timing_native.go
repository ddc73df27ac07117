//go:build !js

package gpu

import (
	"encoding/binary"
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"
)

// queries are the timestamp query set and the buffers its results pass through.
type queries struct {
	qs      *wgpu.QuerySet
	resolve *wgpu.Buffer // query results, resolved on the GPU
	staging *wgpu.Buffer // mapped to read them
	bytes   uint64
}

// NewTiming prepares timestamp queries; it fails when the device cannot time.
func (c *Context) NewTiming() (*Timing, error) {
	if !c.Timestamps {
		return nil, fmt.Errorf("gpu: %s offers no timestamp queries", c.Adapter)
	}
	n := uint32(maxTimedDispatches + 1)
	qs, err := c.Device.CreateQuerySet(&wgpu.QuerySetDescriptor{Label: "timestamps", Type: wgpu.QueryTypeTimestamp, Count: n})
	if err != nil {
		return nil, fmt.Errorf("gpu: timestamp queries: %w", err)
	}
	t := &Timing{ctx: c, q: queries{qs: qs, bytes: 8 * uint64(n)}}
	t.Reset()
	q := &t.q
	if q.resolve, err = c.Device.CreateBuffer(&wgpu.BufferDescriptor{Label: "timestamps.resolve", Size: q.bytes, Usage: wgpu.BufferUsageQueryResolve | wgpu.BufferUsageCopySrc}); err == nil {
		q.staging, err = c.Device.CreateBuffer(&wgpu.BufferDescriptor{Label: "timestamps.read", Size: q.bytes, Usage: wgpu.BufferUsageMapRead | wgpu.BufferUsageCopyDst})
	}
	if err != nil {
		t.Release()
		return nil, fmt.Errorf("gpu: timestamp buffers: %w", err)
	}
	c.count(int64(2 * q.bytes)) // device memory like any other: the peak includes it
	return t, nil
}

// Release frees the queries and buffers.
func (t *Timing) Release() {
	if t == nil || t.q.qs == nil {
		return
	}
	q := &t.q
	q.qs.Release()
	for _, b := range []*wgpu.Buffer{q.resolve, q.staging} {
		if b != nil {
			b.Destroy()
			b.Release()
		}
	}
	if q.resolve != nil && q.staging != nil {
		t.ctx.count(-int64(2 * q.bytes))
	}
	*q = queries{}
}

// record encodes ds with a timestamp before each dispatch and after the last, then copies the
// resolved timestamps to the staging buffer.
func (t *Timing) record(enc *wgpu.CommandEncoder, ds []Dispatch) error {
	for i, d := range ds {
		if err := enc.WriteTimestamp(t.q.qs, uint32(i)); err != nil {
			return fmt.Errorf("gpu: timestamp: %w", err)
		}
		pass := enc.BeginComputePass(nil)
		pass.SetPipeline(d.P.P)
		pass.SetBindGroup(0, d.Group, nil)
		pass.DispatchWorkgroups(d.X, d.Y, d.Z)
		pass.End()
		pass.Release()
	}
	n := uint32(len(ds) + 1)
	if err := enc.WriteTimestamp(t.q.qs, n-1); err != nil {
		return fmt.Errorf("gpu: timestamp: %w", err)
	}
	if err := enc.ResolveQuerySet(t.q.qs, 0, n, t.q.resolve, 0); err != nil {
		return fmt.Errorf("gpu: resolving timestamps: %w", err)
	}
	return enc.CopyBufferToBuffer(t.q.resolve, 0, t.q.staging, 0, 8*uint64(n))
}

// collect reads a finished batch's timestamps and adds each dispatch's time to its kind.
func (t *Timing) collect(ds []Dispatch, wallSeconds float64) error {
	size := 8 * uint64(len(ds)+1)
	ok, mapped := false, false
	if err := mapRead(t.q.staging, size, func(s bool) { ok = s; mapped = true }); err != nil {
		return fmt.Errorf("gpu: mapping timestamps: %w", err)
	}
	t.ctx.pollUntil(&mapped)
	if !ok {
		return fmt.Errorf("gpu: reading timestamps failed: the buffer could not be mapped")
	}
	raw := t.q.staging.GetMappedRange(0, uint(size))
	ts := make([]uint64, len(ds)+1)
	for i := range ts {
		ts[i] = binary.LittleEndian.Uint64(raw[8*i:])
	}
	t.q.staging.Unmap()
	t.add(ds, ts, wallSeconds)
	return nil
}
