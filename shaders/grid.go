package shaders

// grid1D spreads n invocations of workgroup size 256 over a 2-D grid (x at most 32768
// workgroups, under every device's 65535 limit). gx is the invocations per grid row the shader
// uses to rebuild the linear index.
func grid1D(n int) (x, y uint32, gx int) {
	wgs := ceilDiv(n, 256)
	if wgs == 0 {
		wgs = 1
	}
	xw := wgs
	if xw > 32768 {
		xw = 32768
	}
	return uint32(xw), uint32(ceilDiv(wgs, xw)), xw * 256
}
