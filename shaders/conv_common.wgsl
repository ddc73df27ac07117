{{/* Shared by conv3d.wgsl and conv3d_tiled.wgsl: bindings, the input load and the output store. */}}
{{define "conv_bindings"}}
struct Params { z0: u32, pad0: u32, pad1: u32, pad2: u32 }

{{if .InF16}}@group(0) @binding(0) var<storage, read> src: array<u32>;{{else}}@group(0) @binding(0) var<storage, read> src: array<f32>;{{end}}
@group(0) @binding(1) var<storage, read> wts: array<vec4<f32>>;
{{if .OutF16}}@group(0) @binding(2) var<storage, read_write> dst: array<u32>;{{else}}@group(0) @binding(2) var<storage, read_write> dst: array<f32>;{{end}}
@group(0) @binding(3) var<uniform> prm: Params;
{{- $b := 4}}
{{if .NormIn}}@group(0) @binding({{$b}}) var<storage, read> nrm: array<vec4<f32>>; // per channel pair: (scale0, shift0, scale1, shift1)
{{- $b = add $b 1}}{{end}}
{{if .Residual}}{{if .OutF16}}@group(0) @binding({{$b}}) var<storage, read> res: array<u32>;{{else}}@group(0) @binding({{$b}}) var<storage, read> res: array<f32>;{{end}}
{{- $b = add $b 1}}{{end}}
{{if .Bias}}@group(0) @binding({{$b}}) var<storage, read> bias: array<f32>;{{end}}
{{end}}

{{define "conv_load_in"}}
// load_in reads input channel pair icp at (z, y, x), with the fused GroupNorm+ReLU applied;
// zero in the padding. Needs D, H, W and PLANE_IN.
fn load_in(icp: u32, z: i32, y: i32, x: i32) -> vec2<f32> {
	if (x < 0 || x >= W || y < 0 || y >= H || z < 0 || z >= D) { return vec2<f32>(0.0); }
	let v = u32((z * H + y) * W + x);
{{- if .InF16}}
	var r = unpack2x16float(src[icp * PLANE_IN + v]);
{{- else if .SingleIn}}
	var r = vec2<f32>(src[v], 0.0);
{{- else}}
	var r = vec2<f32>(src[(2u * icp) * PLANE_IN + v], src[(2u * icp + 1u) * PLANE_IN + v]);
{{- end}}
{{- if .NormIn}}
	let n = nrm[icp];
	r = max(vec2<f32>(n.x, n.z) * r + vec2<f32>(n.y, n.w), vec2<f32>(0.0));
{{- end}}
	return r;
}
{{end}}

{{define "conv_store"}}
// store writes 4 output channels (oc..oc+3) of output voxel v: bias, residual, f16 packing.
fn store(v: u32, oc: u32, acc: vec4<f32>) {
	var r = acc;
{{- if .Bias}}
	r += vec4<f32>(bias[oc], bias[oc + 1u], bias[oc + 2u], bias[oc + 3u]);
{{- end}}
{{- if .OutF16}}
	let p0 = (oc / 2u) * PLANE_OUT + v;
	let p1 = p0 + PLANE_OUT;
{{- if .Residual}}
	r += vec4<f32>(unpack2x16float(res[p0]), unpack2x16float(res[p1]));
{{- end}}
	dst[p0] = pack2x16float(r.xy);
	dst[p1] = pack2x16float(r.zw);
{{- else}}
	let p = oc * PLANE_OUT + v;
{{- if .Residual}}
	r += vec4<f32>(res[p], res[p + PLANE_OUT], res[p + 2u * PLANE_OUT], res[p + 3u * PLANE_OUT]);
{{- end}}
	dst[p] = r.x;
	dst[p + PLANE_OUT] = r.y;
	dst[p + 2u * PLANE_OUT] = r.z;
	dst[p + 3u * PLANE_OUT] = r.w;
{{- end}}
}
{{end}}
