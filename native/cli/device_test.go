//go:build !js

package cli_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ctseg/model"
	"ctseg/native"
	"ctseg/native/cli"
)

// wantDevice is the device line --verbose prints for --device auto on this machine: the
// CPU (and which kernels) unless the adapter is a hardware GPU. CI pins lavapipe, a
// software driver, so there it is the CPU.
func wantDevice(t *testing.T) string {
	ad, err := native.Probe("")
	if err == nil && !ad.Software {
		return "device: GPU (auto: GPU adapter " + ad.Name
	}
	k, err := model.CPUKernels()
	if err != nil {
		t.Fatal(err)
	}
	return "device: CPU, " + k + " kernels"
}

// TestDeviceAuto: segment, forward and bench default to --device auto and say with
// --verbose which device they took and why.
func TestDeviceAuto(t *testing.T) {
	want := wantDevice(t)
	r := mustRun(t, "segment", "--input", exampleCT(t), "--dry-run", "--spacing", "3", "--verbose")
	if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "auto") {
		t.Errorf("segment --verbose: %q, want %q and the reason", r.stderr, want)
	}
	in := writeFile(t, filepath.Join(t.TempDir(), "in.f32"), make([]byte, 4*16*16*16))
	r = mustRun(t, "forward", "--weights", smallModel(t), "--input", in, "--shape", "16,16,16", "--output", filepath.Join(t.TempDir(), "o.f32"), "--verbose")
	if !strings.Contains(r.stderr, want) {
		t.Errorf("forward --verbose: %q, want %q", r.stderr, want)
	}
	r = mustRun(t, "bench", "--weights", smallModel(t), "--roi", "16", "--shape", "16,16,16", "--repeat", "1", "--verbose")
	if !strings.Contains(r.stderr+r.stdout, want) || !strings.Contains(r.stderr, "auto") {
		t.Errorf("bench --verbose: %q, want %q and the reason", r.stderr, want)
	}
	if r := ctseg(t, "segment", "--input", "x.nii", "--output", "y.nii.gz", "--device", "tpu"); !strings.Contains(r.stderr, "want auto, gpu or cpu") {
		t.Errorf("--device tpu: %q", r.stderr)
	}
}

// TestBenchCPU: bench on the CPU reports the kernels, the window, every layer kind with
// its GFLOP/s, and end to end when given a volume; GPU-only options are refused.
func TestBenchCPU(t *testing.T) {
	js := filepath.Join(t.TempDir(), "bench.json")
	r := mustRun(t, "bench", "--device", "cpu", "--roi", "16", "--shape", "16,16,24", "--repeat", "2", "--weights", smallModel(t), "--json", js)
	k, err := model.CPUKernels()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"device: CPU, " + k + " kernels, ", "model: SegResNet F=8 K=9", "window: ", "median", "GFLOP/s",
		"conv3x3 ", "conv3x3s2", "conv1x1", "groupnorm", "upsample", "head", "end to end: [16 16 24] volume, 2 windows"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("bench output lacks %q:\n%s", want, r.stdout)
		}
	}
	var rep cli.BenchReport
	if err := json.Unmarshal(readFile(t, js), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Device != "cpu" || rep.CPUKernels != k || rep.Threads < 1 || len(rep.WindowSeconds) != 2 || !(rep.WindowMedian > 0) ||
		!(rep.WindowGFLOPS > 0) || len(rep.Layers) != 6 || rep.Windows != 2 || !(rep.EndToEnd > 0) {
		t.Errorf("incomplete report %+v", rep)
	}
	for _, l := range rep.Layers {
		if !(l.Seconds > 0) || !(l.FLOPs > 0) || l.Count < 1 {
			t.Errorf("layer kind %+v", l)
		}
	}
	for _, bad := range [][]string{{"--precision", "f16"}, {"--tiles", "2x8x4"}} {
		r := ctseg(t, append([]string{"bench", "--device", "cpu", "--roi", "16", "--repeat", "1", "--weights", smallModel(t)}, bad...)...)
		checkOneLineError(t, r, "bench")
	}
}

// TestCPUKernelsEnv runs ctseg in a child process (CTSEG_CPU is read when the process
// starts): generic runs the pure-Go reference and says so, and its logits agree with the
// kernels'; a level this machine lacks is a one-line error.
func TestCPUKernelsEnv(t *testing.T) {
	if args := os.Getenv("CTSEG_CLI_CHILD_ARGS"); args != "" {
		os.Exit(cli.Main(strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
	}
	run := func(cpu string, args ...string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCPUKernelsEnv$")
		cmd.Env = append(os.Environ(), "CTSEG_CPU="+cpu, "CTSEG_CLI_CHILD_ARGS="+strings.Join(args, "\x1f"))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		return stderr.String(), err
	}
	d := t.TempDir()
	b := make([]byte, 4*16*16*16)
	for i := 0; i < len(b); i += 4 {
		b[i+2], b[i+3] = byte(i), 0x3f // values in [0.5, 1)
	}
	in := writeFile(t, filepath.Join(d, "in.f32"), b)
	forward := func(cpu, out string) {
		stderr, err := run(cpu, "forward", "--weights", smallModel(t), "--input", in, "--shape", "16,16,16", "--output", out, "--device", "cpu", "--verbose")
		if err != nil || !strings.Contains(stderr, "device: CPU, "+cpu+" kernels") {
			t.Fatalf("CTSEG_CPU=%s: %v, %q", cpu, err, stderr)
		}
	}
	forward("generic", filepath.Join(d, "generic.f32"))
	best := model.CPUKernelLevels()[0]
	forward(best, filepath.Join(d, "best.f32"))
	if e := maxAbsDiff(t, readF32(t, filepath.Join(d, "best.f32")), readF32(t, filepath.Join(d, "generic.f32"))); e > 1e-4 {
		t.Errorf("%s kernels and the reference differ by %g", best, e)
	}
	stderr, err := run("no-such-isa", "forward", "--weights", smallModel(t), "--input", in, "--shape", "16,16,16", "--output", filepath.Join(d, "x.f32"), "--device", "cpu")
	if err == nil || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "ctseg forward: CTSEG_CPU=no-such-isa") {
		t.Errorf("CTSEG_CPU=no-such-isa: %v, %q", err, stderr)
	}
}
