//go:build js

package gpu

import (
	"errors"

	"github.com/cogentcore/webgpu/wgpu"
)

// queries is empty in the browser: the binding has no query sets, and WebGPU itself only puts
// timestamps at pass boundaries behind a flag. Context.Timestamps stays false there.
type queries struct{}

var errNoTimestamps = errors.New("gpu: timestamp queries are not available in the browser")

// NewTiming fails in the browser.
func (c *Context) NewTiming() (*Timing, error) { return nil, errNoTimestamps }

// Release does nothing in the browser.
func (t *Timing) Release() {}

func (t *Timing) record(*wgpu.CommandEncoder, []Dispatch) error { return errNoTimestamps }

func (t *Timing) collect([]Dispatch, float64) error { return errNoTimestamps }
