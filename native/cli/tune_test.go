//go:build !js

package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ctseg/native/cli"
)

// TestMain points the tuning file at a place no developer's own tuning reaches, so every
// test runs the default tiles unless it writes a tuning itself.
//
// With CTSEG_TEST_EXEC=1 the test binary is ctseg itself: tests that signal a running command
// (batch on SIGTERM and SIGKILL) start it as a subprocess this way.
func TestMain(m *testing.M) {
	if os.Getenv("CTSEG_TEST_EXEC") == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	dir, err := os.MkdirTemp("", "ctseg-tuning-")
	if err != nil {
		panic(err)
	}
	os.Setenv("CTSEG_TUNING", filepath.Join(dir, "tuning.json"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestTune tunes a small window, records the choice for this adapter, and later runs read it:
// a recorded tile is used (and said so), an unreadable file is reported and ignored.
func TestTune(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tuning.json")
	t.Setenv("CTSEG_TUNING", file)
	r := mustRun(t, "tune", "--roi", "16", "--tiles", "2x8x4,8x8x4c", "--repeat", "1")
	for _, want := range []string{"adapter: ", "tuning 2 tiles for a [16 16 16] window", "chosen by ", "wrote " + file} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("tune output lacks %q:\n%s", want, r.stdout)
		}
	}
	var tf struct {
		Version int `json:"version"`
		Entries map[string]struct {
			Adapter, Precision, Tiles string
			DefaultSeconds            float64 `json:"default_window_seconds"`
			TunedSeconds              float64 `json:"tuned_window_seconds"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(readFile(t, file), &tf); err != nil {
		t.Fatal(err)
	}
	if tf.Version != 1 || len(tf.Entries) != 1 {
		t.Fatalf("tuning file: %+v", tf)
	}
	var key string
	for k, e := range tf.Entries {
		key = k
		if e.Adapter == "" || e.Precision != "f16" || !(e.DefaultSeconds > 0) || !(e.TunedSeconds > 0) || (e.Tiles != "" && e.TunedSeconds >= 0.97*e.DefaultSeconds) || (e.Tiles == "" && e.TunedSeconds != e.DefaultSeconds) {
			t.Errorf("entry %+v", e)
		}
	}

	// a recorded choice is what later runs use
	entry := map[string]any{"adapter": "x", "precision": "f16", "roi": []int{16, 16, 16}, "tiles": "16=4x8x4c/tn16"}
	writeJSON(t, file, map[string]any{"version": 1, "entries": map[string]any{key: entry}})
	r = mustRun(t, "bench", "--roi", "16", "--shape", "16,16,16", "--repeat", "1", "--weights", smallModel(t), "--device", "gpu")
	if !strings.Contains(r.stdout, "convolution tiles: tuned 16=4x8x4c/tn16") {
		t.Errorf("bench did not use the tuned tiles:\n%s", r.stdout)
	}
	// an unreadable file is reported and the defaults run
	if err := os.WriteFile(file, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, "bench", "--roi", "16", "--shape", "16,16,16", "--repeat", "1", "--weights", smallModel(t), "--device", "gpu")
	if !strings.Contains(r.stdout, "convolution tiles: defaults") || !strings.Contains(r.stderr, "ignoring the tuning file") {
		t.Errorf("an unreadable tuning file must be reported and ignored:\nstdout %s\nstderr %s", r.stdout, r.stderr)
	}
	// and tune itself refuses to overwrite what it cannot read
	checkOneLineError(t, ctseg(t, "tune", "--roi", "16", "--tiles", "2x8x4", "--repeat", "1"), "tune")
	checkOneLineError(t, ctseg(t, "tune", "--tiles", "2x7"), "tune")
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
