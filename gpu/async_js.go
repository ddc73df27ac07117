//go:build js

package gpu

import (
	"fmt"
	"syscall/js"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
)

// The browser backend of cogentcore/webgpu v0.23.0 awaits the promises of mapAsync and
// onSubmittedWorkDone inside its MapAsync and OnSubmittedWorkDone, so with it nothing could
// overlap the GPU: Runner.Ahead and ReadAsync would wait as soon as they were asked. These
// attach callbacks to the promises instead; pollUntil's sleeps yield to the event loop, which
// runs them.

// jsValue is the GPUBuffer or GPUQueue behind a binding object (its only field).
func jsValue[T wgpu.Buffer | wgpu.Queue](p *T) js.Value { return *(*js.Value)(unsafe.Pointer(p)) }

// then calls done(true) when the promise fulfils and done(false) when it rejects.
func then(promise js.Value, done func(ok bool)) {
	var ok, fail js.Func
	settle := func(v bool) {
		ok.Release()
		fail.Release()
		done(v)
	}
	ok = js.FuncOf(func(js.Value, []js.Value) any { settle(true); return nil })
	fail = js.FuncOf(func(js.Value, []js.Value) any { settle(false); return nil })
	promise.Call("then", ok, fail)
}

// mapRead asks for the first size bytes of b to be mapped for reading; done runs, from the
// event loop, with whether the map succeeded.
func mapRead(b *wgpu.Buffer, size uint64, done func(ok bool)) error {
	const mapRead = 1 // GPUMapMode.READ
	then(jsValue(b).Call("mapAsync", mapRead, 0, float64(size)), done)
	return nil
}

// onWorkDone runs done, from the event loop, once all work submitted to q so far has finished
// (or the device is lost: the error then comes through the context's error source).
func onWorkDone(q *wgpu.Queue, done func()) error {
	then(jsValue(q).Call("onSubmittedWorkDone"), func(bool) { done() })
	return nil
}

// writeBuffer uploads data through a JS copy made by js.CopyBytesToJS. The binding's
// WriteBuffer wraps Go's memory in place (jsx.BytesToJS: a view of the wasm memory's
// ArrayBuffer, fetched first, then passed to the Uint8ClampedArray constructor). If another
// goroutine grows Go's heap in between (Runner.Ahead cuts out the next window meanwhile), the
// memory's old ArrayBuffer is detached and the run dies with "Cannot perform Construct on a
// detached ArrayBuffer", as the page's end-to-end test saw once. CopyBytesToJS reads Go's
// memory within one call, where no other goroutine runs.
func writeBuffer(q *wgpu.Queue, b *wgpu.Buffer, offset uint64, data []byte) (err error) {
	defer func() {
		if r := recover(); r != nil { // a JS exception (a destroyed buffer, a lost device)
			err = fmt.Errorf("%v", r)
		}
	}()
	arr := js.Global().Get("Uint8Array").New(len(data))
	js.CopyBytesToJS(arr, data)
	jsValue(q).Call("writeBuffer", jsValue(b), float64(offset), arr)
	return nil
}
