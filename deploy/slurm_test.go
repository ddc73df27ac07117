//go:build !js

package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"ctseg/cohort"
	"ctseg/internal/cohorttest"
	"ctseg/internal/shared"
)

// slurm is a single-node Slurm started by the test (../shared/notes/slurm-single-node.md):
// Debian's slurmctld and slurmd with their own munged, no systemd, in a temporary folder.
type slurm struct {
	dir  string
	conf string
}

// slurmPrograms are what the test needs of Debian's slurmctld, slurmd, slurm-client and munge.
var slurmPrograms = []string{"slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo", "runuser"}

const mungedPath = "/usr/sbin/munged"

// startSlurm starts munged, slurmctld and slurmd, waits for the node to be idle, and stops them
// all (by their pids) when the test ends. It fails, never skips, when it cannot: except that a
// developer who is not root (outside CI) is told so and skipped, since the daemons need root.
func startSlurm(t *testing.T) *slurm {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the Slurm test starts slurmd and munged, which needs root; CI runs as root")
		}
		t.Skip("not root: the Slurm test starts slurmd and munged (CI runs it as root)")
	}
	for _, p := range slurmPrograms {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is missing: install slurmctld slurmd slurm-client munge (scripts/install-deps.sh does)", p)
		}
	}
	if _, err := os.Stat(mungedPath); err != nil {
		t.Fatalf("%s is missing: install munge (scripts/install-deps.sh does)", mungedPath)
	}
	mu, err := user.Lookup("munge")
	require.NoError(t, err, "the munge user (Debian's munge package makes it)")
	muid, _ := strconv.Atoi(mu.Uid)
	mgid, _ := strconv.Atoi(mu.Gid)

	// not t.TempDir: munged, running as munge, must reach its folder
	dir, err := os.MkdirTemp("", "ctseg-slurm-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &slurm{dir: dir, conf: filepath.Join(dir, "slurm.conf")}
	for _, d := range []string{"state", "spool", "munge"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, d), 0o755))
	}
	mdir := filepath.Join(dir, "munge")
	key := make([]byte, 1024)
	_, err = rand.Read(key)
	require.NoError(t, err)
	keyPath := filepath.Join(mdir, "munge.key")
	require.NoError(t, os.WriteFile(keyPath, key, 0o400))
	require.NoError(t, os.Chown(mdir, muid, mgid))
	require.NoError(t, os.Chown(keyPath, muid, mgid))
	socket := filepath.Join(mdir, "munge.sock")
	out, err := exec.Command("runuser", "-u", "munge", "--", mungedPath, "--socket="+socket, "--key-file="+keyPath,
		"--pid-file="+filepath.Join(mdir, "munged.pid"), "--log-file="+filepath.Join(mdir, "munged.log"),
		"--seed-file="+filepath.Join(mdir, "munged.seed")).CombinedOutput()
	require.NoError(t, err, "starting munged: %s", out)
	t.Cleanup(func() { stopByPidFile(t, filepath.Join(mdir, "munged.pid")) })

	ctld, slurmd := freePort(t), freePort(t)
	conf := fmt.Sprintf(`ClusterName=ctsegtest
SlurmctldHost=localhost
SlurmctldPort=%d
SlurmdPort=%d
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=%s
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MpiDefault=none
StateSaveLocation=%[4]s/state
SlurmdSpoolDir=%[4]s/spool
SlurmctldPidFile=%[4]s/slurmctld.pid
SlurmdPidFile=%[4]s/slurmd.pid
SlurmctldLogFile=%[4]s/slurmctld.log
SlurmdLogFile=%[4]s/slurmd.log
GresTypes=gpu
NodeName=localhost CPUs=2 RealMemory=4000 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
`, ctld, slurmd, socket, dir)
	require.NoError(t, os.WriteFile(s.conf, []byte(conf), 0o644))
	// a GPU for --gres=gpu:1: without a File= slurmd drops it and the node is invalid
	require.NoError(t, os.WriteFile(filepath.Join(dir, "gres.conf"), []byte("Name=gpu File=/dev/null\n"), 0o644))
	for _, daemon := range [][]string{{"slurmctld"}, {"slurmd", "-N", "localhost"}} { // the node's name whatever the hostname
		out, err := s.command(daemon[0], daemon[1:]...).CombinedOutput()
		require.NoError(t, err, "starting %s: %s\n%s", daemon[0], out, s.log(daemon[0]+".log"))
	}
	t.Cleanup(func() {
		// scontrol shutdown stops both daemons; whatever is left is ended by its pid
		s.command("scontrol", "shutdown").Run()
		stopByPidFile(t, filepath.Join(dir, "slurmd.pid"))
		stopByPidFile(t, filepath.Join(dir, "slurmctld.pid"))
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := s.command("sinfo", "-h", "-o", "%T").Output()
		if strings.TrimSpace(string(out)) == "idle" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node is %q, not idle, after 60 s\n%s\n%s", out, s.log("slurmctld.log"), s.log("slurmd.log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return s
}

func (s *slurm) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(testEnv(), "SLURM_CONF="+s.conf)
	return cmd
}

func (s *slurm) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, name))
	return string(b)
}

// state is the state of one job (array task "ID_I") as squeue shows it ("" once it has left).
func (s *slurm) state(job string) string {
	out, _ := s.command("squeue", "-h", "-j", job, "-o", "%T").Output()
	return strings.TrimSpace(string(out))
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// stopByPidFile ends the daemon whose pid the file holds, and waits for it to go.
func stopByPidFile(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	deadline := time.Now().Add(15 * time.Second)
	signalled := false
	for syscall.Kill(pid, 0) == nil {
		if !signalled || time.Now().After(deadline) {
			sig := syscall.SIGTERM
			if signalled {
				sig = syscall.SIGKILL
			}
			syscall.Kill(pid, sig)
			signalled = true
			deadline = time.Now().Add(15 * time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	require.NoError(t, err, path)
	return rows
}

// TestSlurmArray runs deploy/slurm/ctseg-array.sbatch as an array of two tasks (one at a time:
// %1, and the node has one GPU) over a manifest of five CTs (one broken, one DICOM), with the
// summarize job depending on it; one task is requeued midway, as Slurm does on preemption. The
// requeued task goes on where it stopped, and the summary equals the one-machine batch's.
func TestSlurmArray(t *testing.T) {
	s := startSlurm(t)
	bin := ctsegBinary(t)
	d := t.TempDir()
	manifest := cohorttest.Write(t, d, []cohorttest.Case{
		{ID: "s1", Input: "crop:0,0", Age: "54", Site: "north"},
		{ID: "s2", Input: "cropnii:74,53", Age: "61", Site: "south, upper"},
		{ID: "s3", Input: "dicom", Age: "70", Site: "east"},
		{ID: "s4", Input: "crop:74,0", Age: "33", Site: "west"},
		{ID: "s5", Input: "bad", Age: "47", Site: "north"},
	}) // shard 0 of 2: s1, s3, s5; shard 1: s2, s4
	model := []string{"--weights", shared.Path(t, "golden", "segresnet_small", "model.pt"), "--spacing", "3", "--roi", "32", "--device", "gpu"}

	// the one-machine batch
	ref := filepath.Join(d, "one-machine")
	r := runCtseg(t, nil, append([]string{"batch", "--manifest", manifest, "--out", ref}, model...)...)
	require.Equal(t, 2, r.code, r.stderr)
	r = runCtseg(t, nil, "batch", "summarize", "--out", ref)
	require.Equal(t, 0, r.code, r.stderr)

	// the Slurm array, as deploy/slurm/README.md submits it
	out := filepath.Join(d, "slurm")
	logs := filepath.Join(d, "logs")
	require.NoError(t, os.MkdirAll(logs, 0o755))
	script := filepath.Join(repoRoot(t), "deploy", "slurm", "ctseg-array.sbatch")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// the node has 2 CPUs and 4000 MB: ask for less than the script's defaults
	array := exec.CommandContext(ctx, "sbatch", "--wait", "--parsable", "--array=0-1%1", "--cpus-per-task=1", "--mem=1000",
		"--chdir="+logs, script)
	array.Env = append(s.command("sbatch").Env, "CTSEG="+bin, "CTSEG_MANIFEST="+manifest, "CTSEG_OUT="+out, "CTSEG_SHARDS=2",
		"CTSEG_ARGS="+strings.Join(model, " "), "CTSEG_ADAPTER=slurm")
	stdout, err := array.StdoutPipe()
	require.NoError(t, err)
	var arrayErr bytes.Buffer
	array.Stderr = &arrayErr
	require.NoError(t, array.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "sbatch printed no job id: %s", arrayErr.String())
	jobID := strings.SplitN(strings.TrimSpace(line), ";", 2)[0]
	arrayDone := make(chan error, 1)
	go func() { arrayDone <- array.Wait() }()

	summarize := exec.CommandContext(ctx, "sbatch", "--wait", "--parsable", "--dependency=afterany:"+jobID, "--mem=500", "--chdir="+logs,
		filepath.Join(repoRoot(t), "deploy", "slurm", "ctseg-summarize.sbatch"))
	summarize.Env = append(s.command("sbatch").Env, "CTSEG="+bin, "CTSEG_OUT="+out)
	summarizeDone := make(chan error, 1)
	var summarizeOut bytes.Buffer
	summarize.Stdout, summarize.Stderr = &summarizeOut, &summarizeOut
	require.NoError(t, summarize.Start())
	go func() { summarizeDone <- summarize.Wait() }()

	// Midway: once task 0 has done its first case (s1), requeue it, as preemption would. Slurm
	// delays a requeued job by about two minutes; let it start as soon as it can.
	task0 := jobID + "_0"
	deadline := time.Now().Add(5 * time.Minute)
	for !exists(filepath.Join(out, cohort.CasesDir, "s1", cohort.RecordName)) {
		require.True(t, time.Now().Before(deadline), "task 0 did not finish a case in 5 minutes:\n%s", logsOf(logs))
		time.Sleep(100 * time.Millisecond)
	}
	rq, err := s.command("scontrol", "requeue", task0).CombinedOutput()
	require.NoError(t, err, "scontrol requeue: %s", rq)
	for st := s.state(task0); st != "PENDING"; st = s.state(task0) {
		require.True(t, time.Now().Before(deadline), "task 0 is %q, not pending again after the requeue:\n%s", st, logsOf(logs))
		time.Sleep(200 * time.Millisecond)
	}
	up, err := s.command("scontrol", "update", "JobId="+task0, "StartTime=now").CombinedOutput()
	require.NoError(t, err, "scontrol update: %s", up)

	err = <-arrayDone
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "sbatch --wait: %s\n%s", arrayErr.String(), logsOf(logs))
	assert.Equal(t, 2, ee.ExitCode(), "the array's exit status is its tasks' highest: 2, the shard with the broken CT")
	require.NoError(t, <-summarizeDone, "the summarize job: %s\n%s", summarizeOut.String(), logsOf(logs))

	// task 0 ran twice, appending to one log: stopped by the requeue (75), then went on
	log0, err := os.ReadFile(filepath.Join(logs, "ctseg-"+jobID+"_0.log"))
	require.NoError(t, err)
	l0 := string(log0)
	t.Logf("task 0's log:\n%s", l0)
	assert.Contains(t, l0, "(shard 0 of 2) on ")
	assert.Contains(t, l0, ", run 1, GPU 0, adapter 0", "CTSEG_ADAPTER=slurm: the allocated GPU's index")
	assert.Contains(t, l0, ", run 2, GPU 0, adapter 0", "the requeued task ran again:\n%s", l0)
	assert.Contains(t, l0, "ctseg batch: stopped by SIGTERM", l0)
	assert.Contains(t, l0, "ctseg exited 75")
	assert.Regexp(t, `shard 0 of 2: 3 of the manifest's 5 cases; [12] already done, [12] to run`, l0, "the second run skips what the first did")
	assert.Equal(t, 1, strings.Count(l0, "] s1: ok"), "s1 was done once:\n%s", l0)
	log1, err := os.ReadFile(filepath.Join(logs, "ctseg-"+jobID+"_1.log"))
	require.NoError(t, err)
	assert.Contains(t, string(log1), "shard 1 of 2: 2 of the manifest's 5 cases; 0 already done, 2 to run")

	// the summary equals the one-machine batch's (but for the seconds each case took)
	for _, name := range []string{cohort.StructuresName, cohort.CasesName, cohort.RerunName} {
		want, err := os.ReadFile(filepath.Join(ref, name))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(out, name))
		require.NoError(t, err, "the summarize job wrote no %s", name)
		assert.Equal(t, string(want), string(got), name)
	}
	want, got := readCSV(t, filepath.Join(ref, cohort.StatusName)), readCSV(t, filepath.Join(out, cohort.StatusName))
	require.Len(t, got, 6)
	for i := range want {
		want[i][3], got[i][3] = "", ""
	}
	assert.Equal(t, want, got)
	assert.Equal(t, []string{"s5", "failed"}, got[5][:2])
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// logsOf gathers the job logs, for failure messages.
func logsOf(dir string) string {
	var b strings.Builder
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		c, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		fmt.Fprintf(&b, "== %s\n%s", e.Name(), c)
	}
	return b.String()
}
