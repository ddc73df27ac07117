//go:build !unix

package cache

import (
	"context"
	"fmt"
	"os"
)

// lockCache has no cross-process lock here (no flock): concurrent fetches could mix a
// partial download, which the md5 check then rejects and deletes.
func lockCache(_ context.Context, dir string, _ *reporter) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, diskError(dir, fmt.Errorf("creating the weights cache: %w", err), 0)
	}
	return func() {}, nil
}
