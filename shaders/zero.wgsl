// Clears a bound range of {{.N}} words (ClearBuffer is native-only in wgpu v0.23.0).
@group(0) @binding(0) var<storage, read_write> dst: array<u32>;
const N: u32 = {{.N}}u;
const GX: u32 = {{.GX}}u;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
	let i = gid.y * GX + gid.x;
	if (i < N) { dst[i] = 0u; }
}
