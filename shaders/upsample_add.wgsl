// Trilinear x2 upsampling (align_corners=False: out[2k] = 0.75 in[k] + 0.25 in[k-1],
// out[2k+1] = 0.75 in[k] + 0.25 in[k+1], indices clamped) plus the skip connection.
// Low [{{.C}}][{{.D}}][{{.H}}][{{.W}}] -> out [{{.C}}][{{.D2}}][{{.H2}}][{{.W2}}].
// One invocation per (output voxel, channel pair).

{{if .F16}}@group(0) @binding(0) var<storage, read> low: array<u32>;
@group(0) @binding(1) var<storage, read> skip: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
{{- else}}@group(0) @binding(0) var<storage, read> low: array<f32>;
@group(0) @binding(1) var<storage, read> skip: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
{{- end}}

const D: u32 = {{.D}}u; const H: u32 = {{.H}}u; const W: u32 = {{.W}}u;
const H2: u32 = {{.H2}}u; const W2: u32 = {{.W2}}u;
const N2: u32 = {{.N2}}u;
const PL: u32 = {{.PL}}u; // low plane
const GX: u32 = {{.GX}}u; // invocations per row of the dispatch grid

fn taps(o: u32, n: u32) -> vec4<f32> {
	// (index a, index b, weight a, weight b)
	let k = o / 2u;
	if ((o & 1u) == 0u) {
		let a = select(k - 1u, 0u, k == 0u);
		return vec4<f32>(f32(a), f32(k), 0.25, 0.75);
	}
	let b = min(k + 1u, n - 1u);
	return vec4<f32>(f32(k), f32(b), 0.75, 0.25);
}

{{if .F16}}
fn lowv(cp: u32, i: u32) -> vec2<f32> { return unpack2x16float(low[cp * PL + i]); }
{{else}}
fn lowv(cp: u32, i: u32) -> vec2<f32> { return vec2<f32>(low[2u * cp * PL + i], low[(2u * cp + 1u) * PL + i]); }
{{end}}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
	let v = gid.y * GX + gid.x;
	if (v >= N2) { return; }
	let cp = gid.z;
	let x = v % W2;
	let y = (v / W2) % H2;
	let z = v / (W2 * H2);
	let tz = taps(z, D); let ty = taps(y, H); let tx = taps(x, W);
	var r = vec2<f32>(0.0);
	for (var i = 0u; i < 2u; i++) {
		let zi = u32(tz[i]); let wz = tz[2u + i];
		for (var j = 0u; j < 2u; j++) {
			let yi = u32(ty[j]); let wy = ty[2u + j];
			let row = (zi * H + yi) * W;
			r += wz * wy * (tx.z * lowv(cp, row + u32(tx.x)) + tx.w * lowv(cp, row + u32(tx.y)));
		}
	}
{{- if .F16}}
	let o = cp * N2 + v;
	dst[o] = pack2x16float(r + unpack2x16float(skip[o]));
{{- else}}
	let o0 = 2u * cp * N2 + v;
	let o1 = o0 + N2;
	dst[o0] = r.x + skip[o0];
	dst[o1] = r.y + skip[o1];
{{- end}}
}
