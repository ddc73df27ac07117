// 3-D convolution, kernel {{.K}}^3, stride {{.S}}, zero padding {{.P}}, no dilation.
// Input  [{{.Cin}}][{{.D}}][{{.H}}][{{.W}}], output [{{.Cout}}][{{.Do}}][{{.Ho}}][{{.Wo}}].
// Register tiling: one invocation computes {{.XB}} consecutive x-voxels for {{.OCB}} output
// channels; a workgroup shares one output-channel block, so its weight reads are uniform.
// Input channels are taken in pairs (the f16 layout interleaves channel pairs in one u32).
// Fused: {{if .NormIn}}GroupNorm affine + ReLU on the input (scale/shift per channel), {{end}}{{if .Residual}}residual add, {{end}}{{if .Bias}}bias, {{end}}nothing else.

{{template "conv_bindings" .}}

const CINP: u32 = {{.CinP}}u;   // input channel pairs
const D: i32 = {{.D}}; const H: i32 = {{.H}}; const W: i32 = {{.W}};
const DO: u32 = {{.Do}}u; const HO: u32 = {{.Ho}}u; const WO: u32 = {{.Wo}}u;
const NXC: u32 = {{.NXC}}u;     // x-chunks per output row
const OCQ: u32 = {{.OCQ}}u;     // vec4 output-channel groups of the whole layer
const OCBQ: u32 = {{.OCBQ}}u;   // vec4 groups per invocation
const XB: u32 = {{.XB}}u;
const SPAN: u32 = {{.Span}}u;   // input x-values one (kz, ky) row of the tile needs
const PLANE_IN: u32 = {{.PlaneIn}}u;
const PLANE_OUT: u32 = {{.PlaneOut}}u;

{{template "conv_load_in" .}}

@compute @workgroup_size({{.WG}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
	let xc = gid.x % NXC;
	let oy = gid.x / NXC;
	if (oy >= HO) { return; }
	let oz = prm.z0 + wid.y;
	if (oz >= DO) { return; }
	let ob = wid.z;          // output-channel block
	let ox0 = xc * XB;
	var acc: array<vec4<f32>, {{.Acc}}>;  // [XB][OCBQ]
	let iz0 = i32(oz) * {{.S}} - {{.P}};
	let iy0 = i32(oy) * {{.S}} - {{.P}};
	let ix0 = i32(ox0) * {{.S}} - {{.P}};
	var row: array<vec2<f32>, {{.Span}}>;
	for (var icp = 0u; icp < CINP; icp++) {
		for (var kz = 0; kz < {{.K}}; kz++) {
			for (var ky = 0; ky < {{.K}}; ky++) {
				for (var j = 0u; j < SPAN; j++) {
					row[j] = load_in(icp, iz0 + kz, iy0 + ky, ix0 + i32(j));
				}
				let tap0 = u32((kz * {{.K}} + ky) * {{.K}});
				for (var kx = 0u; kx < {{.K}}u; kx++) {
					// weights: [icp][tap][pair half][OCQ]
					let wb = ((icp * {{.Taps}}u + tap0 + kx) * 2u) * OCQ + ob * OCBQ;
					for (var q = 0u; q < OCBQ; q++) {
						let w0 = wts[wb + q];
						let w1 = wts[wb + OCQ + q];
						for (var j = 0u; j < XB; j++) {
							let v = row[j * {{.S}}u + kx];
							acc[j * OCBQ + q] += v.x * w0 + v.y * w1;
						}
					}
				}
			}
		}
	}
	let obase = oz * HO * WO + oy * WO;
	for (var j = 0u; j < XB; j++) {
		let ox = ox0 + j;
		if (ox >= WO) { break; }
		let v = obase + ox;
		for (var q = 0u; q < OCBQ; q++) {
			store(v, (ob * OCBQ + q) * 4u, acc[j * OCBQ + q]);
		}
	}
}
{{template "conv_store" .}}
