//go:build !js

package native

import (
	"os"
	"strings"
	"testing"
)

// TestResolveDevice: gpu and cpu are taken as asked; auto takes the GPU exactly when the
// adapter Open would use is a hardware one. CI pins lavapipe (Makefile), so there auto must
// choose the CPU and say why; on a machine with a GPU it must choose the GPU.
func TestResolveDevice(t *testing.T) {
	for dev, gpu := range map[string]bool{"gpu": true, "GPU": true, "cpu": false} {
		d, err := ResolveDevice(dev, "")
		if err != nil || d.GPU != gpu || d.Why == "" {
			t.Errorf("--device %s: %+v, %v", dev, d, err)
		}
	}
	if _, err := ResolveDevice("tpu", ""); err == nil || !strings.Contains(err.Error(), "want auto, gpu or cpu") {
		t.Errorf("--device tpu: %v", err)
	}
	if _, err := ResolveDevice("auto", "no-such-backend"); err == nil {
		t.Error("an unknown backend was accepted")
	}
	ad, probeErr := Probe("")
	// Where the tests pin lavapipe (make test, CI), the adapter is there and must count as
	// software: otherwise auto would pick a CPU driver as "the GPU", and the cases below
	// would accept it.
	if strings.Contains(os.Getenv("VK_ICD_FILENAMES"), "lvp_icd") && (probeErr != nil || !ad.Software) {
		t.Errorf("lavapipe pinned (VK_ICD_FILENAMES=%s), but the probe gave %+v, %v: want a software adapter", os.Getenv("VK_ICD_FILENAMES"), ad, probeErr)
	}
	for _, dev := range []string{"auto", ""} {
		d, err := ResolveDevice(dev, "")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case probeErr != nil:
			if d.GPU || !strings.Contains(d.Why, "no GPU adapter") {
				t.Errorf("no adapter (%v), auto gave %+v", probeErr, d)
			}
		case ad.Software:
			if d.GPU || !strings.Contains(d.Why, "software Vulkan driver") || !strings.Contains(d.Why, ad.Name) {
				t.Errorf("software adapter %+v, auto gave %+v", ad, d)
			}
		default:
			if !d.GPU || !strings.Contains(d.Why, ad.Name) {
				t.Errorf("hardware adapter %+v, auto gave %+v", ad, d)
			}
		}
		t.Logf("auto: %+v (adapter %+v, %v)", d, ad, probeErr)
	}
}

func TestSoftwareName(t *testing.T) {
	for name, want := range map[string]bool{
		"llvmpipe (LLVM 15.0.6, 256 bits)": true,
		"SwiftShader Device (Subzero)":     true,
		"Google SwiftShader":               true,
		"NVIDIA H100 80GB HBM3":            false,
		"AMD Radeon Pro W7900":             false,
	} {
		if got := softwareName(name); got != want {
			t.Errorf("softwareName(%q) = %v", name, got)
		}
	}
}
