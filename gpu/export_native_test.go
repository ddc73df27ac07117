//go:build !js

package gpu

// RefSize exposes refSize to the external tests.
var RefSize = refSize
