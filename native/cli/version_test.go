//go:build !js

package cli

import (
	"bytes"
	"regexp"
	"runtime"
	"testing"
)

// TestWGPUNativeVersion holds the decoding to wgpu-native's own packing (src/logging.rs:
// "v4.1" -> 0x04010000, "5.4.3.2.1" -> 0x05040302).
func TestWGPUNativeVersion(t *testing.T) {
	for _, c := range []struct {
		packed uint32
		want   string
	}{
		{0x04010000, "4.1.0.0"},
		{0x05040302, "5.4.3.2"},
		{0x00130401, "0.19.4.1"},
		{0x16010005, "22.1.0.5"},
		{0xff000000, "255.0.0.0"},
		{0, unknownWGPU()},
	} {
		if got := wgpuNativeVersion(c.packed); got != c.want {
			t.Errorf("wgpuNativeVersion(%#08x) = %q, want %q", c.packed, got, c.want)
		}
	}
}

// TestVersionCommand runs `ctseg version` in-process: a test binary has no version set by the
// linker and no VCS stamp, so it must say "dev" and "unknown". The wgpu-native line is a
// decoded version or the note for a library that reports none (linux/amd64's reports none).
func TestVersionCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := regexp.MustCompile(`^ctseg dev\ncommit: unknown\ngo: ` + regexp.QuoteMeta(runtime.Version()) +
		`\nwgpu-native: (\d+\.\d+\.\d+\.\d+|` + regexp.QuoteMeta(unknownWGPU()) + `)\nplatform: ` + runtime.GOOS + "/" + runtime.GOARCH + "\n$")
	if !want.MatchString(out.String()) {
		t.Errorf("ctseg version printed\n%s\nwant it to match %s", out.String(), want)
	}
	if errb.Len() != 0 {
		t.Errorf("stderr: %q", errb.String())
	}
	if code := Main([]string{"version", "extra"}, &out, &errb); code != 1 {
		t.Errorf("ctseg version extra: exit %d, want 1", code)
	}
}
