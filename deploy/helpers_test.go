//go:build !js

package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the folder holding go.mod (tests run in deploy/).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod in %s", root)
	}
	return root
}

var built struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// ctsegBinary builds the ctseg command once per test binary: the job files run it as users do.
func ctsegBinary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "ctseg-deploy-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "ctseg")
		gotool, err := exec.LookPath("go")
		if err != nil {
			gotool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		cmd := exec.Command(gotool, "build", "-o", built.path, "./native/cmd/ctseg")
		cmd.Dir = repoRoot(t)
		built.out, built.err = cmd.CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("building ctseg: %v\n%s", built.err, built.out)
	}
	return built.path
}

type result struct {
	code           int
	stdout, stderr string
}

// runCtseg runs the built ctseg with extra environment variables.
func runCtseg(t testing.TB, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(ctsegBinary(t), args...)
	cmd.Env = append(testEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ctseg %s: %v", strings.Join(args, " "), err)
	}
	return result{code, out.String(), errb.String()}
}

// testEnv is the environment of the commands the tests start: no tuning file of the
// developer's (results never depend on it, but the tests' timings should not either), and no
// job engine's variables of a test run inside one.
func testEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SLURM_") || strings.HasPrefix(kv, "JOB_COMPLETION_INDEX=") || strings.HasPrefix(kv, "CTSEG_TUNING=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "CTSEG_TUNING="+filepath.Join(os.TempDir(), "ctseg-deploy-test-no-tuning.json"))
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}
