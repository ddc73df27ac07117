package gpu

import (
	"crypto/sha256"
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"
)

// Access says how a shader binds a buffer.
type Access int

const (
	ReadOnly  Access = iota // var<storage, read>
	ReadWrite               // var<storage, read_write>
	Uniform                 // var<uniform>
)

// Pipeline is a compute pipeline with its explicit layout. The js backend of wgpu v0.23.0 has
// no "auto" layout and no GetBindGroupLayout, so every pipeline declares its bindings.
type Pipeline struct {
	Label    string
	P        *wgpu.ComputePipeline
	Layout   *wgpu.BindGroupLayout
	Bindings []Access
}

// Pipeline compiles WGSL (entry point "main", group 0, bindings 0..n-1 in the given order) or
// returns the cached pipeline for the same text and layout.
func (c *Context) Pipeline(label, code string, bindings []Access) (*Pipeline, error) {
	key := fmt.Sprintf("%x|%v", sha256.Sum256([]byte(code)), bindings)
	c.mu.Lock()
	p, ok := c.pipelines[key]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	entries := make([]wgpu.BindGroupLayoutEntry, len(bindings))
	for i, a := range bindings {
		t := wgpu.BufferBindingTypeReadOnlyStorage
		switch a {
		case ReadWrite:
			t = wgpu.BufferBindingTypeStorage
		case Uniform:
			t = wgpu.BufferBindingTypeUniform
		}
		entries[i] = wgpu.BindGroupLayoutEntry{Binding: uint32(i), Visibility: wgpu.ShaderStageCompute, Buffer: wgpu.BufferBindingLayout{Type: t}}
	}
	bgl, err := c.Device.CreateBindGroupLayout(&wgpu.BindGroupLayoutDescriptor{Label: label, Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("gpu: bind group layout for %s: %w", label, err)
	}
	pl, err := c.Device.CreatePipelineLayout(&wgpu.PipelineLayoutDescriptor{Label: label, BindGroupLayouts: []*wgpu.BindGroupLayout{bgl}})
	if err != nil {
		return nil, fmt.Errorf("gpu: pipeline layout for %s: %w", label, err)
	}
	mod, err := c.Device.CreateShaderModule(&wgpu.ShaderModuleDescriptor{Label: label, WGSLDescriptor: &wgpu.ShaderModuleWGSLDescriptor{Code: code}})
	if err != nil {
		return nil, fmt.Errorf("gpu: compiling shader %s: %w", label, err)
	}
	// no Label: the js backend's ComputePipelineDescriptor has none (wgpu v0.23.0)
	cp, err := c.Device.CreateComputePipeline(&wgpu.ComputePipelineDescriptor{Layout: pl, Compute: wgpu.ProgrammableStageDescriptor{Module: mod, EntryPoint: "main"}})
	if err != nil {
		return nil, fmt.Errorf("gpu: compute pipeline %s: %w", label, err)
	}
	if err := c.pendingError(); err != nil {
		return nil, fmt.Errorf("gpu: shader %s: %w", label, err)
	}
	p = &Pipeline{Label: label, P: cp, Layout: bgl, Bindings: bindings}
	c.mu.Lock()
	c.pipelines[key] = p
	c.mu.Unlock()
	return p, nil
}

// Binding is a buffer range bound to one binding slot; Size 0 means "to the end".
type Binding struct {
	Buf          *Buffer
	Offset, Size uint64
}

// Whole binds a whole buffer.
func Whole(b *Buffer) Binding { return Binding{Buf: b} }

// BindGroup binds the given ranges in slot order, checking each against the device's
// binding-size limit (an over-large binding is a planner bug we want reported, not a device
// error three layers later).
func (c *Context) BindGroup(p *Pipeline, bs ...Binding) (*wgpu.BindGroup, error) {
	if len(bs) != len(p.Bindings) {
		return nil, fmt.Errorf("gpu: %s takes %d bindings, got %d", p.Label, len(p.Bindings), len(bs))
	}
	entries := make([]wgpu.BindGroupEntry, len(bs))
	for i, b := range bs {
		size := b.Size
		if size == 0 {
			size = b.Buf.Size - b.Offset
		}
		if b.Offset+size > b.Buf.Size {
			return nil, fmt.Errorf("gpu: %s binding %d: range %d+%d beyond buffer of %d bytes", p.Label, i, b.Offset, size, b.Buf.Size)
		}
		if p.Bindings[i] != Uniform && size > c.Limits.MaxStorageBufferBindingSize {
			return nil, fmt.Errorf("gpu: %s binding %d is %d bytes, over maxStorageBufferBindingSize %d", p.Label, i, size, c.Limits.MaxStorageBufferBindingSize)
		}
		// Size is always explicit: the js backend sends 0 as a zero-sized binding.
		entries[i] = wgpu.BindGroupEntry{Binding: uint32(i), Buffer: b.Buf.B, Offset: b.Offset, Size: size}
	}
	bg, err := c.Device.CreateBindGroup(&wgpu.BindGroupDescriptor{Label: p.Label, Layout: p.Layout, Entries: entries})
	if err != nil {
		return nil, fmt.Errorf("gpu: bind group for %s: %w", p.Label, err)
	}
	return bg, nil
}

// NewUniform creates a uniform buffer holding data (padded to 16 bytes).
func (c *Context) NewUniform(label string, data []byte) (*Buffer, error) {
	size := uint64((len(data) + 15) &^ 15)
	buf, err := c.newBuffer(label, size, wgpu.BufferUsageUniform|wgpu.BufferUsageCopyDst)
	if err != nil {
		return nil, err
	}
	padded := make([]byte, size)
	copy(padded, data)
	if err := c.Write(buf, 0, padded); err != nil {
		buf.Release()
		return nil, err
	}
	return buf, nil
}
