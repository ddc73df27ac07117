//go:build !js

package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
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
var slurmPrograms = []string{"slurmctld", "slurmd", "sbatch", "scancel", "scontrol", "squeue", "sinfo", "runuser"}

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
// summarize job depending on it; task 0 gets the time limit's early signal midway (USR1 to the
// batch shell, as --signal=B:USR1@180 sends it) and requeues itself; task 1 is requeued midway
// by `scontrol requeue`, as preemption does. Each requeued task goes on where it stopped, and
// the summary equals the one-machine batch's.
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

	// Midway: once task 0 has done its first case (s1), send its batch shell what Slurm sends
	// before the time limit (--signal=B:USR1): the script stops ctseg and requeues the task.
	// Slurm delays a requeued job by about two minutes; let it start as soon as it can.
	task0 := jobID + "_0"
	deadline := time.Now().Add(5 * time.Minute)
	for !exists(filepath.Join(out, cohort.CasesDir, "s1", cohort.RecordName)) {
		require.True(t, time.Now().Before(deadline), "task 0 did not finish a case in 5 minutes:\n%s", logsOf(logs))
		time.Sleep(100 * time.Millisecond)
	}
	sig, err := s.command("scancel", "--batch", "--signal=USR1", task0).CombinedOutput()
	require.NoError(t, err, "scancel --batch --signal=USR1: %s", sig)
	for st := s.state(task0); st != "PENDING"; st = s.state(task0) {
		require.True(t, time.Now().Before(deadline), "task 0 is %q, not pending again after the time limit's signal:\n%s", st, logsOf(logs))
		time.Sleep(200 * time.Millisecond)
	}
	up, err := s.command("scontrol", "update", "JobId="+task0, "StartTime=now").CombinedOutput()
	require.NoError(t, err, "scontrol update: %s", up)

	// Then task 1, once it has done its first case (s2), is requeued by Slurm itself, as
	// preemption or an operator's `scontrol requeue` does: the script passes the SIGTERM on and
	// leaves the requeueing to Slurm, and the task goes on where it stopped.
	task1 := jobID + "_1"
	deadline = time.Now().Add(5 * time.Minute)
	for !exists(filepath.Join(out, cohort.CasesDir, "s2", cohort.RecordName)) {
		require.True(t, time.Now().Before(deadline), "task 1 did not finish a case in 5 minutes:\n%s", logsOf(logs))
		time.Sleep(100 * time.Millisecond)
	}
	rq, err := s.command("scontrol", "requeue", task1).CombinedOutput()
	require.NoError(t, err, "scontrol requeue: %s", rq)
	for st := s.state(task1); st != "PENDING"; st = s.state(task1) {
		require.True(t, time.Now().Before(deadline), "task 1 is %q, not pending again after scontrol requeue:\n%s", st, logsOf(logs))
		time.Sleep(200 * time.Millisecond)
	}
	up, err = s.command("scontrol", "update", "JobId="+task1, "StartTime=now").CombinedOutput()
	require.NoError(t, err, "scontrol update: %s", up)

	err = <-arrayDone
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "sbatch --wait: %s\n%s", arrayErr.String(), logsOf(logs))
	assert.Equal(t, 2, ee.ExitCode(), "the array's exit status is its tasks' highest: 2, the shard with the broken CT")
	require.NoError(t, <-summarizeDone, "the summarize job: %s\n%s", summarizeOut.String(), logsOf(logs))

	// task 0 ran twice, appending to one log: stopped by the time limit's signal (75), requeued
	// by the script, then went on
	log0, err := os.ReadFile(filepath.Join(logs, "ctseg-"+jobID+"_0.log"))
	require.NoError(t, err)
	l0 := string(log0)
	t.Logf("task 0's log:\n%s", l0)
	assert.Contains(t, l0, "(shard 0 of 2) on ")
	assert.Contains(t, l0, ", run 1, GPU 0, adapter 0", "CTSEG_ADAPTER=slurm: the allocated GPU's index")
	assert.Contains(t, l0, ", run 2, GPU 0, adapter 0", "the requeued task ran again:\n%s", l0)
	assert.Contains(t, l0, "the time limit is near (USR1)", l0)
	assert.Contains(t, l0, "ctseg batch: stopped by SIGTERM", l0)
	assert.Contains(t, l0, "ctseg exited 75")
	assert.Equal(t, 1, strings.Count(l0, ": requeued itself"), "the script requeued the task once:\n%s", l0)
	assert.Regexp(t, `shard 0 of 2: 3 of the manifest's 5 cases; [12] already done, [12] to run`, l0, "the second run skips what the first did")
	assert.Equal(t, 1, strings.Count(l0, "] s1: ok"), "s1 was done once:\n%s", l0)
	// task 1 ran twice too: requeued by Slurm (scontrol requeue), not by itself
	log1, err := os.ReadFile(filepath.Join(logs, "ctseg-"+jobID+"_1.log"))
	require.NoError(t, err)
	l1 := string(log1)
	t.Logf("task 1's log:\n%s", l1)
	assert.Contains(t, l1, "shard 1 of 2: 2 of the manifest's 5 cases; 0 already done, 2 to run")
	assert.Contains(t, l1, ", run 2, GPU 0, adapter 0", "the requeued task ran again:\n%s", l1)
	assert.Regexp(t, `shard 1 of 2: 2 of the manifest's 5 cases; [12] already done, [01] to run`, l1, "the second run skips what the first did")
	assert.NotContains(t, l1, "requeued itself", "Slurm requeued it: the script must not")
	assert.NotContains(t, l1, "time limit is near", l1)
	assert.Equal(t, 1, strings.Count(l1, "] s2: ok"), "s2 was done once:\n%s", l1)

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

// TestSlurmCancel: a plain scancel of a running task (SIGTERM to the batch shell and to ctseg)
// stops ctseg cleanly (exit 75), and the task stays cancelled: the script does not requeue it
// (Slurm would honour a requeue asked for by a completing job submitted with --requeue).
func TestSlurmCancel(t *testing.T) {
	s := startSlurm(t)
	bin := ctsegBinary(t)
	d := t.TempDir()
	var cases []cohorttest.Case
	for i, xy := range []string{"0,0", "74,0", "0,53", "74,53", "37,26", "37,0"} {
		cases = append(cases, cohorttest.Case{ID: fmt.Sprintf("k%d", i+1), Input: "crop:" + xy, Age: "1", Site: "a"})
	}
	manifest := cohorttest.Write(t, d, cases)
	model := []string{"--weights", shared.Path(t, "golden", "segresnet_small", "model.pt"), "--spacing", "3", "--roi", "32", "--device", "gpu"}
	out := filepath.Join(d, "out")
	logs := filepath.Join(d, "logs")
	require.NoError(t, os.MkdirAll(logs, 0o755))
	submit := s.command("sbatch", "--parsable", "--array=0", "--cpus-per-task=1", "--mem=1000", "--chdir="+logs,
		filepath.Join(repoRoot(t), "deploy", "slurm", "ctseg-array.sbatch"))
	submit.Env = append(submit.Env, "CTSEG="+bin, "CTSEG_MANIFEST="+manifest, "CTSEG_OUT="+out, "CTSEG_SHARDS=1",
		"CTSEG_ARGS="+strings.Join(model, " "))
	b, err := submit.CombinedOutput()
	require.NoError(t, err, "sbatch: %s", b)
	task := strings.SplitN(strings.TrimSpace(string(b)), ";", 2)[0] + "_0"
	t.Cleanup(func() { s.command("scancel", task).Run() })
	logPath := filepath.Join(logs, "ctseg-"+task+".log")
	logText := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	// cancel it once it has done a case, with five to go
	deadline := time.Now().Add(5 * time.Minute)
	for !exists(filepath.Join(out, cohort.CasesDir, "k1", cohort.RecordName)) {
		require.True(t, time.Now().Before(deadline), "the task did not finish a case in 5 minutes:\n%s", logsOf(logs))
		time.Sleep(100 * time.Millisecond)
	}
	sc, err := s.command("scancel", task).CombinedOutput()
	require.NoError(t, err, "scancel: %s", sc)

	// it ends cancelled and stays so: never pending (requeued) again, nor running once the
	// script has ended
	var ended time.Time
	for {
		scriptDone := strings.Contains(logText(), "ctseg exited")
		st := s.state(task)
		require.NotContains(t, []string{"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}, st,
			"the cancelled task came back (%s):\n%s", st, logText())
		require.False(t, scriptDone && st == "RUNNING", "the cancelled task runs again:\n%s", logText())
		if st == "CANCELLED" || st == "" {
			if ended.IsZero() {
				ended = time.Now()
			}
			if time.Since(ended) > 5*time.Second {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "the task is %q, not cancelled, after scancel:\n%s", st, logText())
		time.Sleep(200 * time.Millisecond)
	}
	l := logText()
	t.Logf("the task's log:\n%s", l)
	assert.Contains(t, l, "ctseg batch: stopped by SIGTERM", "ctseg stopped cleanly")
	assert.Contains(t, l, "ctseg exited 75")
	assert.NotContains(t, l, "requeued itself")
	assert.NotContains(t, l, "the time limit is near")
	assert.NotContains(t, l, ", run 2,", "the cancelled task ran again")
	assert.NotContains(t, l, "[6/6]", "cancelled before its last case")
}

// TestSlurmScript runs ctseg-array.sbatch outside Slurm (no root needed), with stand-ins for
// ctseg (it exits 75 on SIGTERM, as ctseg batch does) and scontrol (it records its arguments):
// USR1, the time limit's early signal, stops ctseg and requeues the task (up to
// CTSEG_MAX_REQUEUES); SIGTERM, as scancel sends it, stops ctseg and never requeues; without
// --array the script refuses in one line.
func TestSlurmScript(t *testing.T) {
	script := filepath.Join(repoRoot(t), "deploy", "slurm", "ctseg-array.sbatch")
	text, err := os.ReadFile(script)
	require.NoError(t, err)
	assert.Contains(t, string(text), "\n#SBATCH --signal=B:USR1@", "the time limit's early signal is USR1, to the script")
	d := t.TempDir()
	bin := filepath.Join(d, "bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	record := filepath.Join(d, "record")
	require.NoError(t, os.WriteFile(filepath.Join(bin, "ctseg"), []byte(`#!/bin/bash
trap 'echo "ctseg: TERM" >>"$FAKE_RECORD"; sleep 0.5; exit 75' TERM
echo "ctseg: $*" >>"$FAKE_RECORD"
touch "$FAKE_READY"
while :; do sleep 0.05; done
`), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "scontrol"), []byte("#!/bin/bash\necho \"scontrol: $*\" >>\"$FAKE_RECORD\"\n"), 0o755))
	env := append(testEnv(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_RECORD="+record, "CTSEG_MANIFEST=/m.csv", "CTSEG_OUT=/out", "CTSEG_SHARDS=4")
	array := []string{"SLURM_ARRAY_JOB_ID=7", "SLURM_ARRAY_TASK_ID=2", "SLURM_JOB_ID=9"}

	// run starts the script, sends it sigs (0.1 s apart) once ctseg runs, and returns its exit
	// status, output and what the stand-ins recorded; the stand-in takes 0.5 s to stop
	run := func(t *testing.T, sigs []syscall.Signal, more ...string) (int, string, string) {
		os.Remove(record)
		ready := filepath.Join(t.TempDir(), "ready")
		cmd := exec.Command("bash", script)
		cmd.Env = append(append(slices.Clone(env), "FAKE_READY="+ready), more...)
		var output bytes.Buffer
		cmd.Stdout, cmd.Stderr = &output, &output
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group: nothing of it outlives the test
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		deadline := time.Now().Add(30 * time.Second)
		for !exists(ready) {
			select {
			case err := <-done:
				t.Fatalf("the script ended before ctseg ran (%v):\n%s", err, output.String())
			default:
			}
			require.True(t, time.Now().Before(deadline), "ctseg did not start:\n%s", output.String())
			time.Sleep(20 * time.Millisecond)
		}
		for i, sig := range sigs {
			if i > 0 {
				time.Sleep(100 * time.Millisecond)
			}
			require.NoError(t, cmd.Process.Signal(sig))
		}
		var code int
		select {
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else {
				require.NoError(t, err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("the script did not end after %v:\n%s", sigs, output.String())
		}
		rec, _ := os.ReadFile(record)
		return code, output.String(), string(rec)
	}

	t.Run("time limit", func(t *testing.T) {
		code, out, rec := run(t, []syscall.Signal{syscall.SIGUSR1}, array...)
		assert.Equal(t, 75, code, out)
		assert.Contains(t, rec, "ctseg: batch --manifest /m.csv --out /out --shards 4\n")
		assert.Contains(t, rec, "ctseg: TERM\n", "USR1 is passed on to ctseg as SIGTERM")
		assert.Contains(t, rec, "scontrol: requeue 7_2\n", "the task requeues itself")
		assert.Contains(t, out, "task 7_2: requeued itself")
	})
	t.Run("time limit, requeued enough", func(t *testing.T) {
		code, out, rec := run(t, []syscall.Signal{syscall.SIGUSR1}, append(array, "SLURM_RESTART_COUNT=2", "CTSEG_MAX_REQUEUES=2")...)
		assert.Equal(t, 75, code, out)
		assert.Contains(t, rec, "ctseg: TERM\n")
		assert.NotContains(t, rec, "scontrol")
		assert.Contains(t, out, "not requeued: restarted 2 times already")
	})
	t.Run("scancel", func(t *testing.T) {
		code, out, rec := run(t, []syscall.Signal{syscall.SIGTERM}, array...)
		assert.Equal(t, 75, code, out)
		assert.Contains(t, rec, "ctseg: TERM\n", "SIGTERM is passed on to ctseg")
		assert.NotContains(t, rec, "scontrol", "a cancelled task must not requeue itself")
		assert.NotContains(t, out, "requeued")
	})
	t.Run("scancel after the time limit's signal", func(t *testing.T) {
		code, out, rec := run(t, []syscall.Signal{syscall.SIGUSR1, syscall.SIGTERM}, array...)
		assert.Equal(t, 75, code, out)
		assert.Contains(t, out, "the time limit is near")
		assert.NotContains(t, rec, "scontrol", "cancelled while stopping: it must not requeue itself")
	})
	t.Run("without --array", func(t *testing.T) {
		os.Remove(record)
		cmd := exec.Command("bash", script)
		cmd.Env = append(slices.Clone(env), "FAKE_READY="+filepath.Join(d, "never"), "SLURM_JOB_ID=9")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, 64, ee.ExitCode())
		assert.Empty(t, stdout.String())
		assert.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one line: %q", stderr.String())
		assert.Contains(t, stderr.String(), "ctseg-array.sbatch: not a task of a job array (no SLURM_ARRAY_TASK_ID): submit it with sbatch --array=0-N-1 and CTSEG_SHARDS=N (here 4)")
		assert.NoFileExists(t, record, "ctseg did not run")
	})
}
