//go:build release

// Package releasetest checks the release archives that `make release` wrote, as a user gets
// them: what each archive holds, that SHA256SUMS verifies with sha256sum, and that each binary
// runs `ctseg version` and the small golden network on the CPU, matching MONAI's logits within
// the CPU path's stated tolerance. The linux/arm64 binary runs under qemu-user and the
// windows/amd64 one under wine, where no GPU adapter exists: that is why the CPU path is what
// runs there. The linux/amd64 binary also runs the GPU path (lavapipe in CI).
//
// `make test-release` builds the archives and runs this with CTSEG_RELEASE_DIR and
// CTSEG_RELEASE_VERSION set; a missing tool (qemu, wine, the mingw compiler for the test's
// shim DLL) fails the test, never skips it.
package releasetest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"debug/pe"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"testing"
	"time"

	"ctseg/internal/shared"
)

// target is one release platform and what its binary must be.
type target struct {
	goos, goarch string
	archive, exe string
}

func targets(version string) []target {
	return []target{
		{"linux", "amd64", "ctseg_" + version + "_linux_amd64.tar.gz", "ctseg"},
		{"linux", "arm64", "ctseg_" + version + "_linux_arm64.tar.gz", "ctseg"},
		{"windows", "amd64", "ctseg_" + version + "_windows_amd64.zip", "ctseg.exe"},
	}
}

// release returns the folder and version under test.
func release(t *testing.T) (dir, version string) {
	t.Helper()
	dir, version = os.Getenv("CTSEG_RELEASE_DIR"), os.Getenv("CTSEG_RELEASE_VERSION")
	if dir == "" || version == "" {
		t.Fatal("CTSEG_RELEASE_DIR and CTSEG_RELEASE_VERSION are not set: run make test-release")
	}
	return dir, version
}

// repoRoot is the folder holding go.mod (the test runs in scripts/releasetest).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	return root
}

// TestReleaseFolder: the folder holds exactly the three archives and SHA256SUMS, which lists
// exactly them with their true hashes, and `sha256sum -c` (what the README tells users to
// run) accepts it, and rejects it once an archive has changed.
func TestReleaseFolder(t *testing.T) {
	dir, version := release(t)
	want := []string{"SHA256SUMS"}
	for _, tg := range targets(version) {
		want = append(want, tg.archive)
	}
	sort.Strings(want)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s holds %q, want %q", dir, got, want)
	}

	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, tg := range targets(version) {
		data, err := os.ReadFile(filepath.Join(dir, tg.archive))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(data)
		lines = append(lines, hex.EncodeToString(h[:])+"  "+tg.archive)
	}
	if string(sums) != strings.Join(lines, "\n")+"\n" {
		t.Errorf("SHA256SUMS is\n%s\nwant\n%s", sums, strings.Join(lines, "\n"))
	}

	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c SHA256SUMS: %v\n%s", err, out)
	}
	// The same check on a copy with one byte of one archive changed must fail: it checks.
	tmp := t.TempDir()
	for _, n := range want {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if n == targets(version)[1].archive {
			data[len(data)/2] ^= 1
		}
		if err := os.WriteFile(filepath.Join(tmp, n), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd = exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("sha256sum -c accepted a changed archive:\n%s", out)
	}
}

// entry is one file read from an archive.
type entry struct {
	mode os.FileMode
	data []byte
}

func readArchive(t *testing.T, path string) (names []string, files map[string]entry) {
	t.Helper()
	files = map[string]entry{}
	add := func(name string, mode os.FileMode, r io.Reader) {
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, name, err)
		}
		if _, dup := files[name]; dup {
			t.Errorf("%s: %s twice", path, name)
		}
		names = append(names, name)
		files[name] = entry{mode, data}
	}
	if strings.HasSuffix(path, ".zip") {
		zr, err := zip.OpenReader(path)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		for _, f := range zr.File {
			r, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			add(f.Name, f.Mode(), r)
			r.Close()
		}
		return names, files
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			t.Errorf("%s: %s is not a regular file (type %c)", path, h.Name, h.Typeflag)
		}
		add(h.Name, h.FileInfo().Mode(), tr)
	}
	return names, files
}

// TestArchives: each archive holds exactly the binary, README.md, LICENSE and
// THIRD_PARTY_NOTICES.txt, flat; README and LICENSE as in the tree; the binary built for its
// platform (machine, cgo, -trimpath, stripped) and executable; the notices generated for it.
func TestArchives(t *testing.T) {
	dir, version := release(t)
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	license, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(license, []byte("Apache License\n                           Version 2.0, January 2004")) {
		t.Error("LICENSE is not the Apache License 2.0")
	}
	for _, tg := range targets(version) {
		t.Run(tg.goos+"_"+tg.goarch, func(t *testing.T) {
			names, files := readArchive(t, filepath.Join(dir, tg.archive))
			want := []string{tg.exe, "README.md", "LICENSE", "THIRD_PARTY_NOTICES.txt"}
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Fatalf("entries %q, want %q", names, want)
			}
			if !bytes.Equal(files["README.md"].data, readme) {
				t.Error("README.md differs from the tree's")
			}
			if !bytes.Equal(files["LICENSE"].data, license) {
				t.Error("LICENSE differs from the tree's")
			}
			bin := files[tg.exe]
			if bin.mode.Perm() != 0o755 {
				t.Errorf("%s has mode %v, want 0755", tg.exe, bin.mode.Perm())
			}
			deps := checkBinary(t, tg, bin.data)
			checkNotices(t, tg, version, deps, string(files["THIRD_PARTY_NOTICES.txt"].data))
		})
	}
}

// glibc is the oldest glibc each Linux binary runs on, as the README says: Debian 12's cross
// toolchains link hypot@GLIBC_2.35 on arm64.
var glibc = map[string]string{"amd64": "2.34", "arm64": "2.35"}

// versionLess compares dotted numeric versions ("" is the smallest).
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			fmt.Sscan(pa[i], &x)
		}
		if i < len(pb) {
			fmt.Sscan(pb[i], &y)
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// checkBinary holds the binary to its platform and to the release build's flags, and returns
// the modules its build info says it links.
func checkBinary(t *testing.T, tg target, data []byte) []*debug.Module {
	t.Helper()
	r := bytes.NewReader(data)
	switch tg.goos {
	case "linux":
		f, err := elf.NewFile(r)
		if err != nil {
			t.Fatalf("not ELF: %v", err)
		}
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[tg.goarch]
		if f.Machine != want {
			t.Errorf("ELF machine %v, want %v", f.Machine, want)
		}
		if f.Section(".symtab") != nil || f.Section(".debug_info") != nil {
			t.Error("not stripped: the release is built with -ldflags \"-s -w\"")
		}
		// The oldest glibc it runs on, as the README states it.
		syms, err := f.ImportedSymbols()
		if err != nil {
			t.Fatal(err)
		}
		newest := ""
		for _, s := range syms {
			if v, ok := strings.CutPrefix(s.Version, "GLIBC_"); ok && versionLess(newest, v) {
				newest = v
			}
		}
		if limit := glibc[tg.goarch]; versionLess(limit, newest) {
			t.Errorf("needs glibc %s, the README says %s", newest, limit)
		}
	case "windows":
		f, err := pe.NewFile(r)
		if err != nil {
			t.Fatalf("not PE: %v", err)
		}
		if f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 {
			t.Errorf("PE machine %#x, want amd64", f.Machine)
		}
		if oh, ok := f.OptionalHeader.(*pe.OptionalHeader64); !ok || oh.Subsystem != pe.IMAGE_SUBSYSTEM_WINDOWS_CUI {
			t.Error("not a 64-bit console program")
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			t.Fatal(err)
		}
		// Only DLLs every Windows 10 has: a MinGW runtime DLL (libwinpthread, libgcc_s) would
		// be missing on users' machines.
		for _, l := range libs {
			if strings.Contains(strings.ToLower(l), "pthread") || strings.Contains(strings.ToLower(l), "libgcc") || strings.Contains(strings.ToLower(l), "libstdc") {
				t.Errorf("imports %s, which Windows does not have", l)
			}
		}
	}
	bi, err := buildinfo.Read(r)
	if err != nil {
		t.Fatalf("no Go build info: %v", err)
	}
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	for k, v := range map[string]string{"GOOS": tg.goos, "GOARCH": tg.goarch, "CGO_ENABLED": "1", "-trimpath": "true"} {
		if set[k] != v {
			t.Errorf("built with %s=%q, want %q", k, set[k], v)
		}
	}
	if bi.Path != "ctseg/native/cmd/ctseg" {
		t.Errorf("main package %s", bi.Path)
	}
	return bi.Deps
}

func checkNotices(t *testing.T, tg target, version string, deps []*debug.Module, n string) {
	t.Helper()
	head := fmt.Sprintf("Third-party notices for ctseg %s (%s/%s)\n", version, tg.goos, tg.goarch)
	if !strings.HasPrefix(n, head) {
		t.Errorf("THIRD_PARTY_NOTICES.txt does not start with %q", head)
	}
	// Every module the binary's build info says it links, by name and version (the two the
	// product cannot be without named outright), then Go's, wgpu-native's and the embedded
	// data's notices. (The generator itself checks the module list against the binary and
	// fails on a module without a licence file.)
	want := []string{
		"The Go standard library and runtime go1.",
		"github.com/cogentcore/webgpu v0.23.0, in ctseg",
		"github.com/mrjoshuak/go-jpeg2000 v1.5.12, in ctseg",
	}
	for _, d := range deps {
		if d.Replace != nil {
			t.Errorf("%s is replaced: a release is built from published modules only", d.Path)
		}
		want = append(want, d.Path+" "+d.Version+", in ctseg")
	}
	for _, s := range append(want,
		"wgpu-native, in ctseg (the static library wgpu/lib/"+tg.goos+"/"+tg.goarch+"/libwgpu_native.a",
		"--- wgpu-native LICENSE.MIT ---",
		"--- wgpu-native LICENSE.APACHE ---",
		"Copyright (c) 2021 The gfx-rs developers",
		"example_ct.nii.gz of TotalSegmentator",
		"MONAI wholeBody_ct_segmentation bundle",
	) {
		// Prose is wrapped at 78 columns: compare with whitespace collapsed.
		if !strings.Contains(strings.Join(strings.Fields(n), " "), s) {
			t.Errorf("THIRD_PARTY_NOTICES.txt lacks %q", s)
		}
	}
	if got := tg.goos == "windows"; got != strings.Contains(n, "The mingw-w64 runtime, in ctseg.exe") {
		t.Errorf("mingw-w64 runtime notice present = %v, want %v", !got, got)
	}
	if strings.Contains(n, "github.com/stretchr/testify") || strings.Contains(n, "chromedp") {
		t.Error("notices name a test-only module, which is not linked")
	}
}

// extract writes the archive's binary into a new folder and returns its path.
func extract(t *testing.T, dir string, tg target) string {
	t.Helper()
	_, files := readArchive(t, filepath.Join(dir, tg.archive))
	out := filepath.Join(t.TempDir(), tg.exe)
	if err := os.WriteFile(out, files[tg.exe].data, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// runner runs the binary: natively, under qemu, or under wine; path converts a host path for
// the program's command line.
type runner struct {
	argv func(bin string, args ...string) []string
	env  []string
	path func(string) string
}

func run(t *testing.T, r runner, bin string, args ...string) (stdout string) {
	t.Helper()
	argv := r.argv(bin, args...)
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Fatalf("%s is not installed (scripts/install-deps.sh installs it): %v", argv[0], err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = append(os.Environ(), r.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", strings.Join(argv, " "), err, out.String(), errb.String())
	}
	t.Logf("%s: %.1f s", strings.Join(append([]string{filepath.Base(argv[0])}, args[:min(3, len(args))]...), " "), time.Since(start).Seconds())
	return out.String()
}

// checkRun runs `ctseg version` and the small golden model's forward pass on the device and
// compares the logits with MONAI's within tol (README, Correctness).
func checkRun(t *testing.T, r runner, bin string, tg target, version, device string, tol float64) {
	t.Helper()
	v := run(t, r, bin, "version")
	// The Go that built the archives is the one running this test (make test-release).
	want := regexp.MustCompile(`^ctseg ` + regexp.QuoteMeta(version) + `\ncommit: [0-9a-f]{40}(-dirty)?\ngo: ` + regexp.QuoteMeta(runtime.Version()) +
		`\nwgpu-native: (\d+\.\d+\.\d+\.\d+|unknown \(the library was built without a version; it came with github\.com/cogentcore/webgpu v0\.23\.0\))\nplatform: ` + tg.goos + "/" + tg.goarch + "\n$")
	if !want.MatchString(v) {
		t.Errorf("ctseg version printed\n%s\nwant it to match %s", v, want)
	}
	g := shared.Path(t, "golden", "segresnet_small")
	out := filepath.Join(filepath.Dir(bin), "out-"+device+".f32")
	run(t, r, bin, "forward", "--device", device, "--weights", r.path(filepath.Join(g, "model.pt")),
		"--input", r.path(filepath.Join(g, "input.f32")), "--shape", "24,40,32", "--output", r.path(out))
	got, wantF := readF32(t, out), readF32(t, filepath.Join(g, "output.f32"))
	if len(got) != 9*24*40*32 || len(got) != len(wantF) {
		t.Fatalf("%d logits, want %d (9 classes of 24x40x32)", len(got), 9*24*40*32)
	}
	m := 0.0
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(wantF[i]))
		if !(d <= m) { // NaN counts as the worst
			m = d
			if math.IsNaN(d) {
				m = math.Inf(1)
				break
			}
		}
	}
	t.Logf("%s/%s --device %s: max abs error %.3g (tolerance %g)", tg.goos, tg.goarch, device, m, tol)
	if m > tol {
		t.Errorf("max abs error %.3g > %g against MONAI's logits", m, tol)
	}
}

func readF32(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

var native = runner{
	argv: func(bin string, args ...string) []string { return append([]string{bin}, args...) },
	path: func(p string) string { return p },
}

// TestLinuxAmd64: the binary as users run it, on the CPU and on the GPU (lavapipe in CI,
// through the Makefile's VK_ICD_FILENAMES), where the GPU f32 tolerance applies.
func TestLinuxAmd64(t *testing.T) {
	t.Parallel()
	dir, version := release(t)
	tg := targets(version)[0]
	bin := extract(t, dir, tg)
	checkRun(t, native, bin, tg, version, "cpu", 1e-4)
	checkRun(t, native, bin, tg, version, "gpu", 1e-3)
}

// TestLinuxArm64UnderQemu: the arm64 binary under qemu-user, with the arm64 glibc of Debian's
// cross packages as its root for the dynamic loader. No GPU adapter exists there: CPU path.
func TestLinuxArm64UnderQemu(t *testing.T) {
	t.Parallel()
	dir, version := release(t)
	tg := targets(version)[1]
	bin := extract(t, dir, tg)
	qemu := runner{
		argv: func(bin string, args ...string) []string {
			return append([]string{"qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", bin}, args...)
		},
		path: func(p string) string { return p },
	}
	checkRun(t, qemu, bin, tg, version, "cpu", 1e-4)
}

// TestWindowsAmd64UnderWine: the exe under wine in a fresh prefix, with the test's
// bcryptprimitives.dll shim beside it (testdata/bcryptprimitives.c says why). No GPU adapter
// exists there: CPU path.
func TestWindowsAmd64UnderWine(t *testing.T) {
	t.Parallel()
	dir, version := release(t)
	tg := targets(version)[2]
	bin := extract(t, dir, tg)
	shim := filepath.Join(filepath.Dir(bin), "bcryptprimitives.dll")
	cc := exec.Command("x86_64-w64-mingw32-gcc-win32", "-shared", "-O2", "-o", shim, "testdata/bcryptprimitives.c", "-ladvapi32")
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("building the shim DLL: %v\n%s", err, out)
	}
	wine := runner{
		argv: func(bin string, args ...string) []string { return append([]string{"wine", bin}, args...) },
		// A prefix of its own (created on the first run, about 10 s), no debug chatter, and no
		// offer to install Mono or Gecko, which ctseg does not use.
		env: []string{"WINEPREFIX=" + filepath.Join(t.TempDir(), "wine"), "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml="},
		// wine maps the host's / to drive Z:.
		path: func(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) },
	}
	checkRun(t, wine, bin, tg, version, "cpu", 1e-4)
}

// TestMacOSNote: `make release` ends with the README's macOS paragraph, which says what a Mac
// build needs (make test-release keeps the release's output in CTSEG_RELEASE_LOG).
func TestMacOSNote(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(readme, []byte("\n**macOS.**"))
	if i < 0 {
		t.Fatal("README.md has no **macOS.** paragraph")
	}
	para := string(readme[i+1:])
	if j := strings.Index(para, "\n\n"); j >= 0 {
		para = para[:j+1]
	}
	for _, s := range []string{"xcode-select --install", "CGO_ENABLED=1", "codesign", "notar"} {
		if !strings.Contains(para, s) {
			t.Errorf("README's macOS paragraph lacks %q:\n%s", s, para)
		}
	}
	logPath := os.Getenv("CTSEG_RELEASE_LOG")
	if logPath == "" {
		t.Fatal("CTSEG_RELEASE_LOG is not set: run make test-release")
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(log), "Not built: macOS (it needs Apple's SDK, which is not on this machine).\n"+para) {
		t.Errorf("make release's output does not end with the README's macOS paragraph:\n%s", log)
	}
}

// TestForeignFolder: the release replaces its folder whole, so a folder holding anything a
// release did not write (RELEASE_DIR=. say) is refused before anything is built or removed.
func TestForeignFolder(t *testing.T) {
	root := repoRoot(t)
	for _, mk := range []func(string) string{
		func(d string) string { os.WriteFile(filepath.Join(d, "notes.txt"), nil, 0o644); return d },
		func(d string) string { os.WriteFile(filepath.Join(d, ".hidden"), nil, 0o644); return d },
		func(d string) string { p := filepath.Join(d, "file"); os.WriteFile(p, nil, 0o644); return p },
		func(d string) string { return root },
	} {
		out := mk(t.TempDir())
		before, _ := os.ReadDir(out)
		cmd := exec.Command("scripts/release.sh", "1.0.0", out)
		cmd.Dir = root
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err == nil || stdout.Len() != 0 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "not replacing it") {
			t.Errorf("release into %s: %v, stdout %q, stderr %q; want a one-line refusal", out, err, stdout.String(), stderr.String())
		}
		if after, _ := os.ReadDir(out); len(after) != len(before) {
			t.Errorf("%s changed", out)
		}
	}
}

// TestBadVersion: a missing VERSION, or one unfit for a file name, stops `make release` with
// one line on stderr and exit status 2, before anything is built; so does the script itself.
func TestBadVersion(t *testing.T) {
	root := repoRoot(t)
	// The test runs under make: drop the outer make's flags and variables.
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "MAKEFLAGS=") && !strings.HasPrefix(e, "MFLAGS=") && !strings.HasPrefix(e, "MAKELEVEL=") && !strings.HasPrefix(e, "VERSION=") {
			env = append(env, e)
		}
	}
	for _, v := range []string{"", "1/2", "a_b", "-1", ".1", "1 2", "1;2", "é", "1'2", strings.Repeat("1", 65)} {
		for _, argv := range [][]string{
			{"make", "--no-print-directory", "release", "VERSION=" + v, "RELEASE_DIR=" + t.TempDir()},
			{"scripts/release.sh", v, t.TempDir()},
		} {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Dir, cmd.Env = root, env
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			msg := errb.String()
			if code != 2 || out.Len() != 0 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "make release: VERSION") {
				t.Errorf("%q: exit %d (%v), stdout %q, stderr %q; want exit 2 and one line on stderr", argv, code, err, out.String(), msg)
			}
		}
	}
}
