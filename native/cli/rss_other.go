//go:build !linux && !js

package cli

// peakRSS is unknown on this system.
func peakRSS() uint64 { return 0 }
