//go:build !js

package desktop

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Instance is what the runtime file says of the running `ctseg app` of this user: enough for a
// second `ctseg app` to open the running one instead of starting another. The file is 0600 in
// a 0700 folder, so the secret is the user's alone.
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

const runtimeName = "app.json"

// Claim makes this process the user's running app: it creates the runtime file exclusively,
// so of two apps starting at once one wins. When the file exists, it returns the instance it
// names and ErrRunning if that instance is alive (its process exists and it hands out a launch
// token for the secret), after removing the file if it is stale.
func Claim(dir string, me Instance) (running *Instance, release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("runtime folder: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, nil, fmt.Errorf("runtime folder: %w", err)
	}
	path := filepath.Join(dir, runtimeName)
	for attempt := 0; attempt < 3; attempt++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			werr := json.NewEncoder(f).Encode(me)
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				os.Remove(path)
				return nil, nil, fmt.Errorf("runtime file: %w", werr)
			}
			return nil, func() { removeIfMine(path, me) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, nil, fmt.Errorf("runtime file: %w", err)
		}
		other, rerr := readInstance(path)
		if rerr == nil && alive(*other) {
			return other, nil, ErrRunning
		}
		if rerr != nil && attempt == 0 {
			// Another app may be writing the file this instant: look again shortly.
			time.Sleep(200 * time.Millisecond)
			if other, rerr = readInstance(path); rerr == nil && alive(*other) {
				return other, nil, ErrRunning
			}
		}
		os.Remove(path) // stale: its process is gone or does not answer
	}
	return nil, nil, fmt.Errorf("runtime file %s: cannot be claimed", path)
}

// ErrRunning says the user's app is already running.
var ErrRunning = errors.New("ctseg app is already running")

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

func removeIfMine(path string, me Instance) {
	if in, err := readInstance(path); err == nil && *in == me {
		os.Remove(path)
	}
}

// alive reports whether the instance's process exists and its server answers for its secret.
func alive(in Instance) bool {
	if !processExists(in.PID) {
		return false
	}
	_, err := RequestToken(in)
	return err == nil
}

// RequestToken asks the running instance for a one-time launch token.
func RequestToken(in Instance) (string, error) {
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/launch/token", in.Port), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Ctseg-Instance", in.Secret)
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("the running app answered %s", resp.Status)
	}
	var v struct{ Token string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&v); err != nil || v.Token == "" {
		return "", errors.New("the running app sent no token")
	}
	return v.Token, nil
}

// LaunchURL is the address a browser opens to start a session with a launch token.
func LaunchURL(port int, token string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/launch?t=%s", port, token)
}
