//go:build !js

package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/cogentcore/webgpu/wgpu"

	"ctseg/internal/version"
)

// unknownWGPU is what `ctseg version` says of a library that reports no version: which Go
// module brought it still tells a user (and us) which wgpu-native it is.
func unknownWGPU() string {
	const lib = "github.com/cogentcore/webgpu"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == lib {
				return "unknown (the library was built without a version; it came with " + lib + " " + d.Version + ")"
			}
		}
	}
	return "unknown (the library was built without a version)"
}

func init() {
	register("version", "print the version, commit, Go and wgpu-native versions", runVersion)
}

func runVersion(env *Env, args []string) error {
	fs := newFlags(env, "version", "")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "ctseg %s\ncommit: %s\ngo: %s\nwgpu-native: %s\nplatform: %s/%s\n",
		version.Version, commit(), runtime.Version(), wgpuNativeVersion(uint32(wgpu.GetVersion())),
		runtime.GOOS, runtime.GOARCH)
	return nil
}

// commit is the git revision the binary was built from as the go command stamped it
// (-buildvcs, the default in a git checkout), with "-dirty" when the tree had uncommitted
// changes; else the one the release build gave; "unknown" where neither exists (go test
// binaries, builds outside git).
func commit() string {
	rev, dirty := "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	switch {
	case rev == "" && version.Commit != "":
		return version.Commit
	case rev == "":
		return "unknown"
	case dirty:
		return rev + "-dirty"
	}
	return rev
}

// wgpuNativeVersion decodes wgpuGetVersion's packed integer: wgpu-native (src/logging.rs) puts
// the first four dot-separated parts of its version, "v22.1.0.5" say, into the bytes of a
// uint32, most significant first. A library built without WGPU_NATIVE_VERSION set returns 0,
// as cogentcore/webgpu v0.23.0's do on linux/amd64, linux/arm64 and windows/amd64 (measured;
// its build workflow runs a plain `cargo build` of wgpu-native's main branch).
func wgpuNativeVersion(v uint32) string {
	if v == 0 {
		return unknownWGPU()
	}
	return fmt.Sprintf("%d.%d.%d.%d", v>>24, v>>16&0xff, v>>8&0xff, v&0xff)
}
