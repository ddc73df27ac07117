// Clears the bound range (ClearBuffer is native-only in wgpu v0.23.0). The length comes from
// the binding, so one pipeline clears ranges of any size.
@group(0) @binding(0) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
	let i = gid.y * (nwg.x * 256u) + gid.x;
	if (i < arrayLength(&dst)) { dst[i] = 0u; }
}
