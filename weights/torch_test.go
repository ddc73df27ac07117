package weights

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"ctseg/internal/shared"
)

// tinyConfig is the smallest valid SegResNet: one level, no blocks (convInit and conv_final).
var tinyConfig = Config{InitFilters: 8, InChannels: 1, OutChannels: 2, BlocksDown: []int{0}, BlocksUp: []int{}}

// smallConfig has every kind of tensor (down conv, blocks, up samples, up blocks).
var smallConfig = Config{InitFilters: 8, InChannels: 1, OutChannels: 3, BlocksDown: []int{1, 1}, BlocksUp: []int{1}}

func TestReadTorchWrapped(t *testing.T) {
	sd := Random(smallConfig, 1)
	ts := fakeFromStateDict(sd)
	for _, key := range []string{"state_dict", "model", "model_state_dict", "network", "anything"} {
		t.Run(key, func(t *testing.T) {
			// {"epoch": 7, "lr": 0.5, "optimizer": {"lr": 0.1, "betas": [..]}, key: state_dict}
			p := new(pk).op(0x80, 2, '}', '(')
			p.str("epoch").int(7).str("lr").op('G', 0x3f, 0xe0, 0, 0, 0, 0, 0, 0)
			p.str("optimizer").op('}', '(').str("lr").op('N').str("betas").op(']', '(').int(1).int(2).op('e', 'u')
			p.str("flag").op(0x88)
			p.str(key).stateDict(ts).op('u', '.')
			got, err := ReadTorch(torchZip(t, p.Bytes(), ts))
			require.NoError(t, err)
			requireBitEqual(t, sd, got)
			_, err = InferConfig(got)
			require.NoError(t, err)
		})
	}
}

func TestReadTorchVariants(t *testing.T) {
	vals := []float32{1, -2, 0.5, 3.25, -0.125, 7}
	cases := []struct {
		name  string
		ts    []fakeTensor
		want  []*Tensor
		build func([]fakeTensor) []byte // pickle; default bare state dict
	}{
		{
			name: "module prefix stripped",
			ts:   []fakeTensor{{name: "module.a", shape: []int64{2}, data: vals[:2]}, {name: "module.b.c", shape: []int64{1}, data: vals[2:3]}},
			want: []*Tensor{{Name: "a", Shape: []int{2}, Data: vals[:2]}, {Name: "b.c", Shape: []int{1}, Data: vals[2:3]}},
		},
		{
			name: "module prefix kept unless on every key",
			ts:   []fakeTensor{{name: "module.a", shape: []int64{2}, data: vals[:2]}, {name: "b", shape: []int64{1}, data: vals[2:3]}},
			want: []*Tensor{{Name: "module.a", Shape: []int{2}, Data: vals[:2]}, {Name: "b", Shape: []int{1}, Data: vals[2:3]}},
		},
		{
			name: "float16 and bfloat16 storages",
			ts: []fakeTensor{
				{name: "h", shape: []int64{2, 3}, data: vals, dtype: "HalfStorage"},
				{name: "bf", shape: []int64{3}, data: vals[:3], dtype: "BFloat16Storage"},
			},
			want: []*Tensor{{Name: "h", Shape: []int{2, 3}, Data: vals}, {Name: "bf", Shape: []int{3}, Data: vals[:3]}},
		},
		{
			name: "storage offset and odd strides on unit axes",
			ts:   []fakeTensor{{name: "w", shape: []int64{1, 3, 1}, stride: []int64{99, 1, 5}, data: vals[:3], offset: 2, numel: 8}},
			want: []*Tensor{{Name: "w", Shape: []int{1, 3, 1}, Data: vals[:3]}},
		},
		{
			name: "parameters and a scalar",
			ts:   []fakeTensor{{name: "p", shape: []int64{2}, data: vals[:2], param: true}, {name: "s", shape: []int64{}, data: vals[5:6]}},
			want: []*Tensor{{Name: "p", Shape: []int{2}, Data: vals[:2]}, {Name: "s", Shape: []int{}, Data: vals[5:6]}},
		},
		{
			name: "empty tensor",
			ts:   []fakeTensor{{name: "e", shape: []int64{0, 4}, numel: 1, data: nil}},
			want: []*Tensor{{Name: "e", Shape: []int{0, 4}, Data: []float32{}}},
		},
		{
			name: "protocol 4 with FRAME, MEMOIZE and STACK_GLOBAL",
			ts:   []fakeTensor{{name: "a", shape: []int64{2}, data: vals[:2]}},
			build: func(ts []fakeTensor) []byte {
				p := new(pk).op(0x80, 4, 0x95, 0, 0, 0, 0, 0, 0, 0, 0)
				p.str("collections").op(0x94).str("OrderedDict").op(0x93, 0x94, ')', 'R', 0x94)
				p.str("a").tensor(ts[0]).op('s', '.')
				return p.Bytes()
			},
			want: []*Tensor{{Name: "a", Shape: []int{2}, Data: vals[:2]}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts := normalize(c.ts)
			var data []byte
			if c.build != nil {
				data = torchZip(t, c.build(ts), ts)
			} else {
				data = checkpoint(t, ts)
			}
			got, err := ReadTorch(data)
			require.NoError(t, err)
			requireBitEqual(t, NewStateDict(c.want), got)
		})
	}
}

func TestReadTorchSharedStorage(t *testing.T) {
	// Two tensors viewing one storage at different offsets (as a state dict of views does).
	vals := []float32{1, 2, 3, 4, 5, 6}
	ts := normalize([]fakeTensor{
		{name: "a", shape: []int64{2}, data: vals, key: "s", numel: 6},
		{name: "b", shape: []int64{3}, offset: 3, key: "s", numel: 6, noStore: true},
	})
	data := torchZip(t, new(pk).op(0x80, 2).stateDict(ts).op('.').Bytes(), ts)
	got, err := ReadTorch(data)
	require.NoError(t, err)
	require.Equal(t, []float32{1, 2}, got.Get("a").Data)
	require.Equal(t, []float32{4, 5, 6}, got.Get("b").Data)
}

// TestReadTorchRefusals: every hostile or broken checkpoint gives an error, never a panic.
func TestReadTorchRefusals(t *testing.T) {
	ok := []fakeTensor{{name: "a", shape: []int64{2, 2}, data: []float32{1, 2, 3, 4}}}
	bare := func(ts []fakeTensor) []byte {
		ts = normalize(ts)
		return torchZip(t, new(pk).op(0x80, 2).stateDict(ts).op('.').Bytes(), ts)
	}
	withPickle := func(p *pk) []byte { return torchZip(t, p.Bytes(), nil) }
	good := bare(ok)
	gold, err := os.ReadFile(shared.Path(t, "golden", "segresnet_small", "model.pt"))
	require.NoError(t, err)

	cases := []struct {
		name, data, want string
	}{
		{"GLOBAL os.system", string(withPickle(new(pk).op(0x80, 2).global("os", "system").str("id").op(0x85, 'R', '.'))),
			`checkpoint uses unsupported pickle global "os.system"`},
		{"GLOBAL builtins.eval", string(withPickle(new(pk).op(0x80, 2).global("builtins", "eval").op('.'))),
			`unsupported pickle global "builtins.eval"`},
		{"STACK_GLOBAL builtins.eval", string(withPickle(new(pk).op(0x80, 4).str("builtins").str("eval").op(0x93).str("1+1").op(0x85, 'R', '.'))),
			`unsupported pickle global "builtins.eval"`},
		{"STACK_GLOBAL os.system", string(withPickle(new(pk).op(0x80, 4).str("os").str("system").op(0x93, '.'))),
			`unsupported pickle global "os.system"`},
		{"torch global not allowed", string(withPickle(new(pk).op(0x80, 2).global("torch", "load").op('.'))),
			`unsupported pickle global "torch.load"`},
		{"unknown opcode", string(withPickle(new(pk).op(0x80, 2, 0xff, '.'))), "unsupported pickle opcode unknown (0xff)"},
		{"INST opcode", string(withPickle(new(pk).op(0x80, 2, 'i').op([]byte("os\nsystem\n")...).op('.'))), "unsupported pickle opcode INST"},
		{"REDUCE of a storage class", string(withPickle(new(pk).op(0x80, 2).global("torch", "FloatStorage").op(')', 'R', '.'))), "not supported"},
		{"no STOP", string(withPickle(new(pk).op(0x80, 2, '}'))), "no STOP"},
		{"stack underflow", string(withPickle(new(pk).op(0x80, 2, 's', '.'))), "stack underflow"},
		{"bad memo", string(withPickle(new(pk).op(0x80, 2, 'h', 9, '.'))), "memo entry 9"},
		{"truncated string", string(withPickle(new(pk).op(0x80, 2, 'X', 0xff, 0xff, 0, 0, 'a'))), "truncated"},
		{"top level list", string(withPickle(new(pk).op(0x80, 2, ']', '.'))), "holds a list, not a dict"},
		{"no tensors", string(withPickle(new(pk).op(0x80, 2, '}').str("epoch").int(3).op('s', '.'))), "no state dict"},
		{"two state dicts", string(func() []byte {
			ts := normalize(ok)
			p := new(pk).op(0x80, 2, '}', '(').str("ema").stateDict(ts).str("teacher").stateDict(ts).op('u', '.')
			return torchZip(t, p.Bytes(), ts)
		}()), "several state dicts (ema, teacher)"},
		{"truncated zip", string(good[:len(good)/2]), "zip"},
		{"truncated golden", string(gold[:len(gold)-100]), "zip"},
		{"not a zip", "PK\x03\x04garbage", "zip"},
		{"no data.pkl", string(writeZip(t, []zipEntry{{"archive/other.pkl", []byte{0x80, 2, '}', '.'}}})), "no <name>/data.pkl"},
		{"big-endian", string(writeZip(t, []zipEntry{{"archive/data.pkl", []byte{0x80, 2, '}', '.'}}, {"archive/byteorder", []byte("big")}})), "byte order"},
		{"truncated storage", string(func() []byte {
			ts := normalize(ok)
			ts[0].numel = 5 // pickle claims 5 elements; the record holds 4
			p := new(pk).op(0x80, 2).stateDict(ts).op('.')
			ts[0].numel = 4
			return torchZip(t, p.Bytes(), ts)
		}()), "storage data/0 holds 16 bytes, the pickle claims 5 elements"},
		{"tensor past storage end", string(bare([]fakeTensor{{name: "a", shape: []int64{4}, data: []float32{1, 2, 3, 4}, offset: 1, numel: 4}})),
			"needs elements 1..5 of a storage of 4"},
		{"missing storage record", string(bare([]fakeTensor{{name: "a", shape: []int64{1}, data: []float32{1}, noStore: true}})), "storage record data/0 is missing"},
		{"negative shape", string(bare([]fakeTensor{{name: "a", shape: []int64{-1, 2}, data: []float32{1, 2}, stride: []int64{2, 1}, numel: 2}})), "bad shape"},
		{"huge shape", string(bare([]fakeTensor{{name: "a", shape: []int64{1 << 20, 1 << 20}, data: []float32{1}, stride: []int64{1 << 20, 1}, numel: 1}})), "more than 2^31 elements"},
		{"huge storage numel", string(bare([]fakeTensor{{name: "a", shape: []int64{1}, data: []float32{1}, numel: 1 << 50, noStore: true}})), "claims 1125899906842624 elements"},
		{"non-contiguous", string(bare([]fakeTensor{{name: "a", shape: []int64{2, 2}, data: []float32{1, 2, 3, 4}, stride: []int64{1, 2}}})), "not contiguous"},
		{"int64 tensor", string(bare([]fakeTensor{{name: "a", shape: []int64{2}, data: []float32{1, 2}, dtype: "LongStorage"}})), "dtype I64"},
		{"float64 tensor", string(bare([]fakeTensor{{name: "a", shape: []int64{2}, data: []float32{1, 2}, dtype: "DoubleStorage"}})), "dtype F64"},
		{"backward hooks", string(func() []byte {
			ts := normalize(ok)
			p := new(pk).op(0x80, 2).orderedDict().str("a").global("torch._utils", "_rebuild_tensor_v2").op('(', '(')
			p.str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(4).op('t', 'Q')
			p.int(0).ints([]int64{4}).ints([]int64{1}).op(0x89).orderedDict().str("h").op('N', 's', 't', 'R', 's', '.')
			return torchZip(t, p.Bytes(), ts)
		}()), "backward hooks"},
		{"unhashable key", string(withPickle(new(pk).op(0x80, 2, '}', ']', 'N', 's', '.'))), "unsupported dict key of type list"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() { _, err = ReadTorch([]byte(c.data)) })
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
			require.NotContains(t, err.Error(), "\n")
		})
	}
}
