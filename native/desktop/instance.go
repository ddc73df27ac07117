//go:build !js

package desktop

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Instance is what the runtime file says of the running `ctseg app` of this user on this
// host: enough for a second `ctseg app` to open the running one instead of starting another.
type Instance struct {
	PID    int    `json:"pid"`
	Port   int    `json:"port"`
	Secret string `json:"secret"`
}

// RuntimeDir is where the runtime file lives: $CTSEG_RUNTIME_DIR, else $XDG_RUNTIME_DIR/ctseg
// (Linux's per-user, memory-backed runtime folder), else the user cache folder's ctseg.
func RuntimeDir() (string, error) {
	if d := os.Getenv("CTSEG_RUNTIME_DIR"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "ctseg"), nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no folder for the app's runtime file: %w (set CTSEG_RUNTIME_DIR)", err)
	}
	return filepath.Join(d, "ctseg"), nil
}

// runtimeBase names the files of this host ("app-HOST"): a home folder shared between
// machines (NFS) must not make one machine's app open another's.
func runtimeBase() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	h = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, h)
	return "app-" + h
}

// RuntimeFile is the path of the runtime file in dir.
func RuntimeFile(dir string) string { return filepath.Join(dir, runtimeBase()+".json") }

// ErrRunning says the user's app is already running.
var ErrRunning = errors.New("ctseg app is already running")

// Claim makes this process the user's running app on this host. An advisory lock on
// app-HOST.lock, held for the app's whole life and released by the system however the process
// ends, decides who runs; the holder writes app-HOST.json (0600: pid, port, secret). An app
// that cannot take the lock reads the file and asks the running app for a launch token
// (ErrRunning, with the running instance and the token): so two apps starting at once never
// both run, and a file left by a dead app is simply rewritten by the next one (a dead process
// holds no lock). Waiting for the running app ends when ctx does (Ctrl-C), with ctx's error.
func Claim(ctx context.Context, dir string, me Instance) (release func(), running *Instance, token string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, "", fmt.Errorf("runtime folder: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, nil, "", fmt.Errorf("runtime folder: %w", err)
	}
	lockPath := filepath.Join(dir, runtimeBase()+".lock")
	path := RuntimeFile(dir)
	lf, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, "", fmt.Errorf("runtime lock: %w", err)
	}
	locked, err := tryLock(lf)
	if err != nil {
		lf.Close()
		return nil, nil, "", fmt.Errorf("runtime lock %s: %w", lockPath, err)
	}
	if !locked {
		lf.Close()
		in, token, err := handOver(ctx, path)
		if err != nil {
			return nil, nil, "", err
		}
		return nil, in, token, ErrRunning
	}
	if err := writePrivate(path, me); err != nil {
		unlock(lf)
		lf.Close()
		return nil, nil, "", fmt.Errorf("runtime file: %w", err)
	}
	// The lock file stays: removing it would let a later app lock a new file while another
	// still holds the old one.
	return func() {
		if in, err := readInstance(path); err == nil && *in == me {
			os.Remove(path)
		}
		unlock(lf)
		lf.Close()
	}, nil, "", nil
}

// handOver gets a launch token from the app that holds the lock. It may be starting (the file
// not yet written, the server not yet serving): it is given a few seconds, or until ctx ends.
func handOver(ctx context.Context, path string) (*Instance, string, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		in, err := readInstance(path)
		if err == nil {
			token, terr := requestToken(ctx, *in)
			if terr == nil {
				return in, token, nil
			}
			err = fmt.Errorf("ctseg app is already running (pid %d) but does not answer: %w", in.PID, terr)
		}
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("interrupted while waiting for the running ctseg app: %w", ctx.Err())
		}
		if time.Now().After(deadline) {
			return nil, "", err
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// writePrivate writes the instance to path through a 0600 temporary file and a rename, so a
// reader never sees half of it.
func writePrivate(path string, in Instance) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".app-*.tmp")
	if err != nil {
		return err
	}
	werr := json.NewEncoder(f).Encode(in)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		os.Remove(f.Name())
	}
	return werr
}

func readInstance(path string) (*Instance, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var in Instance
	if err := json.Unmarshal(b, &in); err != nil || in.PID <= 0 || in.Port <= 0 || in.Port > 65535 || in.Secret == "" {
		return nil, fmt.Errorf("runtime file %s is not valid", path)
	}
	return &in, nil
}

// The hand-over proves the secret both ways without sending it: the client sends a nonce and
// an HMAC of it, the app answers a token and an HMAC of the nonce and the token. A process
// that listens on a port a dead app left in its file learns neither the secret nor a way to
// pass for the app.
func proof(secret, what string) string {
	m := hmac.New(sha256.New, []byte(secret))
	io.WriteString(m, what)
	return hex.EncodeToString(m.Sum(nil))
}

func requestProof(secret, nonce string) string { return proof(secret, "ctseg launch request "+nonce) }

func tokenProof(secret, nonce, token string) string {
	return proof(secret, "ctseg launch token "+nonce+" "+token)
}

// RequestToken asks the running instance for a one-time launch token, and checks that the
// answer comes from the app that knows the secret.
func RequestToken(in Instance) (string, error) {
	return requestToken(context.Background(), in)
}

func requestToken(ctx context.Context, in Instance) (string, error) {
	nonce := randomHex(16)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/launch/token", in.Port), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Ctseg-Nonce", nonce)
	req.Header.Set("X-Ctseg-Proof", requestProof(in.Secret, nonce))
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the app on port %d answered %s", in.Port, resp.Status)
	}
	var v struct{ Token, Proof string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&v); err != nil || v.Token == "" {
		return "", fmt.Errorf("the app on port %d sent no token", in.Port)
	}
	if !hmac.Equal([]byte(v.Proof), []byte(tokenProof(in.Secret, nonce, v.Token))) {
		return "", fmt.Errorf("the server on port %d is not the ctseg app of the runtime file", in.Port)
	}
	return v.Token, nil
}

// LaunchURL is the address a browser opens to start a session with a launch token.
func LaunchURL(port int, token string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/launch?t=%s", port, token)
}
