//go:build !js

package desktop

import (
	"errors"
	"fmt"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// OpenBrowser opens the launch URL in the user's default browser: $BROWSER (a list of commands
// separated like PATH, "%s" standing for the address), else xdg-open on Linux and the BSDs
// (where a display exists), open on macOS, the URL handler of the Windows shell. As Jupyter
// does, the browser is given a 0600 file in the runtime folder that redirects to the URL, not
// the URL itself, so the launch token never appears on a command line other users can list.
// The token works once and for two minutes. The running app removes a launch file once its
// token is used (Options.RuntimeDir) and all of them when it stops (RemoveLaunchFiles); files
// older than a token's life are removed here too.
func OpenBrowser(dir, launchURL string) error {
	removeOldLaunchFiles(dir)
	f, err := os.CreateTemp(dir, launchPattern)
	if err != nil {
		return fmt.Errorf("writing the launch page: %w", err)
	}
	u := html.EscapeString(launchURL)
	_, werr := fmt.Fprintf(f, "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0; url=%s\"><title>ctseg</title><p><a href=\"%s\">Open ctseg</a></p>\n", u, u)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing the launch page: %w", werr)
	}
	target := (&url.URL{Scheme: "file", Path: filepath.ToSlash(f.Name())}).String()
	if runtime.GOOS == "windows" {
		target = "file:///" + strings.TrimPrefix(filepath.ToSlash(f.Name()), "/")
	}
	if err := startBrowser(target); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// launchPattern names the launch files in the runtime folder.
const launchPattern = "launch-*.html"

// RemoveLaunchFiles removes the launch files of the runtime folder: the app that holds the
// folder's lock does it when it stops, since every launch file points to it.
func RemoveLaunchFiles(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, launchPattern))
	for _, p := range files {
		os.Remove(p)
	}
}

// removeLaunchFile removes the launch file that carries token, once the token is used: the
// browser has loaded the file.
func removeLaunchFile(dir, token string) {
	if dir == "" || token == "" {
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, launchPattern))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil && len(b) < 4096 && strings.Contains(string(b), "t="+token+`"`) {
			os.Remove(p)
		}
	}
}

func removeOldLaunchFiles(dir string) {
	old, _ := filepath.Glob(filepath.Join(dir, launchPattern))
	for _, p := range old {
		if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > tokenLife {
			os.Remove(p)
		}
	}
}

func startBrowser(target string) error {
	var tried []string
	if b := os.Getenv("BROWSER"); b != "" {
		for _, c := range filepath.SplitList(b) {
			args := strings.Fields(c)
			if len(args) == 0 {
				continue
			}
			subst := false
			for i, a := range args {
				if strings.Contains(a, "%s") {
					args[i], subst = strings.ReplaceAll(a, "%s", target), true
				}
			}
			if !subst {
				args = append(args, target)
			}
			if err := start(args...); err == nil {
				return nil
			}
			tried = append(tried, args[0])
		}
	}
	var args []string
	switch runtime.GOOS {
	case "darwin":
		args = []string{"open", target}
	case "windows":
		args = []string{"rundll32", "url.dll,FileProtocolHandler", target}
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return errors.New("no display to open a browser on (over ssh?): open the address below in a browser on this computer, or use --no-open")
		}
		args = []string{"xdg-open", target}
	}
	if err := start(args...); err != nil {
		return fmt.Errorf("no browser could be opened (tried %s): %w; open the address below, or use --no-open", strings.Join(append(tried, args[0]), ", "), err)
	}
	return nil
}

// start runs a command and waits a little for its verdict: an opener (xdg-open, open) exits at
// once, 0 when a browser took the address; a browser started directly keeps running, which is
// success too. It is reaped whenever it exits.
func start(args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(3 * time.Second):
		return nil
	}
}
