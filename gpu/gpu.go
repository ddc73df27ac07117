// Package gpu is the small portable runtime every shader runs through: buffers, a pipeline
// cache keyed by rendered WGSL, command submission, and waiting/reading back in a way that
// works on both backends of github.com/cogentcore/webgpu (wgpu-native natively, the browser's
// WebGPU under js/wasm). Device creation lives at the edges (native/ and wasm/); nothing here
// knows which side it runs on.
package gpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cogentcore/webgpu/wgpu"
)

// Limits are the device limits the planners need (a subset of wgpu.Limits, so the browser
// side can fill them from its own device without a wgpu.SupportedLimits).
type Limits struct {
	MaxStorageBufferBindingSize uint64
	MaxBufferSize               uint64
	MaxStorageBuffersPerStage   uint32
	MaxWorkgroupStorageSize     uint32
	MaxInvocationsPerWorkgroup  uint32
	MaxWorkgroupsPerDimension   uint32
	// DispatchFLOPs is not a WebGPU limit but how much work one dispatch may carry on this
	// device: 0 (no cap) for GPUs; about 1 GFLOP for CPU adapters (lavapipe, SwiftShader),
	// where a whole 96^3 layer would run for seconds in one dispatch.
	DispatchFLOPs float64
}

// CPUDispatchFLOPs is DispatchFLOPs for CPU adapters.
const CPUDispatchFLOPs = 1e9

// DefaultLimits are WebGPU's defaults: what every conforming adapter gives without asking.
func DefaultLimits() Limits {
	return Limits{
		MaxStorageBufferBindingSize: 128 << 20,
		MaxBufferSize:               256 << 20,
		MaxStorageBuffersPerStage:   8,
		MaxWorkgroupStorageSize:     16 << 10,
		MaxInvocationsPerWorkgroup:  256,
		MaxWorkgroupsPerDimension:   65535,
	}
}

// LimitsFrom converts wgpu limits.
func LimitsFrom(l wgpu.Limits) Limits {
	return Limits{
		MaxStorageBufferBindingSize: l.MaxStorageBufferBindingSize,
		MaxBufferSize:               l.MaxBufferSize,
		MaxStorageBuffersPerStage:   l.MaxStorageBuffersPerShaderStage,
		MaxWorkgroupStorageSize:     l.MaxComputeWorkgroupStorageSize,
		MaxInvocationsPerWorkgroup:  l.MaxComputeInvocationsPerWorkgroup,
		MaxWorkgroupsPerDimension:   l.MaxComputeWorkgroupsPerDimension,
	}
}

// Context is one device with its queue, limits and pipeline cache.
type Context struct {
	Device *wgpu.Device
	Queue  *wgpu.Queue
	Limits Limits
	// Adapter describes the adapter for reports ("lavapipe (Vulkan, cpu)").
	Adapter string
	// Backend is the native API under WebGPU ("Vulkan", "Metal", "D3D12"; "" in a browser)
	// and Software says the adapter is a CPU implementation (lavapipe, SwiftShader, WARP).
	Backend  string
	Software bool
	// Timestamps says the device was created with timestamp queries (see Timing).
	Timestamps bool

	mu        sync.Mutex
	pipelines map[string]*Pipeline
	// live and peak count the bytes of buffers created through this context, so a run can
	// report (and a test can check) its real peak GPU memory against the planner's.
	live, peak uint64
	// errFn, when set, returns a pending asynchronous device error (browser side: the
	// uncapturederror event; native: validation errors are returned directly).
	errFn func() error
}

// New wraps a device created by the platform edge.
func New(dev *wgpu.Device, limits Limits, adapter string) *Context {
	return &Context{Device: dev, Queue: dev.GetQueue(), Limits: limits, Adapter: adapter, pipelines: map[string]*Pipeline{}}
}

// SetErrorSource installs a function that reports asynchronous device errors; Wait checks it.
func (c *Context) SetErrorSource(f func() error) { c.errFn = f }

func (c *Context) pendingError() error {
	if c.errFn != nil {
		return c.errFn()
	}
	return nil
}

// Buffer is a storage buffer with its size (GetSize is native-only in wgpu v0.23.0).
type Buffer struct {
	B    *wgpu.Buffer
	Size uint64
	ctx  *Context
}

// Storage usage for every compute buffer: read/write from shaders, uploads, copies out, clears.
const storageUsage = wgpu.BufferUsageStorage | wgpu.BufferUsageCopyDst | wgpu.BufferUsageCopySrc

// NewBuffer creates a storage buffer of size bytes (rounded up to 4), zero-initialised as
// WebGPU guarantees.
func (c *Context) NewBuffer(label string, size uint64) (*Buffer, error) {
	size = (size + 3) &^ 3
	if size == 0 {
		size = 4
	}
	if size > c.Limits.MaxBufferSize {
		return nil, fmt.Errorf("gpu: buffer %s needs %d bytes, over the device's maxBufferSize %d", label, size, c.Limits.MaxBufferSize)
	}
	return c.newBuffer(label, size, storageUsage)
}

// newBuffer creates a buffer of any usage and counts it towards the live bytes until Release.
func (c *Context) newBuffer(label string, size uint64, usage wgpu.BufferUsage) (*Buffer, error) {
	b, err := c.Device.CreateBuffer(&wgpu.BufferDescriptor{Label: label, Size: size, Usage: usage})
	if err != nil {
		return nil, fmt.Errorf("gpu: creating buffer %s (%d bytes): %w", label, size, err)
	}
	c.count(int64(size))
	return &Buffer{B: b, Size: size, ctx: c}, nil
}

// count adds bytes to the live total (a negative delta removes them) and raises the peak.
func (c *Context) count(delta int64) {
	c.mu.Lock()
	c.live = uint64(int64(c.live) + delta)
	c.peak = max(c.peak, c.live)
	c.mu.Unlock()
}

// Release destroys the buffer now (not at garbage collection), so the peak stays honest.
func (b *Buffer) Release() {
	if b == nil || b.B == nil {
		return
	}
	b.B.Destroy()
	b.B.Release()
	b.B = nil
	if b.ctx != nil {
		b.ctx.count(-int64(b.Size))
	}
}

// PeakBytes is the largest total of live buffers since the context was made or ResetPeak.
func (c *Context) PeakBytes() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak
}

// LiveBytes is the total of buffers alive now.
func (c *Context) LiveBytes() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// ResetPeak starts a new peak measurement from the live total.
func (c *Context) ResetPeak() {
	c.mu.Lock()
	c.peak = c.live
	c.mu.Unlock()
}

// Float32Bytes encodes floats little-endian, as every buffer upload wants them.
func Float32Bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	PutFloat32s(out, v)
	return out
}

// PutFloat32s encodes v into dst (at least 4*len(v) bytes), for uploads that reuse one
// buffer: Write copies the bytes before it returns.
func PutFloat32s(dst []byte, v []float32) {
	for i, f := range v {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
	}
}

// Uint32Bytes encodes words little-endian.
func Uint32Bytes(v []uint32) []byte {
	out := make([]byte, 4*len(v))
	for i, w := range v {
		binary.LittleEndian.PutUint32(out[4*i:], w)
	}
	return out
}

// Write uploads bytes at offset.
func (c *Context) Write(b *Buffer, offset uint64, data []byte) error {
	if offset+uint64(len(data)) > b.Size {
		return fmt.Errorf("gpu: write of %d bytes at %d overflows a %d-byte buffer", len(data), offset, b.Size)
	}
	if len(data) == 0 {
		return nil
	}
	if err := writeBuffer(c.Queue, b.B, offset, data); err != nil {
		return fmt.Errorf("gpu: upload: %w", err)
	}
	return nil
}

// waitTick is how long the wait loops sleep between non-blocking polls. Natively callbacks
// only fire inside Poll; in the browser Poll does nothing and sleeping yields to the event
// loop. A blocking Poll(true) is never used: wgpu-native gives up on it after about 5 s while
// the GPU still works, then reports a successful map of zeros.
const waitTick = 200 * time.Microsecond

// Wait blocks until all submitted work is done.
func (c *Context) Wait() error {
	done := false
	if err := onWorkDone(c.Queue, func() { done = true }); err != nil {
		return err
	}
	c.pollUntil(&done)
	return c.pendingError()
}

// pollUntil polls the device until a callback has set *flag.
func (c *Context) pollUntil(flag *bool) {
	for !*flag {
		c.Device.Poll(false, nil)
		if !*flag {
			time.Sleep(waitTick)
		}
	}
}

// Read copies size bytes at offset of b back to the host, through a staging buffer.
func (c *Context) Read(b *Buffer, offset, size uint64) ([]byte, error) {
	r, err := c.ReadAsync(b, offset, size)
	if err != nil {
		return nil, err
	}
	return r.Wait()
}

// Readback is a copy of a buffer range to the host that has been submitted but not yet
// collected. The GPU may run later submissions before Wait collects it, so a caller can queue
// more work first and overlap the transfer (and its own use of the bytes) with it. Natively,
// that is; the browser backend of the binding waits for the map inside ReadAsync, so there it
// is a plain Read.
type Readback struct {
	c       *Context
	staging *Buffer // counted towards the peak like any buffer
	mapped  bool
	ok      bool // the map succeeded
}

// ReadAsync submits a copy of size bytes at offset of b into a staging buffer, behind all work
// submitted so far, and asks for it to be mapped. Exactly one of Wait or Release must follow;
// the staging buffer counts towards the peak until then.
func (c *Context) ReadAsync(b *Buffer, offset, size uint64) (*Readback, error) {
	if offset+size > b.Size || offset%4 != 0 || size%4 != 0 {
		return nil, fmt.Errorf("gpu: read of %d bytes at %d from a %d-byte buffer", size, offset, b.Size)
	}
	staging, err := c.newBuffer("readback", size, wgpu.BufferUsageMapRead|wgpu.BufferUsageCopyDst)
	if err != nil {
		return nil, err
	}
	r := &Readback{c: c, staging: staging}
	fail := func(err error) (*Readback, error) { r.Release(); return nil, err }
	enc, err := c.Device.CreateCommandEncoder(nil)
	if err != nil {
		return fail(err)
	}
	defer enc.Release()
	if err := enc.CopyBufferToBuffer(b.B, offset, staging.B, 0, size); err != nil {
		return fail(fmt.Errorf("gpu: copy for readback: %w", err))
	}
	cmd, err := enc.Finish(nil)
	if err != nil {
		return fail(err)
	}
	c.Queue.Submit(cmd)
	cmd.Release()
	if err := mapRead(staging.B, size, func(ok bool) { r.ok = ok; r.mapped = true }); err != nil {
		// the copy is queued: let it finish before the staging buffer goes
		if werr := c.Wait(); werr != nil {
			err = werr
		}
		return fail(fmt.Errorf("gpu: map for readback: %w", err))
	}
	return r, nil
}

// Wait blocks until the copy is on the host and returns its bytes; the staging buffer is gone
// afterwards, whatever the outcome.
func (r *Readback) Wait() ([]byte, error) {
	defer r.Release()
	r.c.pollUntil(&r.mapped)
	if !r.ok {
		if err := r.c.pendingError(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("gpu: readback failed: the buffer could not be mapped")
	}
	size := r.staging.Size
	out := make([]byte, size)
	copy(out, r.staging.B.GetMappedRange(0, uint(size)))
	r.staging.B.Unmap()
	if err := r.c.pendingError(); err != nil {
		return nil, err
	}
	return out, nil
}

// Release drops the staging buffer without reading it (on an error path; Wait releases by
// itself). It is safe to call more than once.
func (r *Readback) Release() {
	if r != nil {
		r.staging.Release()
	}
}
