// Sliding-window blending, final step, for a run of finalised z-slots (its first slice along
// the ring's axis and its voxel count in prm): features = accumulator / weight sum (the
// importance weights of the covering windows, added up in blending order: see weightSum),
// then conv_final's 1x1x1 conv ({{.C}} -> {{.K}}, with bias), then
// {{if .Argmax}}argmax over the {{.K}} classes (first maximum wins, as torch.argmax), written as
// bytes (four labels per word, the first in the low byte){{if .Confidence}}; and the model's
// confidence from the same scores: the softmax probability of the chosen class (p1) and of the
// runner-up (p2), accumulated as an online softmax (the sum of exp(s - max) rescaled whenever
// the maximum grows), written as pack2x16unorm(p1, p2) per voxel after the labels' words, then
// the runner-up's class as bytes after those{{end}}{{else}}the logits, written [{{.K}}][run voxels]{{end}}.

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
@group(0) @binding(4) var<storage, read> gmap: array<f32>;  // the window's importance map
@group(0) @binding(5) var<storage, read> cover: array<u32>; // shaders.Cover
struct Params { z0: u32, nv: u32 } // the run's first slice along the ring's axis, its voxels
@group(0) @binding(6) var<uniform> prm: Params;

const C: u32 = {{.C}}u;
const K: u32 = {{.K}}u;
const HW: u32 = {{.HWV}}u;
const WV: u32 = {{.WV}}u;
const SLOT: u32 = {{.Slot}}u;
const RSA: u32 = {{.RSA}}u; const RSB: u32 = {{.RSB}}u; const RSC: u32 = {{.RSC}}u; // window strides

// weightSum is the sum of the importance weights at volume voxel (ga, gb, gc) (ring axis,
// plane axes) of the windows covering it, added in the order blending added them: by start
// along the ring's axis, then along the plane's first axis, then its second. The same float32
// additions from zero give the same sum the blend would have accumulated.
fn weightSum(ga: u32, gb: u32, gc: u32) -> f32 {
	let fa = cover[{{.PA}}u + 2u * ga]; let na = cover[{{.PA}}u + 2u * ga + 1u];
	let fb = cover[{{.PB}}u + 2u * gb]; let nb = cover[{{.PB}}u + 2u * gb + 1u];
	let fc = cover[{{.PC}}u + 2u * gc]; let nc = cover[{{.PC}}u + 2u * gc + 1u];
	var s = 0.0;
	for (var ia = fa; ia < fa + na; ia++) {
		let la = u32(i32(ga) + bitcast<i32>(cover[{{.BA}}u + ia]));
		for (var ib = fb; ib < fb + nb; ib++) {
			let lb = u32(i32(gb) + bitcast<i32>(cover[{{.BB}}u + ib]));
			for (var ic = fc; ic < fc + nc; ic++) {
				let lc = u32(i32(gc) + bitcast<i32>(cover[{{.BC}}u + ic]));
				s += gmap[la * RSA + lb * RSB + lc * RSC];
			}
		}
	}
	return s;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
	let gx = nwg.x * 256u; // invocations per grid row
{{- if .Argmax}}
	// four consecutive voxels per invocation, their labels packed into one word (K <= 256)
	let t = gid.y * gx + gid.x;
	if (4u * t >= prm.nv) { return; }
	var word = 0u;
{{- if .Confidence}}
	let lw = (prm.nv + 3u) / 4u; // the labels' words; then nv confidence words; then the runner-ups'
	var word2 = 0u;
{{- end}}
	for (var j = 0u; j < 4u; j++) {
		let i = 4u * t + j;
		if (i >= prm.nv) { break; }
{{- else}}
	let i = gid.y * gx + gid.x;
	if (i >= prm.nv) { return; }
	{
{{- end}}
		let iz = i / HW;
		let v = i % HW;
		let base = iz * SLOT + v;
		let inv = 1.0 / weightSum(prm.z0 + iz, v / WV, v % WV);
		var f: array<f32, {{.C}}>;
{{- if .AccF16}}
		for (var cp = 0u; cp < C / 2u; cp++) {
			let p = unpack2x16float(acc[base + cp * HW]) * inv;
			f[2u * cp] = p.x;
			f[2u * cp + 1u] = p.y;
		}
{{- else}}
		for (var c = 0u; c < C; c++) {
			f[c] = acc[base + c * HW] * inv;
		}
{{- end}}
{{- if .Argmax}}
		var best = -3.0e38;
		var arg = 0u;
{{- if .Confidence}}
		var second = -3.0e38;
		var arg2 = 0u;
		var sum = 0.0; // sum over the classes so far of exp(s - best)
{{- end}}
{{- end}}
		for (var k = 0u; k < K; k++) {
			var s = bs(k);
			for (var c = 0u; c < C; c++) {
				s += wt(k * C + c) * f[c];
			}
{{- if .Confidence}}
			if (s > best) {
				sum = sum * exp(best - s) + 1.0;
				second = best; arg2 = arg;
				best = s; arg = k;
			} else {
				sum += exp(s - best);
				if (s > second) { second = s; arg2 = k; }
			}
{{- else if .Argmax}}
			if (s > best) { best = s; arg = k; }
{{- else}}
			dst[k * prm.nv + i] = s;
{{- end}}
		}
{{- if .Argmax}}
		word |= arg << (8u * j);
{{- end}}
{{- if .Confidence}}
		dst[lw + i] = pack2x16unorm(vec2<f32>(1.0 / sum, exp(second - best) / sum));
		word2 |= arg2 << (8u * j);
{{- end}}
	}
{{- if .Argmax}}
	dst[t] = word;
{{- end}}
{{- if .Confidence}}
	dst[lw + prm.nv + t] = word2;
{{- end}}
}
