//go:build !js

package gpu

// #include <stdint.h>
import "C"

import "runtime/cgo"

// ctsegAsyncDone is the Go side of the callbacks of mapRead and onWorkDone.
//
//export ctsegAsyncDone
func ctsegAsyncDone(status C.uint32_t, handle C.uintptr_t) {
	h := cgo.Handle(handle)
	f := h.Value().(func(uint32))
	h.Delete()
	f(uint32(status))
}
