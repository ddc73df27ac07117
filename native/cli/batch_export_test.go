//go:build !js

package cli

// SetRunFault makes batch's run of the network on each case fail as f says (f returns the
// error, or panics; nil runs the case) until restore is called.
func SetRunFault(f func(caseID string) error) (restore func()) {
	old := runFault
	runFault = f
	return func() { runFault = old }
}

// DeviceFailuresName is the case folder's count of device failures in a row.
const DeviceFailuresName = deviceFailuresName
