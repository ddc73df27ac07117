//go:build !js && !windows

package desktop

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// processExists reports whether a process with this pid exists (signal 0 checks without
// sending anything; EPERM means it exists under another user).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// checkPrivateDir refuses a runtime folder that another user could write to or swap (a shared
// /tmp/ctseg made by someone else): they could plant a runtime file that sends our browser to
// their server.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s is not a folder", dir)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s may be written by other users (mode %v): make it private or set CTSEG_RUNTIME_DIR", dir, fi.Mode().Perm())
	case ok && int(st.Uid) != os.Getuid():
		return fmt.Errorf("%s belongs to another user: set CTSEG_RUNTIME_DIR to a folder of yours", dir)
	}
	return nil
}
