// Command notices writes THIRD_PARTY_NOTICES.txt for one built ctseg binary: the licence of
// every Go module linked into it (its own module list, read from the binary) and into the
// browser app it embeds (the wasm, whose packages go list names), the Go standard library's,
// wgpu-native's with the Rust crates its static library records, the C runtime a Windows build
// links statically, and the notices for the data the binary embeds.
//
//	go run ./scripts/notices -binary dist/x/ctseg -version 1.0.0 -o NOTICES.txt [-mingw-copyright FILE]
//
// Licence texts come from the module cache and GOROOT as they are, never rewritten; a linked
// module without a licence file is an error, not a silent gap. Run it from the repository root
// with the go command that built the binary. Used by scripts/release.sh.
package main

import (
	"bytes"
	"debug/buildinfo"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
)

// The module that ships the wgpu-native static libraries (in wgpu/lib/GOOS/GOARCH).
const webgpuModule = "github.com/cogentcore/webgpu"

// wasmPkg is the browser app's main package: the binary embeds its wasm build (viewer/static/gen).
const wasmPkg = "./wasm"

func main() {
	binary := flag.String("binary", "", "the built ctseg binary")
	version := flag.String("version", "", "the release version (for the heading)")
	out := flag.String("o", "", "output file")
	mingw := flag.String("mingw-copyright", "", "copyright file of the mingw-w64 runtime a Windows build links (Debian: /usr/share/doc/mingw-w64-x86-64-dev/copyright)")
	flag.Parse()
	if *binary == "" || *out == "" || *version == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: notices -binary BIN -version V -o FILE [-mingw-copyright FILE]")
		os.Exit(2)
	}
	text, err := generate(*binary, *version, *mingw)
	if err == nil {
		err = os.WriteFile(*out, text, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "notices: %s\n", strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

// section is one component: a heading and its licence texts.
type section struct {
	title string
	body  bytes.Buffer
}

func generate(binary, version, mingw string) ([]byte, error) {
	bi, err := buildinfo.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	goos, goarch := set["GOOS"], set["GOARCH"]
	if goos == "" || goarch == "" {
		return nil, fmt.Errorf("%s records no GOOS/GOARCH", binary)
	}
	goVersion, err := goOutput(nil, "env", "GOVERSION")
	if err != nil {
		return nil, err
	}
	if goVersion != bi.GoVersion {
		// GOROOT's licence below must be the one of the Go that built the binary.
		return nil, fmt.Errorf("%s was built by %s, this go is %s", binary, bi.GoVersion, goVersion)
	}
	if goos == "windows" && mingw == "" {
		return nil, fmt.Errorf("a windows binary links the mingw-w64 runtime statically: give -mingw-copyright")
	}

	// The binary's own module list says what is linked; go list -deps with the binary's build
	// settings says which package folders of those modules went in (for licence files kept
	// beside a package rather than at the module root). The two must agree.
	native := map[string]*debug.Module{}
	for _, m := range bi.Deps {
		native[m.Path] = m
	}
	nativeEnv := []string{"GOOS=" + goos, "GOARCH=" + goarch, "CGO_ENABLED=" + set["CGO_ENABLED"]}
	nativePkgs, err := listDeps(nativeEnv, set["-tags"], bi.Path)
	if err != nil {
		return nil, err
	}
	if err := sameModules(native, nativePkgs); err != nil {
		return nil, fmt.Errorf("go list -deps %s disagrees with the binary's module list: %w", bi.Path, err)
	}
	wasmPkgs, err := listDeps([]string{"GOOS=js", "GOARCH=wasm"}, "", wasmPkg)
	if err != nil {
		return nil, err
	}

	type use struct {
		version, dir string
		pkgDirs      map[string]bool
		in           []string
	}
	mods := map[string]*use{}
	add := func(pkgs []pkg, where string) error {
		seen := map[string]bool{}
		for _, p := range pkgs {
			u := mods[p.modPath]
			if u == nil {
				u = &use{version: p.modVersion, dir: p.modDir, pkgDirs: map[string]bool{}}
				mods[p.modPath] = u
			}
			if u.version != p.modVersion {
				// The wasm and the binary are built from the same go.mod: one version each.
				return fmt.Errorf("%s at %s and at %s", p.modPath, u.version, p.modVersion)
			}
			u.pkgDirs[p.dir] = true
			if !seen[p.modPath] {
				seen[p.modPath] = true
				u.in = append(u.in, where)
			}
		}
		return nil
	}
	if err := add(nativePkgs, "ctseg"); err != nil {
		return nil, err
	}
	if err := add(wasmPkgs, "the embedded browser app"); err != nil {
		return nil, err
	}

	var secs []*section
	goroot, err := goOutput(nil, "env", "GOROOT")
	if err != nil {
		return nil, err
	}
	s := &section{title: "The Go standard library and runtime " + bi.GoVersion + ", in ctseg and in the embedded browser app (with its loader wasm_exec.js)"}
	if err := appendFile(&s.body, filepath.Join(goroot, "LICENSE"), "LICENSE"); err != nil {
		return nil, err
	}
	secs = append(secs, s)

	paths := make([]string, 0, len(mods))
	for p := range mods {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		u := mods[p]
		s := &section{title: fmt.Sprintf("%s %s, in %s", p, u.version, strings.Join(u.in, " and in "))}
		files, err := licenceFiles(u.dir, u.pkgDirs)
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("module %s %s: no licence file in %s", p, u.version, u.dir)
		}
		for _, f := range files {
			rel, _ := filepath.Rel(u.dir, f)
			if err := appendFile(&s.body, f, filepath.ToSlash(rel)); err != nil {
				return nil, err
			}
		}
		secs = append(secs, s)
	}

	w, ok := mods[webgpuModule]
	if !ok {
		return nil, fmt.Errorf("%s is not linked: where does wgpu-native come from?", webgpuModule)
	}
	s, err = wgpuNative(w.dir, w.version, goos, goarch)
	if err != nil {
		return nil, err
	}
	secs = append(secs, s)

	if goos == "windows" {
		s := &section{title: "The mingw-w64 runtime, in ctseg.exe (start-up code and C runtime glue the cross compiler links statically)"}
		if err := appendFile(&s.body, mingw, "the Debian package's copyright file ("+mingw+")"); err != nil {
			return nil, err
		}
		secs = append(secs, s)
	}

	s, err = embeddedData()
	if err != nil {
		return nil, err
	}
	secs = append(secs, s)

	var b bytes.Buffer
	fmt.Fprintf(&b, "Third-party notices for ctseg %s (%s/%s)\n\n", version, goos, goarch)
	b.WriteString(wrap("ctseg itself is under the Apache License 2.0 (LICENSE). It contains the "+
		"components below, each under its own licence, whose text follows. This file was generated by "+
		"scripts/notices from the binary's own module list, the Go packages linked into it and into "+
		"the browser app it embeds, the wgpu-native library linked for this platform and the data "+
		"the binary embeds.") + "\n\nContents\n")
	for i, s := range secs {
		fmt.Fprintf(&b, "%3d. %s\n", i+1, s.title)
	}
	for i, s := range secs {
		fmt.Fprintf(&b, "\n%s\n%d. %s\n%s\n\n", strings.Repeat("=", 78), i+1, s.title, strings.Repeat("=", 78))
		b.Write(s.body.Bytes())
	}
	return b.Bytes(), nil
}

// pkg is one package linked into a build, outside the main module and the standard library.
type pkg struct {
	dir, modPath, modVersion, modDir string
}

func listDeps(env []string, tags, main string) ([]pkg, error) {
	args := []string{"list", "-deps", "-f", "{{if and .Module (not .Module.Main)}}{{.Dir}}\t{{.Module.Path}}\t{{.Module.Version}}\t{{.Module.Dir}}{{end}}"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	outp, err := goOutput(env, append(args, main)...)
	if err != nil {
		return nil, err
	}
	var pkgs []pkg
	for _, line := range strings.Split(outp, "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 || f[3] == "" {
			return nil, fmt.Errorf("go list: unexpected line %q (is the module cache complete?)", line)
		}
		pkgs = append(pkgs, pkg{dir: f[0], modPath: f[1], modVersion: f[2], modDir: f[3]})
	}
	return pkgs, nil
}

func sameModules(bin map[string]*debug.Module, pkgs []pkg) error {
	listed := map[string]string{}
	for _, p := range pkgs {
		listed[p.modPath] = p.modVersion
	}
	for path, m := range bin {
		if m.Replace != nil {
			return fmt.Errorf("%s is replaced (%s): a release is built from published modules only", path, m.Replace.Path)
		}
		if listed[path] != m.Version {
			return fmt.Errorf("the binary has %s %s, go list %q", path, m.Version, listed[path])
		}
	}
	for path := range listed {
		if bin[path] == nil {
			return fmt.Errorf("go list names %s, the binary does not", path)
		}
	}
	return nil
}

// licenceName matches the files that carry a licence or notice, as pkg.go.dev's licence
// detection looks for them.
var licenceName = regexp.MustCompile(`(?i)^(licen[cs]e|copying|notice|patents|unlicense)(\..*)?$|^(licen[cs]e|copying)[-_].*$`)

// licenceFiles returns the licence files of a module: those at its root and those in the
// folders, from each linked package's own up to the root (a package copied from elsewhere
// keeps its licence beside it, as klauspost/compress's snappy does).
func licenceFiles(modDir string, pkgDirs map[string]bool) ([]string, error) {
	dirs := map[string]bool{modDir: true}
	for d := range pkgDirs {
		for ; strings.HasPrefix(d, modDir+string(filepath.Separator)); d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var files []string
	for d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.Type().IsRegular() && licenceName.MatchString(e.Name()) {
				files = append(files, filepath.Join(d, e.Name()))
			}
		}
	}
	sort.Slice(files, func(i, j int) bool {
		// The module's root files first, then by path.
		di, dj := filepath.Dir(files[i]) == modDir, filepath.Dir(files[j]) == modDir
		if di != dj {
			return di
		}
		return files[i] < files[j]
	})
	return files, nil
}

var (
	// Paths the Rust compiler records in the library for panic locations: crates.io crates
	// (registry/src/index.crates.io-HASH/NAME-VERSION), git dependencies
	// (git/checkouts/REPO-HASH/REV/CRATE) and the Rust standard library (rustc/COMMIT/library/CRATE).
	cratePath = regexp.MustCompile(`registry[/\\]src[/\\][^/\\\x00]+[/\\]([A-Za-z0-9_-]+?)-(\d+\.\d+\.\d+[A-Za-z0-9.+-]*)[/\\]`)
	gitPath   = regexp.MustCompile(`git[/\\]checkouts[/\\]([A-Za-z0-9_-]+)-[0-9a-f]{16}[/\\]([0-9a-f]{7,40})[/\\]([A-Za-z0-9_-]+)[/\\]`)
	rustcPath = regexp.MustCompile(`rustc[/\\]([0-9a-f]{40})[/\\]library[/\\]([a-z_]+)[/\\]`)
)

// wgpuNative is wgpu-native's section: its licence and the Rust crates the library for this
// platform records. The Go module that ships the library does not ship wgpu-native's licence,
// so scripts/notices/wgpu-native holds LICENSE.MIT and LICENSE.APACHE as github.com/gfx-rs/wgpu-native
// has them (unchanged since its relicensing, commit 3570968 of 2021; copied at 52bb912), which
// covers the libraries, built from its main branch in 2024.
func wgpuNative(modDir, modVersion, goos, goarch string) (*section, error) {
	lib := filepath.Join(modDir, "wgpu", "lib", goos, goarch, "libwgpu_native.a")
	data, err := os.ReadFile(lib)
	if err != nil {
		return nil, fmt.Errorf("wgpu-native for %s/%s: %w", goos, goarch, err)
	}
	set := func(re *regexp.Regexp, f func(m [][]byte) string) []string {
		seen := map[string]bool{}
		for _, m := range re.FindAllSubmatch(data, -1) {
			seen[f(m)] = true
		}
		out := make([]string, 0, len(seen))
		for k := range seen {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	crates := set(cratePath, func(m [][]byte) string { return string(m[1]) + " " + string(m[2]) })
	git := set(gitPath, func(m [][]byte) string { return fmt.Sprintf("%s (commit %s)", m[3], m[2]) })
	for _, m := range gitPath.FindAllSubmatch(data, -1) {
		// wgpu-native's Cargo.toml takes only wgpu's crates from git; another repository
		// would need its own licence here.
		if string(m[1]) != "wgpu" {
			return nil, fmt.Errorf("%s: a git dependency from %q: add its licence to scripts/notices", lib, m[1])
		}
	}
	std := set(rustcPath, func(m [][]byte) string { return string(m[2]) + " (rustc commit " + string(m[1]) + ")" })
	if len(crates) == 0 || len(git) == 0 {
		return nil, fmt.Errorf("%s: no Rust crate paths found; has the library's format changed?", lib)
	}

	s := &section{title: fmt.Sprintf("wgpu-native, in ctseg (the static library wgpu/lib/%s/%s/libwgpu_native.a of %s %s)",
		goos, goarch, webgpuModule, modVersion)}
	s.body.WriteString(wrap("wgpu-native (github.com/gfx-rs/wgpu-native) is dual-licensed under the MIT "+
		"licence or the Apache License 2.0, at your option; both texts follow. The library contains "+
		"the Rust crates below, as named by the source paths the library itself records (crates that "+
		"record none, such as ones without panics, are not named here). Those from git are crates of "+
		"github.com/gfx-rs/wgpu, the gfx-rs developers', under the same two licences; each crate from "+
		"crates.io is under the licence published with it there.") + "\n\n")
	list := func(head string, items []string) {
		if len(items) == 0 {
			return
		}
		s.body.WriteString(head + ":\n")
		for _, c := range items {
			s.body.WriteString("  " + c + "\n")
		}
		s.body.WriteString("\n")
	}
	list("From git (github.com/gfx-rs/wgpu)", git)
	list("From crates.io", crates)
	list("The Rust standard library", std)
	for _, f := range []string{"LICENSE.MIT", "LICENSE.APACHE"} {
		if err := appendFile(&s.body, filepath.Join("scripts", "notices", "wgpu-native", f), "wgpu-native "+f); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// embeddedData is the section for the data files the binary embeds, which no module list
// shows. Each must still be in the tree, so that a notice never outlives its file.
func embeddedData() (*section, error) {
	items := []struct{ file, text string }{
		{"viewer/static/sample/example_ct.nii.gz", "The sample CT (viewer/static/sample/example_ct.nii.gz, served by `ctseg serve` and " +
			"`ctseg app`) is tests/reference_files/example_ct.nii.gz of TotalSegmentator " +
			"(github.com/wasserth/TotalSegmentator), used under the Apache License 2.0, whose text is in " +
			"LICENSE."},
		{"labels/labels.json", "The label map (labels/labels.json: the names of classes 0 to 104) is the one of the " +
			"MONAI wholeBody_ct_segmentation bundle (github.com/Project-MONAI/model-zoo, " +
			"models/wholeBody_ct_segmentation; Copyright MONAI Consortium), used under the Apache " +
			"License 2.0, whose text is in LICENSE. Its classes are the first class list of " +
			"TotalSegmentator. The network weights are not in this archive: `ctseg weights fetch` " +
			"downloads them from NVIDIA under the bundle's own terms."},
	}
	s := &section{title: "Data embedded in ctseg: the sample CT and the label map"}
	for _, it := range items {
		if _, err := os.Stat(it.file); err != nil {
			return nil, fmt.Errorf("embedded data: %w (run from the repository root)", err)
		}
		s.body.WriteString(wrap(it.text) + "\n\n")
	}
	return s, nil
}

func appendFile(b *bytes.Buffer, path, name string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(b, "--- %s ---\n\n", name)
	b.Write(bytes.TrimRight(data, "\n"))
	b.WriteString("\n\n")
	return nil
}

func goOutput(env []string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// wrap folds text at 78 columns.
func wrap(text string) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(text) {
		if n > 0 && n+1+len(w) > 78 {
			b.WriteString("\n")
			n = 0
		} else if n > 0 {
			b.WriteString(" ")
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}
