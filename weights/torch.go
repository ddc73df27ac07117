package weights

import (
	"archive/zip"
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"path"
	"strings"
)

// Limits on the zip container (a real SegResNet checkpoint has 85 entries and a 15 KB
// pickle; these only stop hostile archives from asking for absurd work).
const (
	maxZipEntries  = 1 << 16
	maxPickleBytes = 64 << 20
	maxInflated    = 512 << 20 // total bytes decompressed from deflated records (the bundle: 75 MB)
)

// stateDictKeys are the keys under which MONAI / common training scripts nest the state
// dict in a larger checkpoint dict, in order of preference.
var stateDictKeys = []string{"state_dict", "model", "model_state_dict", "network", "net", "module"}

// ReadTorch reads a checkpoint written by torch.save (the zip container, PyTorch >= 1.6):
// either a bare state_dict or a dict that holds one. Tensors keep the pickle's order; float32,
// float16 and bfloat16 storages are converted to float32.
func ReadTorch(data []byte) (*StateDict, error) {
	sd, err := readTorch(data)
	if err != nil {
		return nil, fmt.Errorf("reading torch checkpoint: %w", err)
	}
	return sd, nil
}

type torchArchive struct {
	data     []byte
	prefix   string
	entries  map[string]*zip.File
	inflated int64
	cache    map[string][]byte // decompressed records (stored records are sliced, not cached)
}

func readTorch(data []byte) (*StateDict, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	if len(zr.File) > maxZipEntries {
		return nil, fmt.Errorf("archive has %d entries, more than %d", len(zr.File), maxZipEntries)
	}
	a := &torchArchive{data: data, entries: make(map[string]*zip.File, len(zr.File)), cache: map[string][]byte{}}
	var pkl *zip.File
	for _, f := range zr.File {
		if _, dup := a.entries[f.Name]; dup {
			return nil, fmt.Errorf("archive has two entries named %q", f.Name)
		}
		a.entries[f.Name] = f
		// torch writes "<stem>/data.pkl"; the stem is arbitrary, so find it rather than assume.
		if dir, base := path.Split(f.Name); base == "data.pkl" && strings.Count(dir, "/") == 1 {
			if pkl != nil {
				return nil, fmt.Errorf("archive has two pickles (%s, %s)", pkl.Name, f.Name)
			}
			pkl, a.prefix = f, dir
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("no <name>/data.pkl in the archive (not a torch.save file)")
	}
	if bo, ok := a.entries[a.prefix+"byteorder"]; ok {
		b, err := a.record(bo, 16)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(b)); s != "little" {
			return nil, fmt.Errorf("checkpoint byte order is %q; only little-endian is supported", s)
		}
	}
	p, err := a.record(pkl, maxPickleBytes)
	if err != nil {
		return nil, err
	}
	obj, err := unpickle(p)
	if err != nil {
		return nil, err
	}
	names, tensors, err := findStateDict(obj)
	if err != nil {
		return nil, err
	}
	names = stripModulePrefix(names)
	out := make([]*Tensor, len(names))
	for i, pt := range tensors {
		t, err := a.tensor(names[i], pt)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return NewStateDict(out), nil
}

// record returns the bytes of one zip entry. Stored entries (what torch.save writes) are
// sliced out of the file without a copy; their CRC is still checked unless it is 0, which
// torch writes when CRC computation is switched off.
func (a *torchArchive) record(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("record %s of %d bytes is over the %d byte limit", f.Name, f.UncompressedSize64, limit)
	}
	if b, ok := a.cache[f.Name]; ok {
		return b, nil
	}
	if f.Method == zip.Store && f.CompressedSize64 == f.UncompressedSize64 {
		off, err := f.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", f.Name, err)
		}
		if off < 0 || uint64(off) > uint64(len(a.data)) || f.UncompressedSize64 > uint64(len(a.data))-uint64(off) {
			return nil, fmt.Errorf("record %s runs past the end of the file (truncated?)", f.Name)
		}
		b := a.data[off : uint64(off)+f.UncompressedSize64]
		if f.CRC32 != 0 && crc32.ChecksumIEEE(b) != f.CRC32 {
			return nil, fmt.Errorf("record %s fails its CRC check (corrupt file)", f.Name)
		}
		return b, nil
	}
	if a.inflated+int64(f.UncompressedSize64) > maxInflated {
		return nil, fmt.Errorf("compressed records expand to more than %d bytes", int64(maxInflated))
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", f.Name, err)
	}
	defer rc.Close()
	// archive/zip checks the size and CRC against the directory when the read hits EOF.
	b, err := io.ReadAll(io.LimitReader(rc, int64(f.UncompressedSize64)+1))
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", f.Name, err)
	}
	if uint64(len(b)) != f.UncompressedSize64 {
		return nil, fmt.Errorf("record %s holds %d bytes, the directory says %d", f.Name, len(b), f.UncompressedSize64)
	}
	a.inflated += int64(len(b))
	a.cache[f.Name] = b
	return b, nil
}

// tensor copies one tensor out of its storage record, converting to float32.
func (a *torchArchive) tensor(name string, pt *pyTensor) (*Tensor, error) {
	st := pt.storage
	if !st.dtype.floating {
		return nil, fmt.Errorf("tensor %s has dtype %s; only float32, float16 and bfloat16 are supported", name, st.dtype.name)
	}
	f, ok := a.entries[a.prefix+"data/"+st.key]
	if !ok {
		return nil, fmt.Errorf("tensor %s: storage record data/%s is missing", name, st.key)
	}
	want := uint64(st.numel) * uint64(st.dtype.size) // numel <= 2^40: no overflow
	if f.UncompressedSize64 != want {
		return nil, fmt.Errorf("tensor %s: storage data/%s holds %d bytes, the pickle claims %d elements of %d bytes (truncated?)",
			name, st.key, f.UncompressedSize64, st.numel, st.dtype.size)
	}
	raw, err := a.record(f, 1<<62)
	if err != nil {
		return nil, err
	}
	n := numel(pt.size)
	es := int64(st.dtype.size)
	src := raw[pt.offset*es : (pt.offset+int64(n))*es] // bounds checked in rebuildTensor
	t := &Tensor{Name: name, Shape: pt.size, Data: make([]float32, n)}
	if err := decodeFloats(t.Data, src, st.dtype); err != nil {
		return nil, fmt.Errorf("tensor %s: %w", name, err)
	}
	return t, nil
}

// findStateDict picks the dict of tensors out of the unpickled object: the object itself when
// every value is a tensor, else the entry under one of stateDictKeys, else the only entry
// that is a dict of tensors.
func findStateDict(obj any) ([]string, []*pyTensor, error) {
	d, ok := obj.(*pyDict)
	if !ok {
		return nil, nil, fmt.Errorf("checkpoint holds a %s, not a dict", pyTypeName(obj))
	}
	if names, ts, ok := tensorDict(d); ok {
		return names, ts, nil
	}
	for _, k := range stateDictKeys {
		if i, ok := d.index[k]; ok {
			if sub, ok := d.vals[i].(*pyDict); ok {
				if names, ts, ok := tensorDict(sub); ok {
					return names, ts, nil
				}
			}
		}
	}
	var found []string
	var names []string
	var ts []*pyTensor
	for i, v := range d.vals {
		if sub, ok := v.(*pyDict); ok {
			if n, t, ok := tensorDict(sub); ok {
				found = append(found, fmt.Sprint(d.keys[i]))
				names, ts = n, t
			}
		}
	}
	switch len(found) {
	case 1:
		return names, ts, nil
	case 0:
		return nil, nil, fmt.Errorf("checkpoint holds no state dict (no dict whose values are all tensors)")
	}
	return nil, nil, fmt.Errorf("checkpoint holds several state dicts (%s); cannot tell which is the network", strings.Join(found, ", "))
}

// tensorDict reports whether d is a non-empty dict of string -> tensor.
func tensorDict(d *pyDict) ([]string, []*pyTensor, bool) {
	if len(d.keys) == 0 {
		return nil, nil, false
	}
	names := make([]string, len(d.keys))
	ts := make([]*pyTensor, len(d.keys))
	for i, k := range d.keys {
		s, ok1 := k.(string)
		t, ok2 := d.vals[i].(*pyTensor)
		if !ok1 || !ok2 {
			return nil, nil, false
		}
		names[i], ts[i] = s, t
	}
	return names, ts, true
}

// stripModulePrefix removes the "module." that nn.DataParallel adds, but only when every key
// has it, so a genuine top-level module called "module" is not mangled.
func stripModulePrefix(names []string) []string {
	for _, n := range names {
		if !strings.HasPrefix(n, "module.") {
			return names
		}
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.TrimPrefix(n, "module.")
	}
	return out
}
