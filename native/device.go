//go:build !js

// Package native creates the GPU device for native builds (wgpu-native through cgo) and holds
// the ctseg command's host code. It avoids the traps measured in ../shared/notes/webgpu-go.md:
// the backend is chosen explicitly, limits are raised to what the adapter offers, no
// device-lost callback is installed (it panics under cgocheck), and waiting never uses a
// blocking poll (see package gpu).
package native

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/cogentcore/webgpu/wgpu"

	"ctseg/gpu"
)

// DeviceOptions choose the adapter.
type DeviceOptions struct {
	// Backend: "vulkan" (the default on Linux), "gl", or "any" (the default on macOS and
	// Windows: Metal, D3D12 or Vulkan).
	Backend string
	// DefaultLimits requests only WebGPU's default limits (what a browser gives without
	// asking), to prove a plan fits them.
	DefaultLimits bool
	// Timestamps asks for timestamp queries where the adapter offers them (for benchmarks;
	// gpu.Context.Timestamps says whether it got them).
	Timestamps bool
	// Adapter chooses among several adapters (a node with several GPUs, where Vulkan ignores
	// CUDA_VISIBLE_DEVICES): a number is an index in the order Adapters lists them, anything
	// else must be found (case-insensitive) in the name of exactly one adapter. Empty: the
	// high-performance adapter wgpu prefers.
	Adapter string
}

// AdapterInfo describes one adapter for `ctseg adapters`.
type AdapterInfo struct {
	Index   int
	Name    string // what Open's context reports: "NAME (backend, type)"
	Vendor  string
	Backend string
	Type    string
}

// Adapters lists the adapters of backend ("" as in DeviceOptions), in the order Adapter's
// indices count.
func Adapters(backend string) ([]AdapterInfo, error) {
	backends, err := backendFlags(backend)
	if err != nil {
		return nil, err
	}
	ads := instance(backends).EnumerateAdapters(&wgpu.InstanceEnumerateAdapterOptons{Backends: backends})
	out := make([]AdapterInfo, len(ads))
	for i, ad := range ads {
		out[i] = describe(i, ad.GetInfo())
		ad.Release()
	}
	return out, nil
}

func describe(i int, info wgpu.AdapterInfo) AdapterInfo {
	return AdapterInfo{Index: i, Name: fmt.Sprintf("%s (%s, %s)", adapterName(info), info.BackendType, info.AdapterType),
		Vendor: info.VendorName, Backend: info.BackendType.String(), Type: info.AdapterType.String()}
}

// chooseAdapter finds DeviceOptions.Adapter among the enumerated adapters and releases the others.
func chooseAdapter(inst *wgpu.Instance, backends wgpu.InstanceBackend, want string) (*wgpu.Adapter, error) {
	ads := inst.EnumerateAdapters(&wgpu.InstanceEnumerateAdapterOptons{Backends: backends})
	var names []string
	pick := -1
	ambiguous := false
	if n, err := strconv.Atoi(want); err == nil {
		if n >= 0 && n < len(ads) {
			pick = n
		}
	} else {
		for i, ad := range ads {
			info := ad.GetInfo()
			d := describe(i, info)
			hay := strings.ToLower(strings.Join([]string{d.Name, info.Name, info.DriverDescription, info.VendorName}, " "))
			if strings.Contains(hay, strings.ToLower(want)) {
				ambiguous = pick >= 0
				pick = i
			}
		}
	}
	for i, ad := range ads {
		names = append(names, fmt.Sprintf("%d: %s", i, describe(i, ad.GetInfo()).Name))
		if i != pick || ambiguous {
			ad.Release()
		}
	}
	switch {
	case len(ads) == 0:
		return nil, ErrNoAdapter
	case ambiguous:
		return nil, fmt.Errorf("adapter %q names several adapters: give its index (%s)", want, strings.Join(names, "; "))
	case pick < 0:
		return nil, fmt.Errorf("adapter %q: no such adapter (%s)", want, strings.Join(names, "; "))
	}
	return ads[pick], nil
}

// ErrNoAdapter is returned when no GPU adapter exists; the message says what to install.
var ErrNoAdapter = errors.New("no GPU adapter found: install a Vulkan driver or use --device cpu (or auto, which falls back to the CPU)")

// Open creates a device and returns it wrapped in a gpu.Context.
func Open(opt DeviceOptions) (*gpu.Context, error) {
	backends, err := backendFlags(opt.Backend)
	if err != nil {
		return nil, err
	}
	inst := instance(backends)
	var ad *wgpu.Adapter
	if opt.Adapter != "" {
		if ad, err = chooseAdapter(inst, backends, opt.Adapter); err != nil {
			return nil, err
		}
	} else {
		ad, err = inst.RequestAdapter(&wgpu.RequestAdapterOptions{PowerPreference: wgpu.PowerPreferenceHighPerformance})
		if err != nil || ad == nil {
			return nil, ErrNoAdapter
		}
	}
	info := ad.GetInfo()
	lim := ad.GetLimits().Limits
	req := lim
	if opt.DefaultLimits {
		req = wgpu.DefaultLimits()
	}
	// The binding's GetLimits (cogentcore/webgpu v0.23.0) chains a malloc'd extras struct
	// without setting its sType, so wgpu-native never fills it and MaxPushConstantSize is
	// whatever the heap held (measured: 1, 4954560, ...). Passed back as a requirement, a large
	// value made device creation fail in about one process in 25. We use no push constants.
	req.MaxPushConstantSize = wgpu.LimitU32Undefined
	var features []wgpu.FeatureName
	if opt.Timestamps && ad.HasFeature(wgpu.FeatureNameTimestampQuery) {
		features = append(features, wgpu.FeatureNameTimestampQuery)
	}
	dev, err := ad.RequestDevice(&wgpu.DeviceDescriptor{Label: "ctseg", RequiredLimits: &wgpu.RequiredLimits{Limits: req}, RequiredFeatures: features})
	if err != nil && len(features) > 0 {
		// timestamps are a convenience for benchmarks; a driver that offers them but will not
		// create a device with them still runs everything else
		features = nil
		dev, err = ad.RequestDevice(&wgpu.DeviceDescriptor{Label: "ctseg", RequiredLimits: &wgpu.RequiredLimits{Limits: req}})
	}
	if err != nil {
		return nil, fmt.Errorf("creating a device on %s: %w", info.Name, err)
	}
	limits := gpu.LimitsFrom(dev.GetLimits().Limits)
	if limits.MaxStorageBufferBindingSize == 0 {
		limits = gpu.LimitsFrom(req)
	}
	if info.AdapterType == wgpu.AdapterTypeCPU {
		limits.DispatchFLOPs = gpu.CPUDispatchFLOPs
	}
	ctx := gpu.New(dev, limits, describe(0, info).Name)
	ctx.Timestamps = len(features) > 0
	ctx.Backend, ctx.Software = info.BackendType.String(), info.AdapterType == wgpu.AdapterTypeCPU
	return ctx, nil
}

// backendFlags maps CTSEG_BACKEND's values to wgpu's backend set.
func backendFlags(backend string) (wgpu.InstanceBackend, error) {
	switch strings.ToLower(backend) {
	case "":
		// Vulkan on Linux (what the tests pin); elsewhere the platform's own API: Metal on
		// macOS (no Vulkan there without MoltenVK), D3D12 or Vulkan on Windows.
		if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
			return wgpu.InstanceBackendPrimary, nil
		}
		return wgpu.InstanceBackendVulkan, nil
	case "vulkan":
		return wgpu.InstanceBackendVulkan, nil
	case "gl":
		return wgpu.InstanceBackendGL, nil
	case "any":
		return wgpu.InstanceBackendPrimary | wgpu.InstanceBackendGL, nil
	}
	return 0, fmt.Errorf("unknown GPU backend %q (want vulkan, gl or any)", backend)
}

// instances keeps one wgpu instance per backend set for the process. The binding's
// CreateInstance (cogentcore/webgpu v0.23.0) passes C.malloc'd InstanceExtras whose flags and
// gles3MinorVersion are left uninitialised; a later instance can get recycled garbage there
// and wgpu-native aborts the process ("Unknown gles3 minor version"). The first malloc of a
// process is fresh memory, so creating each instance once avoids the trap.
var instances = struct {
	sync.Mutex
	m map[wgpu.InstanceBackend]*wgpu.Instance
}{m: map[wgpu.InstanceBackend]*wgpu.Instance{}}

func instance(backends wgpu.InstanceBackend) *wgpu.Instance {
	instances.Lock()
	defer instances.Unlock()
	inst, ok := instances.m[backends]
	if !ok {
		if os.Getenv("XDG_RUNTIME_DIR") == "" {
			// Mesa warns on every start without it; harmless, but noise on a user's terminal.
			os.Setenv("XDG_RUNTIME_DIR", os.TempDir())
		}
		// wgpu-native logs warnings such as a missing swapchain colour-space extension on
		// every start; they concern windows we never open.
		wgpu.SetLogLevel(wgpu.LogLevelError)
		inst = wgpu.CreateInstance(&wgpu.InstanceDescriptor{Backends: backends})
		instances.m[backends] = inst
	}
	return inst
}

// adapterName picks a readable name: wgpu-native puts the device id in Name and the driver's
// product string ("llvmpipe (LLVM 15.0.6, 256 bits)", "NVIDIA H100 ...") in the description.
func adapterName(info wgpu.AdapterInfo) string {
	for _, s := range []string{info.DriverDescription, info.Name, info.VendorName} {
		if s != "" && !strings.HasPrefix(s, "0x") {
			return s
		}
	}
	return fmt.Sprintf("vendor %#x device %#x", info.VendorId, info.DeviceId)
}

// Adapter is the adapter Open would use, as found without creating a device.
type Adapter struct {
	Name, Type, Backend string
	// Software: a CPU implementation of Vulkan (Mesa's lavapipe/llvmpipe, SwiftShader). It
	// runs the shaders correctly but on the same cores as ctseg's own CPU path, slower.
	Software bool
}

// Probe returns the adapter Open would use (same backend choice, same preference), or
// ErrNoAdapter.
func Probe(backend string) (Adapter, error) {
	backends, err := backendFlags(backend)
	if err != nil {
		return Adapter{}, err
	}
	ad, err := instance(backends).RequestAdapter(&wgpu.RequestAdapterOptions{PowerPreference: wgpu.PowerPreferenceHighPerformance})
	if err != nil || ad == nil {
		return Adapter{}, ErrNoAdapter
	}
	defer ad.Release()
	info := ad.GetInfo()
	name := adapterName(info)
	return Adapter{Name: name, Type: info.AdapterType.String(), Backend: info.BackendType.String(),
		Software: info.AdapterType == wgpu.AdapterTypeCPU || softwareName(name)}, nil
}

// softwareName recognises the software drivers by name too, for a driver that reports
// another adapter type.
func softwareName(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"llvmpipe", "lavapipe", "swiftshader", "softpipe"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// Device is what a --device value resolved to, and why (for --verbose).
type Device struct {
	GPU bool
	Why string
}

// ResolveDevice resolves --device: "gpu" and "cpu" as asked; "auto" (or "") the GPU when
// Open would get a hardware adapter, otherwise the CPU path: never a software Vulkan driver,
// which computes on the same cores as the CPU path, several times slower (BENCHMARKS.md).
// "gpu" still takes a software driver, which is how the tests run the shaders on lavapipe.
func ResolveDevice(device, backend string) (Device, error) {
	switch strings.ToLower(device) {
	case "gpu":
		return Device{GPU: true, Why: "--device gpu"}, nil
	case "cpu":
		return Device{Why: "--device cpu"}, nil
	case "", "auto":
	default:
		return Device{}, fmt.Errorf("--device %q: want auto, gpu or cpu", device)
	}
	ad, err := Probe(backend)
	switch {
	case errors.Is(err, ErrNoAdapter):
		return Device{Why: "auto: no GPU adapter found"}, nil
	case err != nil:
		return Device{}, err
	case ad.Software:
		return Device{Why: fmt.Sprintf("auto: the GPU adapter found, %s, is a software Vulkan driver, slower than the CPU path (--device gpu uses it anyway)", ad.Name)}, nil
	}
	return Device{GPU: true, Why: fmt.Sprintf("auto: GPU adapter %s (%s, %s)", ad.Name, ad.Backend, ad.Type)}, nil
}
