//go:build !js

package gpu

// #include <stdint.h>
import "C"

import (
	"runtime/cgo"

	"github.com/cogentcore/webgpu/wgpu"
)

// writeBuffer is the binding's WriteBuffer natively (see the browser's for why it differs).
func writeBuffer(q *wgpu.Queue, b *wgpu.Buffer, offset uint64, data []byte) error {
	return q.WriteBuffer(b, offset, data)
}

// ctsegAsyncDone is the Go side of the callbacks of mapRead and onWorkDone.
//
//export ctsegAsyncDone
func ctsegAsyncDone(status C.uint32_t, handle C.uintptr_t) {
	h := cgo.Handle(handle)
	f := h.Value().(func(uint32))
	h.Delete()
	f(uint32(status))
}
