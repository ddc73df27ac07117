// The probe: copies planes W0 .. W0+{{.NW}}-1 along the last axis of an activation
// [{{.C}}][{{.D}}][{{.H}}][{{.W}}] ({{if .F16}}channel pairs packed as f16{{else}}f32{{end}}) into f32
// [{{.C}}][{{.D}}][{{.H}}][{{.NW}}], so the host can read what a block computed without keeping its
// buffer, which the network reuses for later layers. One invocation per value copied.

@group(0) @binding(0) var<storage, read> src: array<{{if .F16}}u32{{else}}f32{{end}}>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

const D: u32 = {{.D}}u; const H: u32 = {{.H}}u; const W: u32 = {{.W}}u;
const NW: u32 = {{.NW}}u; const W0: u32 = {{.W0}}u;
const N: u32 = {{.N}}u; // values copied
const GX: u32 = {{.GX}}u; // invocations per row of the dispatch grid

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
	let o = gid.y * GX + gid.x;
	if (o >= N) { return; }
	let j = o % NW;
	let h = (o / NW) % H;
	let d = (o / (NW * H)) % D;
	let c = o / (NW * H * D);
	let i = (d * H + h) * W + W0 + j;
{{- if .F16}}
	let p = unpack2x16float(src[(c / 2u) * (D * H * W) + i]);
	dst[o] = select(p.x, p.y, (c & 1u) == 1u);
{{- else}}
	dst[o] = src[c * (D * H * W) + i];
{{- end}}
}
