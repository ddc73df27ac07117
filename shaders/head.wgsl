// Sliding-window blending, final step, for a run of {{.NZ}} finalised z-slots: features =
// accumulator / weight sum, then conv_final's 1x1x1 conv ({{.C}} -> {{.K}}, with bias), then
// {{if .Argmax}}argmax over the {{.K}} classes (first maximum wins, as torch.argmax), written as
// bytes (four labels per word, the first in the low byte){{else}}the logits, written [{{.K}}][run voxels]{{end}}.

@group(0) @binding(0) var<storage, read> acc: array<{{if .AccF16}}u32{{else}}f32{{end}}>;
{{if .Uniform}}// weights and bias in uniform buffers: every invocation reads the same ones in the same
// order, which GPUs serve from a constant cache and CPU adapters as one scalar load per SIMD
// group (a storage load is one per invocation there)
@group(0) @binding(1) var<uniform> wts: array<vec4<f32>, {{.WQ}}>;  // [K][C], flat, in vec4s
@group(0) @binding(2) var<uniform> bias: array<vec4<f32>, {{.BQ}}>; // [K], in vec4s
fn wt(i: u32) -> f32 { return wts[i / 4u][i % 4u]; }
fn bs(k: u32) -> f32 { return bias[k / 4u][k % 4u]; }{{else}}@group(0) @binding(1) var<storage, read> wts: array<f32>;  // [K][C]
@group(0) @binding(2) var<storage, read> bias: array<f32>; // [K]
fn wt(i: u32) -> f32 { return wts[i]; }
fn bs(k: u32) -> f32 { return bias[k]; }{{end}}
@group(0) @binding(3) var<storage, read_write> dst: array<{{if .Argmax}}u32{{else}}f32{{end}}>;

const C: u32 = {{.C}}u;
const K: u32 = {{.K}}u;
const HW: u32 = {{.HWV}}u;
const SLOT: u32 = {{.Slot}}u;
const NV: u32 = {{.NV}}u; // voxels in the run
const GX: u32 = {{.GX}}u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
{{- if .Argmax}}
	// four consecutive voxels per invocation, their labels packed into one word (K <= 256)
	let t = gid.y * GX + gid.x;
	if (4u * t >= NV) { return; }
	var word = 0u;
	for (var j = 0u; j < 4u; j++) {
		let i = 4u * t + j;
		if (i >= NV) { break; }
{{- else}}
	let i = gid.y * GX + gid.x;
	if (i >= NV) { return; }
	{
{{- end}}
		let iz = i / HW;
		let v = i % HW;
		let base = iz * SLOT + v;
		var f: array<f32, {{.C}}>;
{{- if .AccF16}}
		let inv = 1.0 / bitcast<f32>(acc[base + {{.WPlane}}u]);
		for (var cp = 0u; cp < C / 2u; cp++) {
			let p = unpack2x16float(acc[base + cp * HW]) * inv;
			f[2u * cp] = p.x;
			f[2u * cp + 1u] = p.y;
		}
{{- else}}
		let inv = 1.0 / acc[base + {{.WPlane}}u];
		for (var c = 0u; c < C; c++) {
			f[c] = acc[base + c * HW] * inv;
		}
{{- end}}
{{- if .Argmax}}
		var best = -3.0e38;
		var arg = 0u;
{{- end}}
		for (var k = 0u; k < K; k++) {
			var s = bs(k);
			for (var c = 0u; c < C; c++) {
				s += wt(k * C + c) * f[c];
			}
{{- if .Argmax}}
			if (s > best) { best = s; arg = k; }
{{- else}}
			dst[k * NV + i] = s;
{{- end}}
		}
{{- if .Argmax}}
		word |= arg << (8u * j);
{{- end}}
	}
{{- if .Argmax}}
	dst[t] = word;
{{- end}}
}
