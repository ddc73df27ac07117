//go:build !js

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"ctseg/weights/cache"
)

func init() {
	register("weights", "fetch, import, list and locate the cached bundle weights", runWeights)
}

// weightsManifest is the manifest the command line uses. Only tests in this package may
// swap it (for one pointing at an httptest server); nothing on the command line or in the
// environment can, so `weights fetch` only ever downloads and trusts the published files.
var weightsManifest = cache.Official

const (
	fetchSynopsis  = "[--variant 1.5mm|3mm|all] [--dir DIR] [--force]"
	importSynopsis = "FILE [--variant 1.5mm|3mm] [--dir DIR] [--force]"
	listSynopsis   = "[--dir DIR] [--verify]"
	pathSynopsis   = "--variant 1.5mm|3mm [--precision f32|f16] [--dir DIR]"
)

var weightsSubcommands = []struct {
	name, summary string
	run           func(env *Env, args []string) error
}{
	{"fetch", "download, check and convert the official weights (does nothing when cached)", runWeightsFetch},
	{"import", "the same from a checkpoint file you already have (offline machines)", runWeightsImport},
	{"list", "show what is cached: variant, spacing, size, checksum", runWeightsList},
	{"path", "print the cached weight file of a variant (for scripts)", runWeightsPath},
}

func runWeights(env *Env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		weightsUsage(env.Stderr)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	for _, sc := range weightsSubcommands {
		if sc.name == args[0] {
			return sc.run(env, args[1:])
		}
	}
	return fmt.Errorf("unknown subcommand %q (want fetch, import, list or path)", args[0])
}

func weightsUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: ctseg weights <subcommand> [flags]   (ctseg weights <subcommand> -h for its flags)")
	fmt.Fprintln(w, "\nsubcommands:")
	for _, sc := range weightsSubcommands {
		fmt.Fprintf(w, "  %-7s %s\n", sc.name, sc.summary)
	}
	fmt.Fprintf(w, "\nThe cache folder is --dir, else $%s, else %s.\n", cache.EnvDir, defaultDirText())
}

// defaultDirText names the default cache folder for help texts, even when it cannot be
// resolved (no $HOME).
func defaultDirText() string {
	if d, err := cache.DefaultDir(); err == nil {
		return d
	}
	return "the user cache folder + /ctseg/weights"
}

func dirFlag(fs *flag.FlagSet) *string {
	return fs.String("dir", "", fmt.Sprintf("cache folder (default $%s, else %s)", cache.EnvDir, defaultDirText()))
}

// interruptible cancels on Ctrl-C or SIGTERM, so a download stops cleanly and keeps its
// partial file for the next run to resume.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func runWeightsFetch(env *Env, args []string) error {
	fs := newFlags(env, "weights fetch", fetchSynopsis)
	variant := fs.String("variant", "all", "which weights: 1.5mm, 3mm or all")
	dir := dirFlag(fs)
	force := fs.Bool("force", false, "download again even when cached (replaces the entry)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	m := weightsManifest()
	names := m.Names()
	if *variant != "all" {
		v, err := m.Lookup(*variant)
		if err != nil {
			return err
		}
		names = []string{v.Name}
	}
	ctx, stop := interruptible()
	defer stop()
	opts := cache.Options{Progress: env.Stderr, Force: *force, Retries: 3, RetryDelay: 2 * time.Second}
	var failed []string
	for _, name := range names {
		res, err := cache.Fetch(ctx, *dir, m, name, opts)
		if err != nil {
			failed = append(failed, err.Error())
			if ctx.Err() != nil || errors.Is(err, cache.ErrNoConnection) {
				break // interrupted, or offline: the next variant would fail the same way
			}
			continue
		}
		how := "downloaded"
		switch {
		case res.AlreadyCached:
			how = "already cached"
		case res.Resumed:
			how = "downloaded (resumed)"
		}
		fmt.Fprintf(env.Stdout, "%s: %s, %s\n", res.Variant, res.Dir, how)
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

func runWeightsImport(env *Env, args []string) error {
	fs := newFlags(env, "weights import", importSynopsis)
	variant := fs.String("variant", "", "which variant the file is (needed unless it is an official file, recognised by md5)")
	dir := dirFlag(fs)
	force := fs.Bool("force", false, "replace a different file already cached for the variant")
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(files) != 1 {
		fs.Usage()
		return errUsage
	}
	e, err := cache.Import(*dir, weightsManifest(), files[0], *variant, cache.Options{Progress: env.Stderr, Force: *force})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%s: %s (%s, md5 %s)\n", e.Variant, e.Dir, e.Record.SourceSummary(), e.Record.SourceMD5)
	return nil
}

// parseInterspersed parses flags that may come before or after positional arguments
// ("import FILE --variant 3mm" as well as "import --variant 3mm FILE"); the flag package
// alone stops at the first positional one.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args, 1<<30); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runWeightsList(env *Env, args []string) error {
	fs := newFlags(env, "weights list", listSynopsis)
	dir := dirFlag(fs)
	verify := fs.Bool("verify", false, "re-hash every file against its recorded sha256 (reads them all)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	root := *dir
	if root == "" {
		d, err := cache.DefaultDir()
		if err != nil {
			return err
		}
		root = d
	}
	entries, err := cache.List(root)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "weights cache: %s\n", root)
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIANT\tSPACING\tFILES\tSIZE\tSOURCE\tSOURCE MD5\tSTATUS")
	// Manifest order (1.5mm, 3mm), missing ones included, then any other folder found.
	byName := map[string]cache.Entry{}
	for _, e := range entries {
		byName[e.Variant] = e
	}
	var rows []cache.Entry
	missing := 0
	for _, v := range weightsManifest().Variants {
		if e, ok := byName[v.Name]; ok {
			rows = append(rows, e)
			delete(byName, v.Name)
			continue
		}
		missing++
		rows = append(rows, cache.Entry{Variant: v.Name, Spacing: v.Spacing, Problem: "not cached"})
	}
	for _, e := range entries {
		if _, ok := byName[e.Variant]; ok {
			rows = append(rows, e)
		}
	}
	bad := 0
	for _, e := range rows {
		status := "ok"
		if e.Problem == "" && *verify {
			if err := cache.Verify(e); err != nil {
				e.Problem = err.Error()
			} else {
				status = "ok (verified)"
			}
		}
		if e.Problem != "" {
			if e.Problem != "not cached" {
				bad++
			}
			spacing := "-"
			if e.Spacing > 0 {
				spacing = fmt.Sprintf("%g mm", e.Spacing)
			}
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t%s\n", e.Variant, spacing, e.Problem)
			continue
		}
		var files []string
		for _, p := range []string{"f32", "f16"} {
			if _, ok := e.Record.Files[p]; ok {
				files = append(files, p)
			}
		}
		fmt.Fprintf(tw, "%s\t%g mm\t%s\t%s\t%s\t%s\t%s\n", e.Variant, e.Spacing, strings.Join(files, "+"),
			sizeText(e.Size()), e.Record.SourceSummary(), e.Record.SourceMD5, status)
	}
	tw.Flush()
	if missing > 0 {
		fmt.Fprintln(env.Stdout, "get missing weights with `ctseg weights fetch`, or offline `ctseg weights import FILE`")
	}
	if bad > 0 && *verify {
		return fmt.Errorf("%d cache entries are unusable; fetch or import them again (with --force)", bad)
	}
	return nil
}

func sizeText(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func runWeightsPath(env *Env, args []string) error {
	fs := newFlags(env, "weights path", pathSynopsis)
	variant := fs.String("variant", "", "1.5mm or 3mm")
	precision := fs.String("precision", "f32", "f32 or f16")
	dir := dirFlag(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "variant"); err != nil {
		return err
	}
	if _, err := parsePrecision(*precision); err != nil {
		return err
	}
	e, err := cache.Find(*dir, *variant)
	if err != nil {
		return err
	}
	p, err := e.Path(*precision)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, p)
	return nil
}

// weightsInDir finds the weight file of a spacing's model in a folder the user gave: the
// bundle's file name (model.pt for 1.5 mm, model_lowres.pt for 3 mm), the name NVIDIA publishes
// it under, or the cache's name of a converted file (3mm-f16.safetensors).
func weightsInDir(dir string, spacing float64, precision string) (string, error) {
	v, err := cache.Official().Lookup(fmt.Sprint(spacing))
	if err != nil {
		return "", err
	}
	bundle := map[string]string{"1.5mm": "model.pt", "3mm": "model_lowres.pt"}[v.Name]
	names := []string{bundle, v.DownloadName, v.Name + "-" + precision + ".safetensors", v.Name + "-f32.safetensors", v.Name + "-f16.safetensors"}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("no weights for the %v mm model in %s (looked for %s)", spacing, dir, strings.Join(names, ", "))
}
