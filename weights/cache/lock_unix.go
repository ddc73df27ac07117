//go:build unix

package cache

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockCache serialises fetches and imports across processes (two `make run` at once must not
// append to the same partial download). It flocks the cache folder itself, so no lock file is
// left behind, and the kernel drops the lock when a process dies, so a crash never leaves a
// stale one. One lock for the whole cache: variants are fetched one at a time anyway.
func lockCache(ctx context.Context, dir string, rep *reporter) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, diskError(dir, fmt.Errorf("creating the weights cache: %w", err), 0)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("locking the weights cache: %w", err)
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			f.Close()
			return nil, fmt.Errorf("locking the weights cache %s: %w", dir, err)
		}
		if !told {
			rep.line("waiting for another ctseg using the weights cache %s", dir)
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock on the weights cache %s: %w", dir, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
