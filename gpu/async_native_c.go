//go:build !js

package gpu

/*
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// The two asynchronous entry points of wgpu-native (lib/webgpu.h of cogentcore/webgpu
// v0.23.0), declared with plain types: WGPUBuffer and WGPUQueue are pointers, the flags and
// status enums 32-bit.
typedef void (*ctsegCallback)(uint32_t status, void *userdata);
typedef void (*ctsegErrorCallback)(uint32_t type, char const *message, void *userdata);
void wgpuDevicePushErrorScope(void *device, uint32_t filter);
void wgpuDevicePopErrorScope(void *device, ctsegErrorCallback callback, void *userdata);
uint64_t wgpuBufferGetSize(void *buffer);
void wgpuBufferMapAsync(void *buffer, uint32_t mode, size_t offset, size_t size, ctsegCallback callback, void *userdata);
void wgpuQueueOnSubmittedWorkDone(void *queue, ctsegCallback callback, void *userdata);

void ctsegAsyncDone(uint32_t status, uintptr_t handle); // Go, async_native.go

// The callbacks' userdata is C memory holding the Go handle, freed when the callback runs:
// wgpu-native keeps it until then, and C memory cannot be collected meanwhile.
static void ctsegTrampoline(uint32_t status, void *userdata) {
	uintptr_t h = *(uintptr_t *)userdata;
	free(userdata);
	ctsegAsyncDone(status, h);
}

static void *ctsegBox(uintptr_t h) {
	uintptr_t *p = malloc(sizeof *p);
	if (p) *p = h;
	return p;
}

// wgpu-native calls the pop's callback before returning.
static void ctsegRecordError(uint32_t type, char const *message, void *userdata) {
	*(uint32_t *)userdata = type;
}

// ctsegMapAsync returns 0 without memory, -1 on a validation error (caught in an error scope,
// as the binding does: uncaught, wgpu-native would abort), 1 when the map is pending.
static int ctsegMapAsync(void *device, void *buffer, uint32_t mode, size_t offset, size_t size, uintptr_t h) {
	void *p = ctsegBox(h);
	if (!p) return 0;
	uint32_t err = 0; // WGPUErrorType_NoError
	wgpuDevicePushErrorScope(device, 0); // WGPUErrorFilter_Validation
	wgpuBufferMapAsync(buffer, mode, offset, size, ctsegTrampoline, p);
	wgpuDevicePopErrorScope(device, ctsegRecordError, &err);
	return err == 0 ? 1 : -1;
}

static int ctsegOnWorkDone(void *queue, uintptr_t h) {
	void *p = ctsegBox(h);
	if (!p) return 0;
	wgpuQueueOnSubmittedWorkDone(queue, ctsegTrampoline, p);
	return 1;
}
*/
import "C"

import (
	"errors"
	"runtime/cgo"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
)

// wgpuObject is the layout of cogentcore/webgpu v0.23.0's Buffer and Queue: the device's and
// the object's C handles (TestAsyncHandlesSurviveGC checks it through wgpuBufferGetSize).
type wgpuObject struct{ device, ref unsafe.Pointer }

func object[T wgpu.Buffer | wgpu.Queue](p *T) *wgpuObject { return (*wgpuObject)(unsafe.Pointer(p)) }

var errNoMemory = errors.New("gpu: out of host memory for a callback")

// mapRead asks for the first size bytes of b to be mapped for reading; done runs inside a
// later Device.Poll with whether the map succeeded. It replaces the binding's MapAsync,
// which hands wgpu-native a pointer to a Go variable that nothing keeps alive: a garbage
// collection before the callback frees it, and the callback then reads whatever reused the
// memory (a panic on an invalid cgo.Handle, or a hang when another callback's handle is
// there instead).
func mapRead(b *wgpu.Buffer, size uint64, done func(ok bool)) error {
	h := cgo.NewHandle(func(status uint32) { done(status == uint32(wgpu.BufferMapAsyncStatusSuccess)) })
	o := object(b)
	switch C.ctsegMapAsync(o.device, o.ref, C.uint32_t(wgpu.MapModeRead), 0, C.size_t(size), C.uintptr_t(h)) {
	case 0:
		h.Delete()
		return errNoMemory
	case -1:
		// wgpu-native may still call back with an error status; the handle then stays
		// (a few bytes), rather than risk a callback on a deleted one
		return errors.New("gpu: the buffer cannot be mapped (validation error)")
	}
	return nil
}

// onWorkDone runs done inside a later Device.Poll once all work submitted to q so far has
// finished (the binding's OnSubmittedWorkDone has the same flaw as its MapAsync).
func onWorkDone(q *wgpu.Queue, done func()) error {
	h := cgo.NewHandle(func(uint32) { done() })
	if C.ctsegOnWorkDone(object(q).ref, C.uintptr_t(h)) == 0 {
		h.Delete()
		return errNoMemory
	}
	return nil
}

// refSize is the size of b as wgpu-native sees it through object(b): TestObjectLayout checks
// with it that the binding's layout is the one object assumes.
func refSize(b *wgpu.Buffer) uint64 { return uint64(C.wgpuBufferGetSize(object(b).ref)) }
