// Sliding-window blending, accumulation step: for one window's features (the output of
// conv_final's GroupNorm + ReLU, fused here), add importance * feature to the accumulator. The
// final 1x1 conv is linear, so blending these {{.C}} channels and applying it afterwards
// equals MONAI's blending of the logits, in a fraction of the memory; the head divides by the
// sum of the importance weights, which it recomputes. The accumulator is a ring of slots along
// the volume's axis {{.Axis}} (its longest: the smallest plane), each slot [{{.C}} channels][{{.HV}}][{{.WV}}]
// over the two other axes at a stride of {{.Slot}} words; this dispatch binds the slots of a
// run of consecutive positions along that axis (window-local from prm.wa0).{{if .AccF16}}
// Channels are accumulated as packed f16 pairs (f32 arithmetic).{{end}}

struct Params { wa0: u32, nz: u32, ob: i32, oc: i32 } // run start, length; plane origins

{{if .F16}}@group(0) @binding(0) var<storage, read> feat: array<u32>;{{else}}@group(0) @binding(0) var<storage, read> feat: array<f32>;{{end}}
@group(0) @binding(1) var<storage, read> nrm: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gmap: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc: array<{{if .AccF16}}u32{{else}}f32{{end}}>;
@group(0) @binding(4) var<uniform> prm: Params;

const CP: u32 = {{.CP}}u;
const RB: u32 = {{.RB}}u; const RC: u32 = {{.RC}}u; // window size along the plane's axes
const SA: u32 = {{.SA}}u; const SB: u32 = {{.SB}}u; const SC: u32 = {{.SC}}u; // window strides
const RPLANE: u32 = {{.RPlane}}u;                   // window voxels
const HV: i32 = {{.HV}}; const WV: i32 = {{.WV}};
const HW: u32 = {{.HWV}}u;
const SLOT: u32 = {{.Slot}}u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
	let i = gid.x;
	if (i >= RB * RC || gid.y >= prm.nz) { return; }
	let wb = i / RC;
	let wc = i % RC;
	let gb = prm.ob + i32(wb);
	let gc = prm.oc + i32(wc);
	if (gb < 0 || gb >= HV || gc < 0 || gc >= WV) { return; }
	let wa = prm.wa0 + gid.y;
	let wv = wa * SA + wb * SB + wc * SC;
	let g = gmap[wv];
	let base = gid.y * SLOT + u32(gb * WV + gc);
	for (var cp = 0u; cp < CP; cp++) {
{{- if .F16}}
		let f = unpack2x16float(feat[cp * RPLANE + wv]);
{{- else}}
		let f = vec2<f32>(feat[2u * cp * RPLANE + wv], feat[(2u * cp + 1u) * RPLANE + wv]);
{{- end}}
		let n = nrm[cp];
		let a = max(vec2<f32>(n.x, n.z) * f + vec2<f32>(n.y, n.w), vec2<f32>(0.0));
{{- if .AccF16}}
		let o = base + cp * HW;
		acc[o] = pack2x16float(unpack2x16float(acc[o]) + g * a);
	}
{{- else}}
		let o = base + 2u * cp * HW;
		acc[o] += g * a.x;
		acc[o + HW] += g * a.y;
	}
{{- end}}
}
