//go:build !js

package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cogentcore/webgpu/wgpu"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"ctseg/cohort"
	"ctseg/internal/atomicfile"
	"ctseg/labels"
	"ctseg/model"
	"ctseg/native"
	"ctseg/pipeline"
	"ctseg/volume"
	"ctseg/volume/dicom"
)

func init() {
	register("batch", "segment a cohort listed in a manifest CSV, resumably, one shard of a Slurm array or Kubernetes Indexed Job at a time (batch summarize merges the results)", runBatch)
	register("adapters", "list the GPU adapters, numbered as --adapter counts them", runAdapters)
}

// Exit statuses of batch, which job engines act on (sysexits.h's EX_USAGE and EX_TEMPFAIL):
// a Kubernetes pod failure policy fails the index on exitCaseFailed and retries exitStopped.
// Any other error exits 1, the machine's trouble, which job engines retry: no GPU, the GPU failed
// mid-case (deviceFailure), a full disk, a manifest or weights the file system failed to read.
const (
	exitCaseFailed = 2  // every case ran; some failed on their data
	exitUsage      = 64 // nothing ran: the command line, the manifest or the weights are wrong
	exitStopped    = 75 // SIGTERM or SIGINT: the shard is unfinished, run it again to go on
)

// batchGrace is how long the current case may go on after SIGTERM. Writing its outputs takes a
// few seconds more, so the process ends within the 30 s that job engines give by default
// (Kubernetes' terminationGracePeriodSeconds, Slurm's KillWait).
const batchGrace = 20 * time.Second

func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// setupError is an error reading the manifest or the weights before anything runs: a usage
// error (exit 64, which fails a Kubernetes Job outright) when what was given is wrong (no such
// file, no permission, a folder, a manifest or weights that do not parse), but the machine's
// (exit 1, which job engines retry) when the file system failed to read it (EIO, a stale NFS
// handle, ...): running again may well work.
func setupError(err error) error {
	if ioTrouble(err) {
		return err
	}
	return usageError(err)
}

// ioTrouble reports whether err is the file system's failure rather than a wrong path: a system
// error other than those that say the path given is not (or cannot be) what was asked for.
func ioTrouble(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.ENOENT, syscall.ENOTDIR, syscall.EISDIR, syscall.EACCES, syscall.EPERM, syscall.ENAMETOOLONG, syscall.ELOOP:
		return false
	}
	return true
}

func runBatch(env *Env, args []string) error {
	if len(args) > 0 && args[0] == "summarize" {
		return runSummarize(env, args[1:])
	}
	fs := newFlags(env, "batch", "--manifest CASES.csv --out DIR [--shard I --shards N] [--weights FILE] [--spacing 1.5|3] [--device auto|gpu|cpu] [--precision f16|f32] [--dicom-seg] [--confidence] [--adapter N|NAME]\n       ctseg batch summarize --out DIR")
	manifest := fs.String("manifest", "", "CSV with a header holding case_id,input (a NIfTI file or a DICOM folder, relative to the manifest's folder) and optionally series; other columns are carried into the summary")
	out := fs.String("out", "", "output folder: DIR/cases/CASE/ gets labels.nii.gz, labels.labels.txt, stats.csv, seg.dcm (--dicom-seg) and case.json last")
	shard := fs.Int("shard", -1, "which shard to run, 0 to N-1 (default: $SLURM_ARRAY_TASK_ID, else $JOB_COMPLETION_INDEX); shard I runs cases I, I+N, I+2N, ...")
	shards := fs.Int("shards", 0, "the number of shards N (always given; never read from the job engine)")
	wpath := fs.String("weights", "", "MONAI checkpoint or ctseg weight file (default: the cached weights of --spacing, see ctseg weights)")
	spacing := fs.Float64("spacing", 1.5, "model spacing in mm: 1.5 (model.pt) or 3 (model_lowres.pt)")
	device := fs.String("device", "auto", deviceHelp+"; --adapter names a GPU, which auto then takes")
	precision := fs.String("precision", "f16", "GPU storage: f16 (as the bundle's f16 autocast) or f32")
	dicomSeg := fs.Bool("dicom-seg", false, "also write seg.dcm, a DICOM Segmentation, for each case read from a DICOM series")
	confidence := fs.Bool("confidence", false, "also write confidence.nii.gz for each case: p1, the probability the network gave each voxel's label (every case's stats carry the mean confidence anyway)")
	adapter := fs.String("adapter", "", "the GPU to use where there are several: its index or a part of its name (ctseg adapters lists them)")
	roi := fs.Int("roi", 96, "sliding-window size (the bundle's 96; smaller only for tests)")
	dry := fs.Bool("dry-run", false, "check the manifest, the weights and --out, print how many cases there are and how many are done, and stop")
	verbose := fs.Bool("verbose", false, "print the adapter, why each case is not done yet, and when each starts")
	if err := parse(fs, args, 0); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError(err)
	}
	if err := required(fs, "manifest", "out"); err != nil {
		return usageError(err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["shard"] && *shard < 0 {
		return usageError(fmt.Errorf("--shard %d: a shard is numbered 0 to N-1 (--shard I --shards N runs cases I, I+N, I+2N, ...)", *shard))
	}
	if given["shards"] && *shards <= 0 {
		return usageError(fmt.Errorf("--shards %d: the number of shards must be 1 or more", *shards))
	}
	if *spacing != 1.5 && *spacing != 3 {
		return usageError(fmt.Errorf("--spacing %v: the bundle's models use 1.5 or 3", *spacing))
	}
	f16, err := parsePrecision(*precision)
	if err != nil {
		return usageError(err)
	}
	switch *device {
	case "auto", "gpu", "cpu":
	default:
		return usageError(fmt.Errorf("--device %q: want auto, gpu or cpu", *device))
	}
	if *device == "cpu" && *adapter != "" {
		return usageError(fmt.Errorf("--adapter chooses a GPU: it does not go with --device cpu"))
	}
	if *roi <= 0 || *roi%8 != 0 {
		return usageError(fmt.Errorf("--roi %d: must be a positive multiple of 8", *roi))
	}
	si, sn, err := resolveShard(*shard, *shards, os.Getenv)
	if err != nil {
		return usageError(err)
	}
	// From here a SIGTERM is a stop (exit 75), also while the weights load and the done cases
	// are counted.
	stop := newStopper()
	defer stop.close()
	m, err := readManifest(*manifest)
	if err != nil {
		return setupError(err)
	}
	wfile, err := resolveWeights(*wpath, *spacing, *precision)
	if err != nil {
		return setupError(err)
	}
	wsum, err := cohort.FileSHA256(wfile)
	if err != nil {
		return setupError(fmt.Errorf("weights: %w", err))
	}
	net, err := loadNet(wfile)
	if err != nil {
		return setupError(err)
	}
	if net.Cfg.OutChannels > labels.Count {
		return usageError(fmt.Errorf("weights %s have %d classes; the label map has %d", wfile, net.Cfg.OutChannels, labels.Count))
	}
	if *dry {
		if err := checkManifest(*out, *manifest, m); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		if err := os.MkdirAll(filepath.Join(*out, cohort.CasesDir), 0o755); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if err := keepManifest(*out, *manifest, m); err != nil {
			return err
		}
	}
	wopt := model.DefaultWindowOptions()
	wopt.ROI = [3]int{*roi, *roi, *roi}
	// the device the cases run on, resolved once (a GPU named by --adapter is taken as asked);
	// the records say which, so auto's cases compare with gpu's or cpu's
	useGPU := *adapter != "" && *device == "auto"
	if !useGPU {
		if useGPU, err = chooseDevice(env, *device, *verbose); err != nil {
			return err
		}
	}
	dev := "cpu"
	if useGPU {
		dev = "gpu"
	}
	settings := cohort.Settings{Spacing: *spacing, Precision: *precision, Device: dev, ROI: *roi, DicomSeg: *dicomSeg, Confidence: *confidence}
	if !useGPU {
		settings.Precision = "f32" // the CPU implementation computes in f32 whatever --precision says
	}
	b := &batchRun{
		env: env, out: *out, dicomSeg: *dicomSeg, net: net,
		// the confidence comes from the labels' own pass: stats.csv carries its mean
		opt:      pipeline.Options{Spacing: *spacing, F16: f16, Window: wopt, Confidence: true},
		weights:  cohort.Weights{Path: wfile, SHA256: wsum},
		settings: settings,
		adapter:  "cpu (ctseg's CPU implementation, f32)",
		version:  pipeline.SoftwareVersion(),
		stop:     stop,
	}
	b.host, _ = os.Hostname()
	mine := m.Shard(si, sn)
	var pending []cohort.Case
	for _, c := range mine {
		done, why := cohort.Done(b.caseDir(c), c.ID, b.key(c))
		if !done {
			pending = append(pending, c)
			if *verbose {
				fmt.Fprintf(env.Stderr, "%s: to run (%s)\n", c.ID, why)
			}
		}
	}
	if *dry {
		fmt.Fprintf(env.Stdout, "manifest: %d cases\nshard %d of %d: %d cases, %d done, %d to run\n",
			len(m.Cases), si, sn, len(mine), len(mine)-len(pending), len(pending))
		return nil
	}
	fmt.Fprintf(env.Stderr, "shard %d of %d: %d of the manifest's %d cases; %d already done, %d to run\n",
		si, sn, len(mine), len(m.Cases), len(mine)-len(pending), len(pending))
	if len(pending) == 0 {
		return nil
	}
	if stop.stopping() {
		return &exitError{code: exitStopped, err: fmt.Errorf("stopped by %s before any case ran: run the same command again", stop.signal())}
	}
	return b.run(pending, useGPU, *adapter, *verbose)
}

// resolveShard finds shard I of N: --shard, else the job engine's index. N is never guessed:
// Slurm's task count is not the shard count when an array skips indices (--array=3,7).
func resolveShard(shard, shards int, getenv func(string) string) (int, int, error) {
	engines := []string{"SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"}
	if shards == 0 {
		if shard >= 0 {
			return 0, 0, fmt.Errorf("--shard %d needs --shards N", shard)
		}
		for _, v := range engines {
			if getenv(v) != "" {
				return 0, 0, fmt.Errorf("$%s is set (a task of an array job) but --shards is not: give --shards N, the number of tasks, or every task would run the whole manifest", v)
			}
		}
		return 0, 1, nil
	}
	if shards < 0 {
		return 0, 0, fmt.Errorf("--shards %d: must be positive", shards)
	}
	from := "--shard"
	if shard < 0 {
		for _, v := range engines {
			s := getenv(v)
			if s == "" {
				continue
			}
			i, err := strconv.Atoi(s)
			if err != nil {
				return 0, 0, fmt.Errorf("$%s=%q is not a shard number", v, s)
			}
			shard, from = i, "$"+v
			break
		}
		if shard < 0 {
			return 0, 0, fmt.Errorf("--shards %d without --shard I: give it, or run as a Slurm array task or a Kubernetes Indexed Job", shards)
		}
	}
	if shard < 0 || shard >= shards {
		return 0, 0, fmt.Errorf("shard %d (%s) of %d: want 0 to %d (number a Slurm array from 0: --array=0-%d)", shard, from, shards, shards-1, shards-1)
	}
	return shard, shards, nil
}

func readManifest(path string) (*cohort.Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--manifest: %w", err)
	}
	defer f.Close()
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	return cohort.Parse(f, path, dir)
}

// checkManifest refuses a manifest that is not the cohort of --out (its manifest.csv) or part
// of it (rerun.csv); os.ErrNotExist when --out has none yet.
func checkManifest(out, given string, m *cohort.Manifest) error {
	path := filepath.Join(out, cohort.ManifestName)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	kept, err := cohort.Parse(f, path, out)
	if err == nil {
		err = m.Within(kept)
	}
	if err != nil {
		return usageError(fmt.Errorf("--out %s holds another cohort: %s is not its %s or part of it (%v); give another --out, or remove %s to change the cohort (done cases are kept by case id)",
			out, given, cohort.ManifestName, err, path))
	}
	return nil
}

// keepManifest keeps the manifest in DIR (inputs absolute), which summarize reads, unless DIR
// has one (checkManifest). Shards starting together race to create it: the first one wins and
// the others check against it.
func keepManifest(out, given string, m *cohort.Manifest) error {
	if err := checkManifest(out, given, m); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	err := atomicfile.WriteNew(filepath.Join(out, cohort.ManifestName), func(w io.Writer) error { return m.Encode(w, nil) })
	if errors.Is(err, os.ErrExist) {
		return checkManifest(out, given, m) // another shard made it first
	}
	return err
}

// batchRun is one shard's run: the network loaded once, the GPU set up once.
type batchRun struct {
	env      *Env
	out      string
	dicomSeg bool
	net      *model.Net
	opt      pipeline.Options
	weights  cohort.Weights
	settings cohort.Settings
	adapter  string
	version  string
	host     string
	stop     *stopper
	bar      *cohortBar
}

func (b *batchRun) caseDir(c cohort.Case) string { return filepath.Join(b.out, cohort.CasesDir, c.ID) }

func (b *batchRun) key(c cohort.Case) cohort.Key {
	return cohort.Key{Input: c.Input, Series: c.Series, Weights: b.weights.SHA256, Settings: b.settings}
}

// preparedCase is a case read and preprocessed (or failed at it) ahead of the GPU.
type preparedCase struct {
	c       cohort.Case
	started time.Time
	ct      *volume.Volume
	header  *volume.Header
	series  *dicom.Series
	prep    *pipeline.Prepared
	stages  []cohort.Stage
	notes   []string
	err     error     // the input could not be read or preprocessed: the case fails on its data
	run     time.Time // when the GPU took it: the wait in the queue is no time of the case's
}

// run segments the pending cases: while the GPU runs one, the next is read and preprocessed.
func (b *batchRun) run(pending []cohort.Case, useGPU bool, adapter string, verbose bool) error {
	start := time.Now()
	ctx, cancel := context.WithCancel(b.stop.ctx)
	defer cancel()
	// The GPU is set up (device, pipelines, weights uploaded) while the first case is read.
	setup := make(chan error, 1)
	if useGPU {
		go func() { setup <- buildGPUNet(b.env, b.net, &b.opt, adapter, verbose) }()
	} else {
		setup <- nil
	}
	queue := make(chan *preparedCase)
	go func() {
		defer close(queue)
		for _, c := range pending {
			if ctx.Err() != nil {
				return
			}
			p := b.prepare(c)
			select {
			case queue <- p:
			case <-ctx.Done():
				return
			}
		}
	}()
	err := <-setup
	if b.opt.Net != nil {
		defer b.opt.Net.Release()
	}
	if err != nil {
		return err // no GPU: an environment error (exit 1), which a job engine retries elsewhere
	}
	if b.opt.GPU != nil {
		b.adapter = b.opt.GPU.Adapter
	}
	b.bar = newCohortBar(b.env, len(pending))
	var ok, failed, dropped int
	var firstFail string
	n := 0
	for {
		// a signal must not wait for the next case's reading, which may take long
		var p *preparedCase
		select {
		case p = <-queue:
		case <-b.stop.ctx.Done():
		}
		if p == nil || b.stop.stopping() {
			break
		}
		n++
		prefix := fmt.Sprintf("[%d/%d] %s:", n, len(pending), p.c.ID)
		if verbose {
			b.bar.println(prefix + " started")
		}
		rec, err := b.runCase(p, n-1)
		if err != nil {
			b.bar.finish()
			fmt.Fprintf(b.env.Stderr, "%d ok, %d failed, %d not run, in %.1f s\n", ok, failed, len(pending)-ok-failed, time.Since(start).Seconds())
			var df *deviceFailure
			if errors.As(err, &df) {
				// exit 1: a job engine retries it (elsewhere where it can); the case is not done
				return fmt.Errorf("case %s failed on the device, not on its data: %w; it is not marked done and the batch stops: run it again (on a working GPU) to go on", p.c.ID, df)
			}
			return fmt.Errorf("case %s: %w (the batch stops: every next case would fail the same way)", p.c.ID, err)
		}
		switch {
		case rec == nil:
			dropped++
			b.bar.println(fmt.Sprintf("%s dropped (stopped by %s); it runs again next time", prefix, b.stop.signal()))
		case rec.Status == cohort.StatusOK:
			ok++
			b.bar.println(fmt.Sprintf("%s ok, %.1f s (%s, %d windows)", prefix, rec.Seconds, dimsString(rec.Input.Grid.Dims), rec.Preprocessed.Windows))
		default:
			failed++
			if firstFail == "" {
				firstFail = p.c.ID + ": " + rec.Error
			}
			b.bar.println(fmt.Sprintf("%s failed: %s", prefix, rec.Error))
		}
	}
	b.bar.finish()
	left := len(pending) - ok - failed
	fmt.Fprintf(b.env.Stderr, "%d ok, %d failed, %d not run, in %.1f s; merge with: ctseg batch summarize --out %s\n",
		ok, failed, left, time.Since(start).Seconds(), b.out)
	if left > 0 {
		how := ""
		if dropped > 0 {
			how = " (the one it was running dropped, nothing of it kept)"
		}
		return &exitError{code: exitStopped, err: fmt.Errorf("stopped by %s with %d of %d cases not run%s: run the same command again to go on",
			b.stop.signal(), left, len(pending), how)}
	}
	if failed > 0 {
		return &exitError{code: exitCaseFailed, err: fmt.Errorf("%d of %d cases failed on their data (first: %s); each case's case.json has its error, and ctseg batch summarize writes rerun.csv",
			failed, len(pending), firstFail)}
	}
	return nil
}

// prepare reads and preprocesses a case (on the CPU, beside the GPU's current case).
func (b *batchRun) prepare(c cohort.Case) (p *preparedCase) {
	p = &preparedCase{c: c, started: time.Now()}
	defer func() {
		// a bug in a reader must fail its case, not the cohort
		if r := recover(); r != nil {
			p.err = fmt.Errorf("internal error reading the case: %v", r)
		}
	}()
	cenv := &Env{Stdout: io.Discard, Stderr: io.Discard} // the series' notes go into case.json
	t := time.Now()
	p.ct, p.header, p.series, p.err = readCT(cenv, c.Input, c.Series, false)
	p.stages = append(p.stages, cohort.Stage{Name: "read", Seconds: time.Since(t).Seconds()})
	p.notes = cenv.notes
	if p.err != nil {
		return p
	}
	t = time.Now()
	p.prep, p.err = pipeline.Prepare(p.ct, b.opt)
	p.stages = append(p.stages, cohort.Stage{Name: "preprocess", Seconds: time.Since(t).Seconds()})
	return p
}

// runCase runs a prepared case through the network and writes it. It returns the record
// written (ok or failed), nil when the case was dropped on a signal (nothing written), or an
// error when the output folder cannot be written (the batch stops).
func (b *batchRun) runCase(p *preparedCase, k int) (*cohort.Record, error) {
	p.run = time.Now()
	rec := &cohort.Record{
		CaseID: p.c.ID, Started: p.started.UTC().Format(time.RFC3339), Host: b.host, Version: b.version,
		Adapter: b.adapter, Weights: b.weights, Settings: b.settings,
		Input: cohort.Input{Path: p.c.Input, Series: p.c.Series}, TouchesBorder: []int{}, Notes: p.notes,
		Stages: p.stages,
	}
	if p.header != nil {
		rec.Input.Format = "nifti"
		if p.series != nil {
			rec.Input.Format = "dicom"
		}
		v := volume.Volume{Affine: p.header.Affine}
		rec.Input.Grid = &cohort.Grid{Dims: p.header.Dims, VoxelMM: v.Spacing(), Affine: p.header.Affine}
	}
	if p.err != nil {
		return rec, b.finishFailed(p, rec, p.err)
	}
	rec.Preprocessed = &cohort.Preprocessed{Dims: p.prep.PreDims(), Windows: p.prep.Windows()}
	opt := b.opt
	runStart := time.Now()
	var done, total int // windows: the pace at which the case runs, should a signal come
	opt.Progress = func(d, t int) {
		done, total = d, t
		b.bar.window(k, d, t)
	}
	opt.Cancelled = func() bool { return b.stop.dropCase(runStart, done, total) }
	res, err := runPrepared(p.c.ID, p.prep, b.net, opt)
	if errors.Is(err, pipeline.ErrCancelled) {
		return nil, nil
	}
	if err != nil {
		if df := asDeviceFailure(err, opt.GPU != nil); df != nil {
			// Nothing written: the case stays as it was, not done, unless the device has
			// failed on this very case maxDeviceFailures times in a row: then it is the case's
			// (a CT the card cannot hold, a bug its grid triggers), and it fails alone, lest it
			// block its shard on every retry.
			dir := b.caseDir(p.c)
			n, cerr := b.countDeviceFailure(dir, p.c)
			if cerr != nil {
				return nil, cerr
			}
			if n < maxDeviceFailures {
				return nil, df
			}
			if err := b.finishFailed(p, rec, fmt.Errorf("the device failed on this case %d times in a row: %w", n, df)); err != nil {
				return nil, err
			}
			// the count stays beside the failed record: a rerun of the case that fails on the
			// device again fails it at once instead of stopping the shard again
			return rec, b.writeDeviceFailures(dir, p.c, n)
		}
		return rec, b.finishFailed(p, rec, err)
	}
	for _, s := range res.Stages[1:] { // [0] is the preprocessing, timed already
		rec.Stages = append(rec.Stages, cohort.Stage{Name: s.Name, Seconds: s.Seconds})
	}
	t := time.Now()
	dir := b.caseDir(p.c)
	if err := b.clearCase(dir); err != nil {
		return nil, err
	}
	cenv := &Env{Stdout: io.Discard, Stderr: io.Discard}
	o := segOutputs{labels: filepath.Join(dir, cohort.LabelsName), table: filepath.Join(dir, cohort.TableName),
		stats: filepath.Join(dir, cohort.StatsName), statsCSV: true}
	if b.settings.Confidence {
		o.confidence = filepath.Join(dir, cohort.ConfidenceName)
	}
	if b.dicomSeg {
		if p.series != nil {
			o.dicomSeg = filepath.Join(dir, cohort.SegName)
		} else {
			cenv.notes = append(cenv.notes, "no DICOM Segmentation: the input is not a DICOM series")
		}
	}
	var outs atomicfile.Set
	defer outs.Abort()
	force := atomicfile.Options{Force: true, Inputs: []string{p.c.Input}}
	if _, err := writeSegOutputs(cenv, &outs, o, force, res, p.ct, p.header, p.series); err != nil {
		if fileSystemTrouble(err) {
			return nil, err
		}
		outs.Abort()
		return rec, b.finishFailed(p, rec, err) // the case's own (a segmentation too large for DICOM)
	}
	if err := outs.Commit(); err != nil {
		return nil, err
	}
	rec.Notes = append(rec.Notes, cenv.notes...)
	for _, name := range []string{cohort.LabelsName, cohort.TableName, cohort.StatsName, cohort.SegName, cohort.ConfidenceName} {
		if name == cohort.SegName && o.dicomSeg == "" || name == cohort.ConfidenceName && o.confidence == "" {
			continue
		}
		d, err := cohort.Describe(dir, name)
		if name == cohort.SegName && errors.Is(err, os.ErrNotExist) {
			continue // no structure, so no segmentation (a note says so)
		}
		if err != nil {
			return nil, err
		}
		rec.Outputs = append(rec.Outputs, d)
	}
	rec.TouchesBorder = volume.BorderLabels(res.Labels, res.Dims)
	rec.Status = cohort.StatusOK
	rec.Stages = append(rec.Stages, cohort.Stage{Name: "write", Seconds: time.Since(t).Seconds()})
	return rec, b.writeRecord(dir, p, rec)
}

// fileSystemTrouble reports whether a write failed in the file system (full, read-only, gone,
// no permission): the batch stops then, since every next case would fail alike.
func fileSystemTrouble(err error) bool {
	var pe *os.PathError
	var le *os.LinkError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &le) || errors.As(err, &errno)
}

// runFault, set by tests only (SetRunFault), fails the network's run of a case: with the error
// it returns, or by panicking.
var runFault func(caseID string) error

// runPrepared runs the network on a prepared case. A panic in it on the GPU (a bug, or the GPU
// binding's own panic) is a deviceFailure: the batch stops rather than mark the case failed on
// its data; on the CPU it fails the case, as any error of its own does.
func runPrepared(id string, p *pipeline.Prepared, net *model.Net, opt pipeline.Options) (res *pipeline.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("internal error while the network ran: %v", r)
			if opt.GPU != nil {
				err = &deviceFailure{err}
			}
		}
	}()
	if runFault != nil {
		if err := runFault(id); err != nil {
			return nil, err
		}
	}
	return p.Run(net, opt)
}

// deviceFailure is a case whose network run failed through the machine, not through its data:
// the GPU lost or out of memory, a buffer that could not be mapped, an operation the WebGPU
// implementation refused, a panic. Every next case would likely fail alike, and the same case
// may well succeed on a working device: the batch stops with exit 1 (which a Kubernetes Job
// retries) and leaves the case not done, so that the next run does it again, rather than mark
// it failed on its data (exit 2, which fails the index and lists the case in rerun.csv as if its
// CT were at fault).
type deviceFailure struct{ err error }

func (e *deviceFailure) Error() string { return e.err.Error() }
func (e *deviceFailure) Unwrap() error { return e.err }

// gpuFailureMarks are what the GPU's failures say, lowercased, whichever layer reports them:
// wgpu-native ("Parent device is lost", "Not enough memory left"), the binding
// ("wgpu.(*Device).CreateBuffer(): ...", an Error's "Validation : ..."), Vulkan
// (ERROR_DEVICE_LOST, ERROR_OUT_OF_DEVICE_MEMORY) and package gpu ("the buffer could not be
// mapped", "out of host memory for a callback").
var gpuFailureMarks = []string{
	"wgpu", "device lost", "device is lost", "devicelost", "device_lost", "lost device",
	"out of memory", "outofmemory", "out of device memory", "out_of_device_memory", "out of host memory", "out_of_host_memory", "not enough memory",
	"could not be mapped", "cannot be mapped",
}

// asDeviceFailure returns err as a deviceFailure when the device failed it, nil when the case's
// data did: errors of reading, preprocessing and planning (a CT too large for the device's
// limits fails alike on every run) stay the case's. Only a run on the GPU can fail through the
// device by error; on the CPU only a panic does.
func asDeviceFailure(err error, onGPU bool) *deviceFailure {
	var df *deviceFailure
	if errors.As(err, &df) {
		return df
	}
	if !onGPU {
		return nil
	}
	var we *wgpu.Error
	if errors.As(err, &we) {
		return &deviceFailure{err}
	}
	msg := strings.ToLower(err.Error())
	for _, m := range gpuFailureMarks {
		if strings.Contains(msg, m) {
			return &deviceFailure{err}
		}
	}
	return nil
}

// maxDeviceFailures is how many runs in a row may fail on the device at one case before the
// case is recorded as failed (deviceFailuresName counts them in the case's folder, which every
// retry of the shard, on any machine, sees).
const maxDeviceFailures = 3

const deviceFailuresName = ".device-failures"

// countDeviceFailure adds one to the case's count of device failures in a row and returns it.
// The count is for the case as it is run now (its key: input, weights, settings), so one made
// with another input or settings starts again; it goes when the case is next written ok or
// failed on its data (clearCase).
func (b *batchRun) countDeviceFailure(dir string, c cohort.Case) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	n := 0
	if f, err := os.Open(filepath.Join(dir, deviceFailuresName)); err == nil {
		buf := make([]byte, 128) // "N KEY": anything longer or else counts as none
		k, _ := io.ReadFull(f, buf)
		f.Close()
		if fields := strings.Fields(string(buf[:k])); len(fields) == 2 && fields[1] == b.failureKey(c) {
			if v, err := strconv.Atoi(fields[0]); err == nil && v > 0 && v < 1000 {
				n = v
			}
		}
	}
	n++
	return n, b.writeDeviceFailures(dir, c, n)
}

func (b *batchRun) writeDeviceFailures(dir string, c cohort.Case, n int) error {
	return atomicfile.Write(filepath.Join(dir, deviceFailuresName), atomicfile.Options{Force: true}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "%d %s\n", n, b.failureKey(c))
		return err
	})
}

// failureKey names the case as it is run now, for its count of device failures.
func (b *batchRun) failureKey(c cohort.Case) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%+v", b.key(c)))
	return hex.EncodeToString(sum[:8])
}

// finishFailed records a case that failed on its data.
func (b *batchRun) finishFailed(p *preparedCase, rec *cohort.Record, cause error) error {
	rec.Status = cohort.StatusFailed
	rec.Error = oneLine(cause.Error())
	dir := b.caseDir(p.c)
	if err := b.clearCase(dir); err != nil {
		return err
	}
	return b.writeRecord(dir, p, rec)
}

// clearCase empties a case's folder of what an earlier run left before new outputs go in: the
// record first (so that a crash from here on leaves the case not done, never done with a mix of
// old and new files), then the outputs (none of another run stays beside a new record) and the
// temporaries of a run killed while writing.
func (b *batchRun) clearCase(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, cohort.RecordName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	atomicfile.SyncDir(dir) // the record's removal reaches the disk before any output changes
	es, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range es {
		for _, name := range append(cohort.OutputNames, cohort.RecordName, deviceFailuresName) {
			if e.Name() == name || strings.HasPrefix(e.Name(), "."+name+".tmp-") { // atomicfile's temporaries
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
		}
	}
	return nil
}

func (b *batchRun) writeRecord(dir string, p *preparedCase, rec *cohort.Record) error {
	now := time.Now()
	rec.Finished = now.UTC().Format(time.RFC3339)
	rec.Seconds = now.Sub(p.run).Seconds()
	for _, s := range p.stages { // reading and preprocessing, done beside the previous case
		rec.Seconds += s.Seconds
	}
	return atomicfile.Write(filepath.Join(dir, cohort.RecordName), atomicfile.Options{Force: true}, rec.Encode)
}

func dimsString(d [3]int) string { return fmt.Sprintf("%dx%dx%d", d[0], d[1], d[2]) }

// stopper turns SIGTERM and SIGINT into a graceful stop: no new case, and the current one
// finishes if it can within batchGrace, else is dropped. A second SIGINT (Ctrl-C twice) drops
// it at once; repeated SIGTERMs (Slurm signals the batch shell and the job's processes both)
// change nothing.
type stopper struct {
	ctx    context.Context // done on the first signal
	cancel context.CancelFunc
	sigs   chan os.Signal
	mu     sync.Mutex
	at     time.Time
	sig    os.Signal
	now    bool
}

func newStopper() *stopper {
	s := &stopper{sigs: make(chan os.Signal, 4)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	signal.Notify(s.sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		for sig := range s.sigs {
			s.mu.Lock()
			if s.at.IsZero() {
				s.at, s.sig = time.Now(), sig
			} else if sig == os.Interrupt {
				s.now = true
			}
			s.mu.Unlock()
			s.cancel()
		}
	}()
	return s
}

func (s *stopper) close() {
	signal.Stop(s.sigs) // no delivery after it returns, so closing is safe
	close(s.sigs)
	s.cancel()
}

func (s *stopper) stopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.at.IsZero()
}

func (s *stopper) signal() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sig == syscall.SIGTERM {
		return "SIGTERM"
	}
	if s.sig == os.Interrupt {
		return "SIGINT"
	}
	return "a signal"
}

// dropCase decides, between windows, whether the current case is dropped: once stopping, when
// it would not finish its windows within the grace period at the pace it has run so far.
func (s *stopper) dropCase(runStart time.Time, done, total int) bool {
	s.mu.Lock()
	at, now := s.at, s.now
	s.mu.Unlock()
	if at.IsZero() {
		return false
	}
	left := batchGrace - time.Since(at)
	if now || left <= 0 {
		return true
	}
	if done <= 0 {
		return false
	}
	perWindow := time.Since(runStart) / time.Duration(done)
	return perWindow*time.Duration(total-done) > left
}

// cohortBar prints a line per case and, on a terminal, an overall bar with the ETA that
// advances window by window.
type cohortBar struct {
	out io.Writer
	bar *progressbar.ProgressBar
}

const barSteps = 1000 // per case, so that the bar moves with the windows

func newCohortBar(env *Env, cases int) *cohortBar {
	b := &cohortBar{out: env.Stderr}
	if f, ok := env.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		b.bar = progressbar.NewOptions(cases*barSteps, progressbar.OptionSetWriter(env.Stderr), progressbar.OptionSetDescription("cases"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionClearOnFinish())
	}
	return b
}

func (b *cohortBar) window(k, done, total int) {
	if b.bar != nil && total > 0 {
		_ = b.bar.Set(k*barSteps + done*barSteps/total)
	}
}

func (b *cohortBar) println(line string) {
	if b.bar != nil {
		_ = b.bar.Clear()
	}
	fmt.Fprintln(b.out, line)
}

func (b *cohortBar) finish() {
	if b.bar != nil {
		_ = b.bar.Finish()
		b.bar = nil
	}
}

func runSummarize(env *Env, args []string) error {
	fs := newFlags(env, "batch summarize", "--out DIR")
	out := fs.String("out", "", "the output folder of ctseg batch")
	if err := parse(fs, args, 0); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError(err)
	}
	if err := required(fs, "out"); err != nil {
		return usageError(err)
	}
	n, err := cohort.Summarize(*out)
	if errors.Is(err, cohort.ErrNoBatch) || errors.Is(err, cohort.ErrManifest) {
		return usageError(err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "%d cases: %d ok, %d failed, %d missing; wrote %s, %s, %s and %s in %s\n",
		n.OK+n.Failed+n.Missing, n.OK, n.Failed, n.Missing, cohort.StructuresName, cohort.CasesName, cohort.StatusName, cohort.RerunName, *out)
	return nil
}

func runAdapters(env *Env, args []string) error {
	fs := newFlags(env, "adapters", "")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	ads, err := native.Adapters(os.Getenv("CTSEG_BACKEND"))
	if err != nil {
		return err
	}
	if len(ads) == 0 {
		return native.ErrNoAdapter
	}
	for _, a := range ads {
		fmt.Fprintf(env.Stdout, "%d\t%s\n", a.Index, a.Name)
	}
	return nil
}
