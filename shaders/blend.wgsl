// Sliding-window blending, accumulation step: for one window's features (the output of
// conv_final's GroupNorm + ReLU, fused here), add importance * feature to the accumulator and
// importance to the weight sum. The final 1x1 conv is linear, so blending these {{.C}}
// channels and applying it afterwards equals MONAI's blending of the logits, in a fraction of
// the memory. The accumulator is a ring of z-slots, each slot
// [{{.C}} channels + weight sum][{{.HV}}][{{.WV}}] at a stride of {{.Slot}} floats; this dispatch
// binds the slots of a run of consecutive z (window-local z from prm.wz0). {{if .AccF16}}Channels are
// accumulated as packed f16 pairs (f32 arithmetic), the weight sum in f32.{{end}}

struct Params { wz0: u32, nz: u32, oy: i32, ox: i32 }

{{if .F16}}@group(0) @binding(0) var<storage, read> feat: array<u32>;{{else}}@group(0) @binding(0) var<storage, read> feat: array<f32>;{{end}}
@group(0) @binding(1) var<storage, read> nrm: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gmap: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc: array<{{if .AccF16}}u32{{else}}f32{{end}}>;
@group(0) @binding(4) var<uniform> prm: Params;

const CP: u32 = {{.CP}}u;
const RH: u32 = {{.RH}}u; const RW: u32 = {{.RW}}u; // window size (y, x)
const RPLANE: u32 = {{.RPlane}}u;                   // window voxels
const HV: i32 = {{.HV}}; const WV: i32 = {{.WV}};
const HW: u32 = {{.HWV}}u;
const SLOT: u32 = {{.Slot}}u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
	let i = gid.x;
	if (i >= RH * RW || gid.y >= prm.nz) { return; }
	let wy = i / RW;
	let wx = i % RW;
	let gy = prm.oy + i32(wy);
	let gx = prm.ox + i32(wx);
	if (gy < 0 || gy >= HV || gx < 0 || gx >= WV) { return; }
	let wz = prm.wz0 + gid.y;
	let wv = (wz * RH + wy) * RW + wx;
	let g = gmap[wv];
	let base = gid.y * SLOT + u32(gy * WV + gx);
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
	acc[base + {{.WPlane}}u] = bitcast<u32>(bitcast<f32>(acc[base + {{.WPlane}}u]) + g);
{{- else}}
		let o = base + 2u * cp * HW;
		acc[o] += g * a.x;
		acc[o + HW] += g * a.y;
	}
	acc[base + {{.WPlane}}u] += g;
{{- end}}
}
