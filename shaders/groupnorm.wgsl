{{define "load"}}
{{- if .F16}}
fn load(c: u32, v: u32) -> f32 {
	let p = unpack2x16float(src[(c / 2u) * N + v]);
	return select(p.x, p.y, (c & 1u) == 1u);
}
{{- else}}
fn load(c: u32, v: u32) -> f32 { return src[c * N + v]; }
{{- end}}
{{end}}
// GroupNorm statistics, pass 1: partial (count, mean, M2) per (group, slice of the group's
// elements), Welford within an invocation and Chan's merge across the workgroup, so the
// variance keeps its precision whatever the mean (no E[x^2] - E[x]^2 cancellation). Values
// are shifted by the group's first element first, so a mean far larger than the spread does
// not eat f32's mantissa in the running mean; the shift travels in .w to the finalize pass.
// Input [{{.C}}][{{.N}} voxels], {{.G}} groups of {{.CPG}} channels, {{.P}} partials per group.

{{if .F16}}@group(0) @binding(0) var<storage, read> src: array<u32>;{{else}}@group(0) @binding(0) var<storage, read> src: array<f32>;{{end}}
@group(0) @binding(1) var<storage, read_write> partials: array<vec4<f32>>;

const N: u32 = {{.N}}u;
const CPG: u32 = {{.CPG}}u;
const P: u32 = {{.P}}u;
const WG: u32 = 256u;
{{template "load" .}}

var<workgroup> sn: array<f32, 256>;
var<workgroup> sm: array<f32, 256>;
var<workgroup> s2: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
	let g = wid.y;
	let p = wid.x;
	let total = CPG * N;
	let shift = load(g * CPG, 0u);
	var n = 0.0;
	var mean = 0.0;
	var m2 = 0.0;
	for (var e = p * WG + lid.x; e < total; e += P * WG) {
		let x = load(g * CPG + e / N, e % N) - shift;
		n += 1.0;
		let d = x - mean;
		mean += d / n;
		m2 += d * (x - mean);
	}
	sn[lid.x] = n; sm[lid.x] = mean; s2[lid.x] = m2;
	workgroupBarrier();
	for (var s = WG / 2u; s > 0u; s /= 2u) {
		if (lid.x < s) {
			let na = sn[lid.x]; let nb = sn[lid.x + s];
			let nt = na + nb;
			if (nt > 0.0) {
				let d = sm[lid.x + s] - sm[lid.x];
				sm[lid.x] = sm[lid.x] + d * nb / nt;
				s2[lid.x] = s2[lid.x] + s2[lid.x + s] + d * d * na * nb / nt;
				sn[lid.x] = nt;
			}
		}
		workgroupBarrier();
	}
	if (lid.x == 0u) {
		partials[g * P + p] = vec4<f32>(sn[0], sm[0], s2[0], shift);
	}
}
