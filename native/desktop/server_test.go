//go:build !js

package desktop_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"ctseg/internal/shared"
	"ctseg/model"
	"ctseg/native/cli"
	"ctseg/native/desktop"
	"ctseg/pipeline"
	"ctseg/volume"
	"ctseg/weights"
)

// The API of `ctseg app` driven without a browser, through Go's HTTP client, on a real
// loopback listener. The runner is the real pipeline (pipeline.Segment on the CPU path, the
// small golden model, a 32^3 window): the test checks the API's guards, the job's life and that
// its outputs are the files `ctseg segment` writes.

// cpuRunner runs pipeline.Segment as `ctseg segment --device cpu` does.
type cpuRunner struct {
	net *model.Net
	win model.WindowOptions
}

func (r *cpuRunner) Capabilities() desktop.Capabilities {
	return desktop.Capabilities{Device: "cpu", Adapter: desktop.Adapter{Name: "CPU", Backend: "cpu"}, Precisions: []string{"f32"},
		Weights: []desktop.WeightVariant{{Spacing: 3, Name: "model.pt"}}}
}

func (r *cpuRunner) Check(spacing float64, f16 bool) error {
	if spacing != 3 {
		return errors.New("no weights for the 1.5 mm model")
	}
	return nil
}

func (r *cpuRunner) Segment(ct *volume.Volume, spacing float64, f16 bool, progress func(int, int), cancelled func() bool) (*pipeline.Result, error) {
	return pipeline.Segment(ct, r.net, pipeline.Options{Spacing: spacing, Window: r.win, Progress: progress, Cancelled: cancelled, Confidence: true, RunnerUp: true})
}

const testROI = 32

func loadRunner(t *testing.T) *cpuRunner {
	t.Helper()
	sd, err := weights.Load(shared.Path(t, "golden", "segresnet_small", "model.pt"))
	require.NoError(t, err)
	net, err := model.NewNet(sd)
	require.NoError(t, err)
	win := model.DefaultWindowOptions()
	win.ROI = [3]int{testROI, testROI, testROI}
	return &cpuRunner{net: net, win: win}
}

type testApp struct {
	srv  *desktop.Server
	port int
	base string // http://127.0.0.1:PORT
}

func startApp(t *testing.T, opt desktop.Options) *testApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	opt.Port = ln.Addr().(*net.TCPAddr).Port
	srv := desktop.New(opt)
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/weights" {
			io.WriteString(w, "[]")
			return
		}
		io.WriteString(w, "the page")
	})
	hs := &http.Server{Handler: srv.Handler(page)}
	go hs.Serve(ln)
	t.Cleanup(func() { srv.Close(); hs.Close() })
	return &testApp{srv: srv, port: opt.Port, base: fmt.Sprintf("http://127.0.0.1:%d", opt.Port)}
}

// client is a browser-like client: it keeps cookies and does not follow redirects.
func client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 5 * time.Minute}
}

// login swaps a launch token for a session and returns the CSRF token.
func (a *testApp) login(t *testing.T, c *http.Client) string {
	t.Helper()
	resp, err := c.Get(desktop.LaunchURL(a.port, a.srv.LaunchToken()))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	var v struct{ CSRF string }
	body := a.getJSON(t, c, "/api/session", "", &v)
	require.NotEmpty(t, v.CSRF, body)
	return v.CSRF
}

func (a *testApp) do(t *testing.T, c *http.Client, method, path, csrf string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, a.base+path, body)
	require.NoError(t, err)
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp, string(b)
}

func (a *testApp) getJSON(t *testing.T, c *http.Client, path, csrf string, v any) string {
	t.Helper()
	resp, body := a.do(t, c, http.MethodGet, path, csrf, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.NoError(t, jsonUnmarshal(body, v), body)
	return body
}

func TestRefusals(t *testing.T) {
	a := startApp(t, desktop.Options{Instance: "secret", MaxUpload: 4096, Runner: loadRunner(t)})
	c := client(t)
	port := fmt.Sprint(a.port)

	// Host: exactly 127.0.0.1, localhost or [::1] with the port; anything else is DNS rebinding.
	for host, want := range map[string]int{
		"127.0.0.1:" + port: 200, "localhost:" + port: 200, "LOCALHOST:" + port: 200, "[::1]:" + port: 200,
		"evil.example:" + port: 403, "127.0.0.1:1": 403, "127.0.0.1": 403, "127.0.0.2:" + port: 403,
	} {
		resp, _ := a.do(t, c, http.MethodGet, "/", "", nil, map[string]string{"Host": host})
		require.Equal(t, want, resp.StatusCode, "Host %q", host)
		require.NotEmpty(t, resp.Header.Get("Content-Security-Policy"), "Host %q: security headers", host)
	}

	// Launch tokens: a wrong one, then one that works once.
	resp, _ := a.do(t, c, http.MethodGet, "/launch?t=nope", "", nil, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = a.do(t, c, http.MethodGet, "/launch", "", nil, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	tok := a.srv.LaunchToken()
	resp, _ = a.do(t, c, http.MethodGet, "/launch?t="+tok, "", nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/", resp.Header.Get("Location"))
	ck := resp.Header.Get("Set-Cookie")
	require.Contains(t, ck, "HttpOnly")
	require.Contains(t, ck, "SameSite=Strict")
	resp, _ = a.do(t, client(t), http.MethodGet, "/launch?t="+tok, "", nil, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a used token")

	// The API: a cookie, then the CSRF header.
	stranger := client(t)
	for _, p := range []string{"/api/session", "/api/capabilities", "/api/weights", "/api/jobs/x/events"} {
		resp, _ := a.do(t, stranger, http.MethodGet, p, "", nil, nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s without a session", p)
		require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), p)
	}
	var s struct{ CSRF string }
	a.getJSON(t, c, "/api/session", "", &s)
	for _, csrf := range []string{"", "wrong", strings.ToUpper(s.CSRF)} {
		for _, p := range []string{"/api/capabilities", "/api/weights"} {
			resp, _ := a.do(t, c, http.MethodGet, p, csrf, nil, nil)
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s with CSRF %q", p, csrf)
		}
		resp, _ := a.do(t, c, http.MethodPost, "/api/jobs?spacing=3", csrf, strings.NewReader("x"), nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "POST with CSRF %q", csrf)
	}
	var caps desktop.Capabilities
	a.getJSON(t, c, "/api/capabilities", s.CSRF, &caps)
	require.Equal(t, "cpu", caps.Device)
	require.Equal(t, int64(4096), caps.MaxUploadBytes)
	resp, _ = a.do(t, c, http.MethodGet, "/api/weights", s.CSRF, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "the page's own API behind the guard")
	for k := range resp.Header {
		require.False(t, strings.HasPrefix(k, "Access-Control-"), "CORS header %s", k)
	}

	// A state-changing request from another origin, even with the right cookie and token.
	for _, origin := range []string{"http://evil.example", "null", "http://localhost:" + port, "https://127.0.0.1:" + port} {
		resp, _ := a.do(t, c, http.MethodPost, "/api/jobs?spacing=3", s.CSRF, strings.NewReader("x"), map[string]string{"Origin": origin})
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "Origin %q", origin)
	}

	// Bodies: over the cap (declared, or streamed without a length), not a CT, bad settings.
	big := bytes.Repeat([]byte{0}, 5000)
	resp, body := a.do(t, c, http.MethodPost, "/api/jobs?spacing=3", s.CSRF, bytes.NewReader(big), nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, body)
	resp, body = a.do(t, c, http.MethodPost, "/api/jobs?spacing=3", s.CSRF, io.MultiReader(bytes.NewReader(big)), nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, body)
	resp, body = a.do(t, c, http.MethodPost, "/api/jobs?spacing=2", s.CSRF, strings.NewReader("x"), nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	resp, body = a.do(t, c, http.MethodPost, "/api/jobs?spacing=3&precision=f64", s.CSRF, strings.NewReader("x"), nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	resp, body = a.do(t, c, http.MethodPost, "/api/jobs?spacing=1.5", s.CSRF, strings.NewReader("x"), nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "no weights for 1.5 mm: %s", body)
	resp, body = a.do(t, c, http.MethodGet, "/api/jobs/unknown/labels.nii.gz", s.CSRF, nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, body)
	resp, body = a.do(t, c, http.MethodDelete, "/api/jobs/unknown", s.CSRF, nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, body)

	// Token minting for a second instance needs a proof of the instance secret.
	resp, _ = a.do(t, stranger, http.MethodPost, "/launch/token", "", nil, map[string]string{"X-Ctseg-Nonce": strings.Repeat("a", 32), "X-Ctseg-Proof": "wrong"})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	_, err := desktop.RequestToken(desktop.Instance{PID: os.Getpid(), Port: a.port, Secret: "not-the-secret"})
	require.Error(t, err, "a token for the wrong secret")
	tok2, err := desktop.RequestToken(desktop.Instance{PID: os.Getpid(), Port: a.port, Secret: "secret"})
	require.NoError(t, err)
	resp, _ = a.do(t, client(t), http.MethodGet, "/launch?t="+tok2, "", nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

// TestMalformedCT: a body that is no CT gets 400 and the message `ctseg segment` gives for the
// same bytes in a file (the file's path aside).
func TestMalformedCT(t *testing.T) {
	a := startApp(t, desktop.Options{Runner: loadRunner(t)})
	c := client(t)
	csrf := a.login(t, c)
	good, err := os.ReadFile(shared.Path(t, "data", "ct", "example_ct_sm.nii.gz"))
	require.NoError(t, err)
	raw := rawNIfTI(t, good)
	cases := map[string][]byte{
		"random bytes":   bytes.Repeat([]byte("not a CT "), 100),
		"truncated gzip": good[:len(good)/2],
		"truncated":      raw[:len(raw)-1000],
		"a header only":  raw[:352],
		"empty":          {},
	}
	dir := t.TempDir()
	for name, b := range cases {
		resp, body := a.do(t, c, http.MethodPost, "/api/jobs?spacing=3", csrf, bytes.NewReader(b), nil)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", name, body)
		body = strings.TrimSpace(body)
		require.NotContains(t, body, "\n", name)
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".nii")
		require.NoError(t, os.WriteFile(f, b, 0o600))
		var out, errb bytes.Buffer
		code := cli.Main([]string{"segment", "--input", f, "--output", filepath.Join(dir, "o.nii.gz"), "--device", "cpu",
			"--weights", shared.Path(t, "golden", "segresnet_small", "model.pt"), "--spacing", "3"}, &out, &errb)
		require.Equal(t, 1, code, name)
		cliMsg := strings.TrimSpace(errb.String())
		_, detail, ok := strings.Cut(cliMsg, f+": ")
		require.True(t, ok, "%s: the CLI says %q", name, cliMsg)
		require.Equal(t, "read NIfTI request body: "+detail, body, "%s: the CLI says %q", name, cliMsg)
	}
}

// TestJob runs a job to the end: progress events, then done; the labels and statistics are
// the files `ctseg segment --output X.nii.gz --stats X.csv` writes for the same CT and
// settings, byte for byte, and p1.u8 the voxels of its --confidence file; p2.u8 and second.u8
// (the page's hesitation view) are consistent with them; a second job is refused while one
// runs; a cancel stops a run; DELETE leaves nothing behind.
func TestJob(t *testing.T) {
	r := loadRunner(t)
	a := startApp(t, desktop.Options{Runner: r})
	c := client(t)
	csrf := a.login(t, c)
	ctPath := shared.Path(t, "data", "ct", "example_ct_sm.nii.gz")
	ct, err := os.ReadFile(ctPath)
	require.NoError(t, err)

	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the server must write nothing, even temporary files

	id := postJob(t, a, c, csrf, ct, "3", "f32")
	// Another job while this one runs.
	resp, body := a.do(t, c, http.MethodPost, "/api/jobs?spacing=3", csrf, bytes.NewReader(ct), nil)
	require.Equal(t, http.StatusConflict, resp.StatusCode, body)
	events := readEvents(t, a, c, csrf, id)
	require.Greater(t, len(events), 2)
	last := events[len(events)-1]
	require.Equal(t, "done", last.event, "events %v", events)
	windows := 0
	for _, e := range events {
		if e.event == "progress" && strings.Contains(e.data, `"stage":"windows"`) {
			windows++
		}
	}
	require.GreaterOrEqual(t, windows, 2, "progress per window: %v", events)

	resp, labels := a.do(t, c, http.MethodGet, "/api/jobs/"+id+"/labels.nii.gz", csrf, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, stats := a.do(t, c, http.MethodGet, "/api/jobs/"+id+"/stats.csv", csrf, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	ref := t.TempDir()
	var out, errb bytes.Buffer
	code := cli.Main([]string{"segment", "--input", ctPath, "--output", filepath.Join(ref, "l.nii.gz"), "--stats", filepath.Join(ref, "s.csv"),
		"--confidence", filepath.Join(ref, "p1.nii"), "--device", "cpu", "--weights", shared.Path(t, "golden", "segresnet_small", "model.pt"), "--spacing", "3", "--roi", fmt.Sprint(testROI)}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	wantLabels, err := os.ReadFile(filepath.Join(ref, "l.nii.gz"))
	require.NoError(t, err)
	wantStats, err := os.ReadFile(filepath.Join(ref, "s.csv"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(wantLabels, []byte(labels)), "labels.nii.gz differs from ctseg segment's")
	require.Equal(t, string(wantStats), stats)
	require.Contains(t, strings.SplitN(stats, "\n", 2)[0], volume.ConfidenceColumn)

	// p1, p2 and the runner-up, one byte a voxel in the label map's order
	maps := map[string][]byte{}
	for _, n := range []string{"p1", "p2", "second"} {
		resp, b := a.do(t, c, http.MethodGet, "/api/jobs/"+id+"/"+n+".u8", csrf, nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, n)
		require.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"), n)
		maps[n] = []byte(b)
	}
	lab, _, err := volume.ReadLabels(filepath.Join(ref, "l.nii.gz"))
	require.NoError(t, err)
	conf, _, err := volume.ReadNIfTI(filepath.Join(ref, "p1.nii"))
	require.NoError(t, err)
	require.Len(t, maps["p1"], len(lab))
	require.Len(t, maps["p2"], len(lab))
	require.Len(t, maps["second"], len(lab))
	for i, l := range lab {
		require.Equal(t, uint8(math.Round(float64(conf.Data[i])*255)), maps["p1"][i], "p1 of voxel %d vs ctseg segment --confidence", i)
		require.LessOrEqual(t, maps["p2"][i], maps["p1"][i], "voxel %d: the runner-up's p above the label's", i)
		require.NotEqual(t, l, maps["second"][i], "voxel %d: the runner-up is the label", i)
	}

	resp, _ = a.do(t, c, http.MethodDelete, "/api/jobs/"+id, csrf, nil, nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	for _, p := range []string{"/events", "/labels.nii.gz", "/stats.csv", "/p1.u8", "/p2.u8", "/second.u8"} {
		resp, _ := a.do(t, c, http.MethodGet, "/api/jobs/"+id+p, csrf, nil, nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "after DELETE: %s", p)
	}

	// Cancel: the full-size sample at 3 mm is 100 windows of 32^3; DELETE after the first.
	big, err := os.ReadFile(shared.Path(t, "data", "ct", "example_ct.nii.gz"))
	require.NoError(t, err)
	id2 := postJob(t, a, c, csrf, big, "3", "f32")
	ch := streamEvents(t, a, c, csrf, id2)
	for e := range ch {
		if e.event == "progress" && strings.Contains(e.data, `"stage":"windows"`) && !strings.Contains(e.data, `"done":0`) {
			break
		}
	}
	resp, _ = a.do(t, c, http.MethodDelete, "/api/jobs/"+id2, csrf, nil, nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	var end sse
	for e := range ch {
		end = e
	}
	require.Equal(t, sse{"error", "cancelled"}, end)
	// The next job starts once the cancelled run has stopped.
	require.Eventually(t, func() bool {
		resp, _ := a.do(t, c, http.MethodPost, "/api/jobs?spacing=3", csrf, strings.NewReader("not a CT"), nil)
		return resp.StatusCode == http.StatusBadRequest
	}, time.Minute, 100*time.Millisecond, "the cancelled run did not stop")
	es, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, es, "files left in the temporary folder")
}

func postJob(t *testing.T, a *testApp, c *http.Client, csrf string, ct []byte, spacing, precision string) string {
	t.Helper()
	resp, body := a.do(t, c, http.MethodPost, "/api/jobs?spacing="+spacing+"&precision="+precision, csrf, bytes.NewReader(ct),
		map[string]string{"Origin": a.base})
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var v struct{ ID string }
	require.NoError(t, jsonUnmarshal(body, &v))
	require.NotEmpty(t, v.ID)
	return v.ID
}

type sse struct{ event, data string }

func streamEvents(t *testing.T, a *testApp, c *http.Client, csrf, id string) <-chan sse {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, a.base+"/api/jobs/"+id+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-CSRF-Token", csrf)
	resp, err := c.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	ch := make(chan sse, 1000)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var e sse
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "event: "):
				e.event = strings.TrimPrefix(l, "event: ")
			case strings.HasPrefix(l, "data: "):
				e.data = strings.TrimPrefix(l, "data: ")
			case l == "":
				ch <- e
				e = sse{}
			}
		}
	}()
	return ch
}

func readEvents(t *testing.T, a *testApp, c *http.Client, csrf, id string) []sse {
	var out []sse
	for e := range streamEvents(t, a, c, csrf, id) {
		out = append(out, e)
	}
	return out
}

// TestClaim: a lock held for the app's life makes one app per user and host; a second finds
// the first through the runtime file and gets a launch token from it that works; the file is
// 0600 and goes when its app does; a file left by a dead app (no lock held) is rewritten, and
// whatever listens on the port it names is never asked; a server that does not know the secret
// cannot pass for the app.
func TestClaim(t *testing.T) {
	dir := t.TempDir()
	a := startApp(t, desktop.Options{Instance: "s1"})
	first := desktop.Instance{PID: os.Getpid(), Port: a.port, Secret: "s1"}
	release, other, _, err := desktop.Claim(context.Background(), dir, first)
	require.NoError(t, err)
	require.Nil(t, other)
	file := desktop.RuntimeFile(dir)
	fi, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	second := desktop.Instance{PID: os.Getpid(), Port: 1, Secret: "s2"}
	_, other, token, err := desktop.Claim(context.Background(), dir, second)
	require.ErrorIs(t, err, desktop.ErrRunning)
	require.Equal(t, first, *other)
	resp, _ := a.do(t, client(t), http.MethodGet, "/launch?t="+token, "", nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the handed-over token")

	release()
	_, err = os.Stat(file)
	require.True(t, os.IsNotExist(err), "the file stays after its app ends")

	// A file left by a dead app, naming a port where something else now listens: the next app
	// takes over without asking it.
	asked := 0
	impostor := startImpostor(t, &asked)
	for _, content := range []string{
		fmt.Sprintf(`{"pid":%d,"port":%d,"secret":"s1"}`, 1<<30, impostor),
		fmt.Sprintf(`{"pid":%d,"port":%d,"secret":"s1"}`, os.Getpid(), impostor),
		"{",
	} {
		require.NoError(t, os.WriteFile(file, []byte(content), 0o600))
		rel, other, _, err := desktop.Claim(context.Background(), dir, second)
		require.NoError(t, err, "file %s", content)
		require.Nil(t, other)
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		require.Contains(t, string(b), `"secret":"s2"`, "the new app's file")
		rel()
	}
	require.Zero(t, asked, "the impostor was asked for a token")
	_, err = desktop.RequestToken(desktop.Instance{PID: os.Getpid(), Port: impostor, Secret: "s1"})
	require.ErrorContains(t, err, "not the ctseg app")
}

// startImpostor listens like an app and hands out tokens without knowing any secret.
func startImpostor(t *testing.T, asked *int) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*asked++
		io.WriteString(w, `{"token":"attacker","proof":"0000"}`)
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// rawNIfTI is the CT of a .nii.gz as an uncompressed .nii.
func rawNIfTI(t *testing.T, b []byte) []byte {
	t.Helper()
	v, h, err := volume.ParseNIfTI(b)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, volume.EncodeNIfTI(&out, false, v, volume.WriteOptions{Ref: h}))
	return out.Bytes()
}

// TestClaimRefusesSharedFolder: a runtime folder others may write to is refused.
func TestClaimRefusesSharedFolder(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("folder modes are Unix's; on Windows the folder is in the user's profile")
	}
	dir := filepath.Join(t.TempDir(), "rt")
	require.NoError(t, os.Mkdir(dir, 0o777))
	require.NoError(t, os.Chmod(dir, 0o777))
	_, _, _, err := desktop.Claim(context.Background(), dir, desktop.Instance{PID: os.Getpid(), Port: 1, Secret: "s"})
	require.ErrorContains(t, err, "may be written by other users")
}

// TestUploadHoldsTheSlot: a job's slot is claimed before its CT is read, so a second upload is
// refused at once (not read alongside, each holding up to the cap); the slot comes back when
// an upload fails; stopping the app ends an upload in progress without waiting for it, and a
// later upload is refused.
func TestUploadHoldsTheSlot(t *testing.T) {
	a := startApp(t, desktop.Options{Runner: loadRunner(t)})
	c := client(t)
	csrf := a.login(t, c)

	// upload starts a POST whose body arrives only as pw is written; its status comes on the
	// channel (0 when the request failed).
	upload := func() (*io.PipeWriter, <-chan int) {
		pr, pw := io.Pipe()
		req, err := http.NewRequest(http.MethodPost, a.base+"/api/jobs?spacing=3&precision=f32", pr)
		require.NoError(t, err)
		req.ContentLength = 1 << 20 // declared: the server reserves it for this upload alone
		req.Header.Set("X-CSRF-Token", csrf)
		status := make(chan int, 1)
		go func() {
			resp, err := c.Do(req)
			if err != nil {
				status <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status <- resp.StatusCode
		}()
		_, err = pw.Write([]byte("not all of a CT"))
		require.NoError(t, err)
		return pw, status
	}
	busy := func() bool {
		resp, _ := a.do(t, c, http.MethodPost, "/api/jobs?spacing=3", csrf, strings.NewReader("not a CT"), nil)
		return resp.StatusCode == http.StatusConflict
	}

	pw, status := upload()
	require.Eventually(t, busy, 10*time.Second, 20*time.Millisecond, "a second upload while the first is read")
	pw.CloseWithError(errors.New("the client gave up"))
	<-status
	require.Eventually(t, func() bool {
		resp, _ := a.do(t, c, http.MethodPost, "/api/jobs?spacing=3", csrf, strings.NewReader("not a CT"), nil)
		return resp.StatusCode == http.StatusBadRequest
	}, 10*time.Second, 20*time.Millisecond, "the slot after a failed upload")

	// The app stops while a CT is arriving: Close ends the upload and does not wait for it.
	pw, status = upload()
	defer pw.Close()
	require.Eventually(t, busy, 10*time.Second, 20*time.Millisecond)
	closed := make(chan struct{})
	go func() { a.srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for an upload")
	}
	select {
	case code := <-status:
		require.NotEqual(t, http.StatusOK, code, "an upload ended by Close")
	case <-time.After(5 * time.Second):
		t.Fatal("the upload was not ended by Close")
	}
	resp, body := a.do(t, c, http.MethodPost, "/api/jobs?spacing=3", csrf, strings.NewReader("not a CT"), nil)
	require.NotEqual(t, http.StatusOK, resp.StatusCode, body)
}

// TestLaunchFileRemoved: the launch file OpenBrowser writes goes once its token is used (the
// browser has loaded it), another stays until RemoveLaunchFiles (the app stopping).
func TestLaunchFileRemoved(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("$BROWSER=true needs a Unix true")
	}
	t.Setenv("BROWSER", "true") // a browser that takes the address and exits
	dir := t.TempDir()
	a := startApp(t, desktop.Options{RuntimeDir: dir})
	launchFiles := func() []string {
		fs, err := filepath.Glob(filepath.Join(dir, "launch-*.html"))
		require.NoError(t, err)
		return fs
	}
	tok, other := a.srv.LaunchToken(), a.srv.LaunchToken()
	require.NoError(t, desktop.OpenBrowser(dir, desktop.LaunchURL(a.port, tok)))
	require.NoError(t, desktop.OpenBrowser(dir, desktop.LaunchURL(a.port, other)))
	require.Len(t, launchFiles(), 2)
	resp, _ := a.do(t, client(t), http.MethodGet, "/launch?t="+tok, "", nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	left := launchFiles()
	require.Len(t, left, 1, "the used token's launch file")
	b, err := os.ReadFile(left[0])
	require.NoError(t, err)
	require.Contains(t, string(b), "t="+other)
	desktop.RemoveLaunchFiles(dir)
	require.Empty(t, launchFiles(), "launch files after the app stopped")
}

// TestClaimInterrupted: waiting for a running app that does not answer ends at once when the
// context does (Ctrl-C), not after the hand-over's 20 seconds.
func TestClaimInterrupted(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	silent := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing answers there
	release, _, _, err := desktop.Claim(context.Background(), dir, desktop.Instance{PID: os.Getpid(), Port: silent, Secret: "s1"})
	require.NoError(t, err)
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, _, err = desktop.Claim(ctx, dir, desktop.Instance{PID: os.Getpid(), Port: 1, Secret: "s2"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
}
