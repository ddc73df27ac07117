//go:build !js

package cli

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"ctseg/gpu"
	"ctseg/model"
	"ctseg/native"
	"ctseg/weights"
)

// parseTriple reads "N" (all three axes) or "D,H,W" of positive integers.
func parseTriple(name, s string) ([3]int, error) {
	parts := strings.Split(s, ",")
	if len(parts) == 1 {
		parts = []string{parts[0], parts[0], parts[0]}
	}
	var out [3]int
	if len(parts) != 3 {
		return out, fmt.Errorf("--%s %q: want N or D,H,W", name, s)
	}
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v <= 0 || v > 1<<16 {
			return out, fmt.Errorf("--%s %q: %q is not a positive size", name, s, p)
		}
		out[i] = v
	}
	return out, nil
}

// loadNet reads a MONAI checkpoint or project weight file and builds the network.
func loadNet(path string) (*model.Net, error) {
	sd, err := weights.Load(path)
	if err != nil {
		return nil, err
	}
	n, err := model.NewNet(sd)
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", path, err)
	}
	return n, nil
}

// deviceHelp is the --device flag's help, the same for every command that runs the network.
const deviceHelp = "auto (a hardware GPU adapter when there is one, else the CPU; never a software Vulkan driver such as lavapipe), gpu (any adapter, software drivers included) or cpu"

// chooseDevice resolves --device for every command that runs the network (native.ResolveDevice:
// auto takes a hardware GPU adapter when there is one, else the CPU path). For the CPU it also
// checks CTSEG_CPU. With verbose it says which device and why, and for the CPU which kernels
// on how many threads.
func chooseDevice(env *Env, device string, verbose bool) (useGPU bool, err error) {
	d, err := native.ResolveDevice(device, os.Getenv("CTSEG_BACKEND"))
	if err != nil {
		return false, err
	}
	if d.GPU {
		if verbose {
			fmt.Fprintf(env.Stderr, "device: GPU (%s)\n", d.Why)
		}
		return true, nil
	}
	kernels, err := model.CPUKernels()
	if err != nil {
		return false, err
	}
	if verbose {
		fmt.Fprintf(env.Stderr, "device: CPU, %s kernels, %d threads (%s)\n", kernels, runtime.GOMAXPROCS(0), d.Why)
	}
	return false, nil
}

// gpuOpened keeps the device (or the error) of the first openGPU of each adapter choice for
// the process's lifetime: commands run in-process (tests) share one device instead of piling
// up devices.
var gpuOpened struct {
	sync.Mutex
	m map[string]openedGPU
}

type openedGPU struct {
	ctx *gpu.Context
	err error
}

// openGPU opens the native device and prints the adapter with --verbose.
func openGPU(env *Env, verbose bool) (*gpu.Context, error) {
	return openAdapter(env, "", verbose)
}

// openAdapter is openGPU on the adapter --adapter names (native.DeviceOptions.Adapter).
func openAdapter(env *Env, adapter string, verbose bool) (*gpu.Context, error) {
	gpuOpened.Lock()
	o, ok := gpuOpened.m[adapter]
	if !ok {
		o.ctx, o.err = native.Open(native.DeviceOptions{Backend: os.Getenv("CTSEG_BACKEND"), Timestamps: true, Adapter: adapter})
		if gpuOpened.m == nil {
			gpuOpened.m = map[string]openedGPU{}
		}
		gpuOpened.m[adapter] = o
	}
	gpuOpened.Unlock()
	if o.err != nil {
		return nil, o.err
	}
	ctx := o.ctx
	if verbose {
		l := ctx.Limits
		fmt.Fprintf(env.Stderr, "adapter: %s\nlimits: maxStorageBufferBindingSize %d, maxBufferSize %d, storage buffers/stage %d, workgroup storage %d, invocations/workgroup %d\n",
			ctx.Adapter, l.MaxStorageBufferBindingSize, l.MaxBufferSize, l.MaxStorageBuffersPerStage, l.MaxWorkgroupStorageSize, l.MaxInvocationsPerWorkgroup)
	}
	return ctx, nil
}

func parsePrecision(s string) (bool, error) {
	switch s {
	case "f32":
		return false, nil
	case "f16":
		return true, nil
	}
	return false, fmt.Errorf("--precision %q: want f32 or f16", s)
}

// readRawF32 reads a little-endian float32 file of exactly n values.
func readRawF32(path string, n int) ([]float32, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() != int64(4*n) {
		return nil, fmt.Errorf("%s holds %d bytes, but the shape needs %d (float32)", path, fi.Size(), 4*n)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	for i := range out {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%s: value %d is not finite", path, i)
		}
		out[i] = v
	}
	return out, nil
}

func writeRawF32(w io.Writer, v []float32) error {
	buf := make([]byte, 1<<16)
	for len(v) > 0 {
		n := min(len(v), len(buf)/4)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v[i]))
		}
		if _, err := w.Write(buf[:4*n]); err != nil {
			return err
		}
		v = v[n:]
	}
	return nil
}
