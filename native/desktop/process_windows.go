//go:build windows

package desktop

import "golang.org/x/sys/windows"

// processExists reports whether a process with this pid is still running.
func processExists(pid int) bool {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return false
	}
	defer windows.CloseHandle(h)
	var code uint32
	if err := windows.GetExitCodeProcess(h, &code); err != nil {
		return false
	}
	return code == 259 // STILL_ACTIVE
}

// checkPrivateDir: the runtime folder is under the user's own profile on Windows.
func checkPrivateDir(dir string) error { return nil }
