//go:build !js

package cli

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAppInterruptibly: a start-up step that cannot be cancelled (opening the GPU) no longer
// holds the app once Ctrl-C ends the context; a step that finishes gives its result.
func TestAppInterruptibly(t *testing.T) {
	v, err := interruptibly(context.Background(), func() (int, error) { return 7, nil })
	if v != 7 || err != nil {
		t.Fatalf("got %d, %v", v, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	block := make(chan struct{})
	defer close(block)
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = interruptibly(ctx, func() (int, error) { <-block; return 0, nil })
	if !errors.Is(err, errInterrupted) {
		t.Fatalf("err = %v, want errInterrupted", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("returned after %v", d)
	}
}
