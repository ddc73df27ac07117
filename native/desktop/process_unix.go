//go:build !js && !windows

package desktop

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// tryLock takes an exclusive advisory lock on f without waiting; false when another process
// holds it.
func tryLock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

func unlock(f *os.File) { syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }

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
