//go:build !js

package desktop

import (
	"fmt"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// OpenBrowser opens the launch URL in the user's default browser: $BROWSER (a list of commands
// separated like PATH, "%s" standing for the address), else xdg-open on Linux and the BSDs,
// open on macOS, the URL handler of the Windows shell. As Jupyter does, the browser is given a
// 0600 file in the runtime folder that redirects to the URL, not the URL itself, so the launch
// token never appears on a command line other users can list. The file is removed by the
// returned function (the token works once anyway).
func OpenBrowser(dir, launchURL string) (cleanup func(), err error) {
	f, err := os.CreateTemp(dir, "launch-*.html")
	if err != nil {
		return nil, fmt.Errorf("writing the launch page: %w", err)
	}
	u := html.EscapeString(launchURL)
	_, werr := fmt.Fprintf(f, "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0; url=%s\"><title>ctseg</title><p><a href=\"%s\">Open ctseg</a></p>\n", u, u)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	cleanup = func() { os.Remove(f.Name()) }
	if werr != nil {
		cleanup()
		return nil, fmt.Errorf("writing the launch page: %w", werr)
	}
	target := (&url.URL{Scheme: "file", Path: filepath.ToSlash(f.Name())}).String()
	if runtime.GOOS == "windows" {
		target = "file:///" + strings.TrimPrefix(filepath.ToSlash(f.Name()), "/")
	}
	if err := startBrowser(target); err != nil {
		cleanup()
		return nil, err
	}
	return cleanup, nil
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
		args = []string{"xdg-open", target}
	}
	if err := start(args...); err != nil {
		return fmt.Errorf("no browser could be opened (tried %s): open the address ctseg app printed, or use --no-open", strings.Join(append(tried, args[0]), ", "))
	}
	return nil
}

// start runs a command without waiting for it (a browser may run for hours), reaping it when
// it exits.
func start(args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}
