// 3-D convolution 3x3x3, stride 1, zero padding 1, tiled through workgroup memory.
// Input [{{.Cin}}][{{.D}}][{{.H}}][{{.W}}], output [{{.Cout}}][{{.D}}][{{.H}}][{{.W}}].
// A workgroup computes a {{.TY}}x{{.TX}} tile of one output slice for {{.TN}} output channels.
// For every chunk of {{.CK}} input channels it stages the input tile with its halo
// ({{.CK}} x 3 x {{.TY}}+2 x {{.TX}}+2, with the fused GroupNorm+ReLU applied once per value
// and zeros for the padding) and the chunk's weights in workgroup memory; each invocation then
// accumulates {{.MX}} x-voxels times {{.MN}} output channels in registers: {{if .Contig}}consecutive
// voxels, whose {{.MX}}+2 inputs per row come in vec4 loads from rows padded to {{.HXP}}{{else}}voxels interleaved
// {{.SX}} apart, so neighbouring invocations read neighbouring banks{{end}}.
// Fused: {{if .NormIn}}GroupNorm affine + ReLU on the input, {{end}}{{if .Residual}}residual add, {{end}}{{if .Bias}}bias, {{end}}nothing else.

{{template "conv_bindings" .}}

const D: i32 = {{.D}}; const H: i32 = {{.H}}; const W: i32 = {{.W}};
const PLANE: u32 = {{.Plane}}u;
const PLANE_IN: u32 = PLANE;
const PLANE_OUT: u32 = PLANE; // stride 1: input and output planes are equal
const OCQ: u32 = {{.OCQ}}u;       // vec4 groups of output channels in the layer
const TY: u32 = {{.TY}}u; const TX: u32 = {{.TX}}u;
const HY: u32 = {{.TY}}u + 2u; const HX: u32 = {{.HXP}}u; // staged rows (padded to vec4s when contiguous)
const HPLANE: u32 = 3u * HY * HX; // one staged input channel
const CK: u32 = {{.CK}}u;         // input channels per chunk (even)
const NCHUNK: u32 = {{.NChunk}}u;
const NIN: u32 = HPLANE * (CK / 2u); // staged input positions (channel pairs) per chunk
const NWT: u32 = CK * 27u * TNQ;     // staged weight vec4s per chunk
const TNQ: u32 = {{.TNQ}}u;       // vec4 groups of output channels per workgroup
const MNQ: u32 = {{.MNQ}}u;       // vec4 groups per invocation
const MX: u32 = {{.MX}}u;
const SX: u32 = {{.SX}}u;         // TX / MX: invocations along x
const NVG: u32 = {{.NVG}}u;       // voxel groups (TY * SX)
const THREADS: u32 = {{.Threads}}u;
const TILES_X: u32 = {{.TilesX}}u;

{{if .Contig}}var<workgroup> sin: array<vec4<f32>, {{.SIn}}>;    // [CK][3][HY][HX / 4]{{else}}var<workgroup> sin: array<f32, {{.SIn}}>;          // [CK][3][HY][HX]{{end}}
var<workgroup> sw: array<vec4<f32>, {{.SW}}>;      // [CK][27][TNQ]

@compute @workgroup_size({{.Threads}})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
	let tile = wid.x;
	let y0 = i32((tile / TILES_X) * TY);
	let x0 = i32((tile % TILES_X) * TX);
	let oz = i32(prm.z0 + wid.y);
	let ob = wid.z;                  // output-channel block of TNQ vec4 groups
	let vg = lid % NVG;              // this invocation's voxels: row ty, columns tx + j*SX
	let cg = lid / NVG;              // and output channels (cg*MNQ .. +MNQ) of the block
	let ty = vg / SX;
	let tx = vg % SX;
	let busy = cg < TNQ / MNQ;
	// accumulators a<j>_<q>: x-voxel j, vec4 channel group q; named scalars rather than an
	// array, so no compiler can demote them to local memory
{{- range $j := seq .MX}}{{range $q := seq $.MNQ}}
	var a{{$j}}_{{$q}} = vec4<f32>(0.0);
{{- end}}{{end}}
{{- if .Prefetch}}
	// the first chunk's staging values, loaded into registers; each chunk then stores them and
	// loads the next chunk's before computing, so the loads are in flight during the FMAs
{{- range $k := seq .NPF}}
	var p{{$k}} = loadIn(0u, lid + {{$k}}u * THREADS, oz, y0, x0);
{{- end}}
{{- range $k := seq .NWF}}
	var q{{$k}} = loadW(0u, lid + {{$k}}u * THREADS, ob);
{{- end}}
	for (var chunk = 0u; chunk < NCHUNK; chunk++) {
{{- range $k := seq .NPF}}
		if (lid + {{$k}}u * THREADS < NIN) { storeIn(lid + {{$k}}u * THREADS, p{{$k}}); }
{{- end}}
{{- range $k := seq .NWF}}
		if (lid + {{$k}}u * THREADS < NWT) { sw[lid + {{$k}}u * THREADS] = q{{$k}}; }
{{- end}}
		if (chunk + 1u < NCHUNK) {
{{- range $k := seq .NPF}}
			p{{$k}} = loadIn(chunk + 1u, lid + {{$k}}u * THREADS, oz, y0, x0);
{{- end}}
{{- range $k := seq .NWF}}
			q{{$k}} = loadW(chunk + 1u, lid + {{$k}}u * THREADS, ob);
{{- end}}
		}
{{- else}}
	for (var chunk = 0u; chunk < NCHUNK; chunk++) {
		// stage the input tile (one channel pair per position) and the chunk's weights
		for (var i = lid; i < NIN; i += THREADS) {
			storeIn(i, loadIn(chunk, i, oz, y0, x0));
		}
		for (var i = lid; i < NWT; i += THREADS) {
			sw[i] = loadW(chunk, i, ob);
		}
{{- end}}
		workgroupBarrier();
		if (busy) {
			for (var ck = 0u; ck < CK; ck++) {
				for (var kz = 0u; kz < 3u; kz++) {
					for (var ky = 0u; ky < 3u; ky++) {
						let tapb = (ck * 27u + (kz * 3u + ky) * 3u) * TNQ + cg * MNQ;
{{- if .Contig}}
						let rowb = (ck * HPLANE + (kz * HY + ty + ky) * HX) / 4u + tx * (MX / 4u);
{{- range $v := seq .NV4}}
						let r{{$v}} = sin[rowb + {{$v}}u];
{{- end}}
{{- range .XV}}
						let x{{.I}} = r{{.V}}.{{.C}};
{{- end}}
{{- range $kx := seq 3}}
{{- range $q := seq $.MNQ}}
						{
							let w = sw[tapb + {{$kx}}u * TNQ + {{$q}}u];
{{- range $j := seq $.MX}}
							a{{$j}}_{{$q}} += x{{add $j $kx}} * w;
{{- end}}
						}
{{- end}}
{{- end}}
{{- else}}
						let rowb = ck * HPLANE + (kz * HY + ty + ky) * HX + tx;
{{- range $kx := seq 3}}
{{- range $j := seq $.MX}}
						let x{{$j}}_{{$kx}} = sin[rowb + {{$j}}u * SX + {{$kx}}u];
{{- end}}
{{- range $q := seq $.MNQ}}
						{
							let w = sw[tapb + {{$kx}}u * TNQ + {{$q}}u];
{{- range $j := seq $.MX}}
							a{{$j}}_{{$q}} += x{{$j}}_{{$kx}} * w;
{{- end}}
						}
{{- end}}
{{- end}}
{{- end}}
					}
				}
			}
		}
		workgroupBarrier();
	}
	if (!busy) { return; }
	let oy = u32(y0) + ty;
	if (oy >= u32(H)) { return; }
	let obase = u32(oz) * u32(H * W) + oy * u32(W);
{{- range $j := seq .MX}}
	{
		let ox = u32(x0) + {{if $.Contig}}tx * MX + {{$j}}u{{else}}tx + {{$j}}u * SX{{end}};
		if (ox < u32(W)) {
			let v = obase + ox;
{{- range $q := seq $.MNQ}}
			store(v, ((ob * TNQ) + cg * MNQ + {{$q}}u) * 4u, a{{$j}}_{{$q}});
{{- end}}
		}
	}
{{- end}}
}

// loadIn is staged position i of a chunk: a channel pair of the input tile with its halo
// (load_in: the fused GroupNorm+ReLU applied, zero in the padding), zero for i past the tile.
fn loadIn(chunk: u32, i: u32, oz: i32, y0: i32, x0: i32) -> vec2<f32> {
	if (i >= NIN) { return vec2<f32>(0.0); }
	let r = i % HPLANE;
	let dz = i32(r / (HY * HX));
	let dy = i32((r / HX) % HY);
	let dx = i32(r % HX);
	return load_in(chunk * (CK / 2u) + i / HPLANE, oz - 1 + dz, y0 - 1 + dy, x0 - 1 + dx);
}

{{template "conv_load_in" .}}

// storeIn puts staged position i's channel pair into workgroup memory.
fn storeIn(i: u32, v: vec2<f32>) {
	let s0 = (2u * (i / HPLANE)) * HPLANE + i % HPLANE;
	let s1 = s0 + HPLANE;
{{- if .Contig}}
	sin[s0 / 4u][s0 % 4u] = v.x;
	sin[s1 / 4u][s1 % 4u] = v.y;
{{- else}}
	sin[s0] = v.x;
	sin[s1] = v.y;
{{- end}}
}

// loadW is staged weight i of a chunk: global [icp][tap][half][OCQ] -> [ck][tap][TNQ].
fn loadW(chunk: u32, i: u32, ob: u32) -> vec4<f32> {
	if (i >= NWT) { return vec4<f32>(0.0); }
	let q = i % TNQ;
	let t = (i / TNQ) % 27u;
	let ck = i / (TNQ * 27u);
	let ic = chunk * CK + ck;
	return wts[(((ic / 2u) * 27u + t) * 2u + (ic & 1u)) * OCQ + ob * TNQ + q];
}

{{template "conv_store" .}}
