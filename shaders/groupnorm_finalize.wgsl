// GroupNorm statistics, pass 2: merge a group's partials and write, per channel, the affine
// the consumer applies while loading: scale = gamma / sqrt(var + eps), shift = beta - mean *
// scale (population variance, eps {{.Eps}}). One invocation per channel.

@group(0) @binding(0) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> nrm: array<f32>; // [C][scale, shift]

const C: u32 = {{.C}}u;
const CPG: u32 = {{.CPG}}u;
const P: u32 = {{.P}}u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
	let c = gid.x;
	if (c >= C) { return; }
	let g = c / CPG;
	var n = 0.0;
	var mean = 0.0;
	var m2 = 0.0;
	for (var p = 0u; p < P; p++) {
		let q = partials[g * P + p];
		let nt = n + q.x;
		if (nt > 0.0) {
			let d = q.y - mean;
			mean = mean + d * q.x / nt;
			m2 = m2 + q.z + d * d * n * q.x / nt;
			n = nt;
		}
	}
	let scale = gamma[c] * inverseSqrt(m2 / n + {{.Eps}});
	// mean of the shifted values: beta - (mean + shift) * scale, split so the shift and the
	// small mean are not added first
	nrm[2u * c] = scale;
	nrm[2u * c + 1u] = (beta[c] - mean * scale) - partials[g * P].w * scale;
}
