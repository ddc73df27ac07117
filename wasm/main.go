//go:build js

// Command wasm is ctseg in the browser: it runs inside the page's Web Worker (viewer/static/
// worker.js), which instantiates it, owns the GPUDevice and relays messages. It registers
// globalThis.ctsegGo, whose functions the worker calls:
//
//	loadCT(bytes, name)        -> Promise<{dims, spacing, affine, hu: Int16Array, ...}>
//	loadSeries(files, names, name) -> the same, for the files of a DICOM series
//	loadWeights(bytes, name)   -> Promise<{config, filters, classes, params, spacing}>
//	loadLabels(bytes, name, spacing?, p1?) -> Promise<{labels: Uint8Array, stats, p1?}> (a label
//	                              map of the CT made earlier, or by a native run with its p1)
//	segment(device, options)   -> Promise<{labels: Uint8Array, stats, windows, seconds}>
//	                              (options.cancelled() is polled between windows)
//	tune(device, options)      -> Promise<{tiles, defaultSeconds, tunedSeconds, method}>
//	labelsNifti()              -> Promise<Uint8Array> (.nii.gz on the input's grid)
//	dicomSeg()                 -> Promise<{parts: Uint8Array[], notes, segments, frames}> (the
//	                              DICOM Segmentation of the CT's series, in pieces)
//	statsCSV()                 -> Promise<string>
//	labelTable()               -> {names, colors} of the 105 classes
//	netInfo, preprocessStory, windowStory, probe, votes, occlude: the Teach view's (teach.go)
//
// The segmentation is pipeline.Segment, the same code `ctseg segment` runs natively; only
// the device comes from the browser (see gpu.go).
package main

import (
	"errors"
	"fmt"
	"syscall/js"
)

func main() {
	api := map[string]any{
		"loadCT":          asyncFunc(loadCT),
		"loadSeries":      asyncFunc(loadSeries),
		"loadWeights":     asyncFunc(loadWeights),
		"loadLabels":      asyncFunc(loadLabels),
		"segment":         asyncFunc(segment),
		"tune":            asyncFunc(tune),
		"labelsNifti":     asyncFunc(labelsNifti),
		"statsCSV":        asyncFunc(statsCSV),
		"dicomSeg":        asyncFunc(dicomSeg),
		"ctNifti":         asyncFunc(ctNifti),
		"netInfo":         asyncFunc(netInfo),
		"preprocessStory": asyncFunc(preprocessStory),
		"windowStory":     asyncFunc(windowStory),
		"probe":           asyncFunc(probe),
		"votes":           asyncFunc(votes),
		"occlude":         asyncFunc(occlude),
		"releaseTeach":    asyncFunc(releaseTeach),
		"labelTable":      js.FuncOf(func(js.Value, []js.Value) any { return labelTable() }),
	}
	js.Global().Set("ctsegGo", js.ValueOf(api))
	if ready := js.Global().Get("ctsegReady"); ready.Type() == js.TypeFunction {
		ready.Invoke()
	}
	select {} // serve calls until the worker is terminated
}

// asyncFunc exports f as a function returning a Promise. The work runs in a goroutine: GPU
// calls await JS promises, and awaiting inside the js.FuncOf callback itself deadlocks the
// Go scheduler ("all goroutines are asleep").
func asyncFunc(f func(args []js.Value) (any, error)) js.Func {
	return js.FuncOf(func(_ js.Value, args []js.Value) any {
		var resolve, reject js.Value
		executor := js.FuncOf(func(_ js.Value, p []js.Value) any {
			resolve, reject = p[0], p[1]
			return nil
		})
		promise := js.Global().Get("Promise").New(executor)
		executor.Release()
		go func() {
			v, err := call(f, args)
			if err != nil {
				e := js.Global().Get("Error").New(err.Error())
				var ue *userError
				if errors.As(err, &ue) {
					e.Set("name", ue.Kind) // the page chooses what to offer by it
				}
				reject.Invoke(e)
				return
			}
			resolve.Invoke(v)
		}()
		return promise
	})
}

// call runs f, turning a panic (a JS exception thrown through syscall/js, e.g. by a lost
// device) into an error so one failed run does not kill the program and its loaded data.
func call(f func(args []js.Value) (v any, err error), args []js.Value) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			var jsErr js.Error
			if e, ok := r.(error); ok && errors.As(e, &jsErr) {
				err = fmt.Errorf("browser error: %s", jsErr.Value.Get("message").String())
			} else {
				err = fmt.Errorf("internal error: %v", r)
			}
		}
	}()
	return f(args)
}

// bytesArg copies a Uint8Array argument into Go memory.
func bytesArg(v js.Value, what string) ([]byte, error) {
	if v.Type() != js.TypeObject || !v.InstanceOf(js.Global().Get("Uint8Array")) {
		return nil, fmt.Errorf("%s: expected a Uint8Array", what)
	}
	b := make([]byte, v.Get("length").Int())
	js.CopyBytesToGo(b, v)
	return b, nil
}

// uint8Array copies b into a new JS Uint8Array.
func uint8Array(b []byte) js.Value {
	a := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(a, b)
	return a
}
