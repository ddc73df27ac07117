package weights

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"

	"github.com/x448/float16"
)

// The project weight file uses the safetensors layout: an 8-byte little-endian header length
// H, H bytes of JSON ({"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}),
// then the raw little-endian tensor data. No pickle, so reading it runs no code, and any
// safetensors tool can inspect it.

// maxHeaderBytes follows the safetensors library's own 100 MB header limit.
const maxHeaderBytes = 100 << 20

// FormatName is the "format" metadata value of files written by WriteSafetensors.
const FormatName = "ctseg-segresnet"

// WriteOptions controls WriteSafetensors.
type WriteOptions struct {
	F16      bool              // store IEEE half precision (half the size; values must fit f16)
	Metadata map[string]string // extra string fields, e.g. "variant", "spacing"
}

// reservedMeta are the metadata keys WriteSafetensors sets itself.
var reservedMeta = []string{"format", "format_version", "config", "dtype", "param_count"}

type stEntry struct {
	Dtype       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets []uint64 `json:"data_offsets"`
}

// ReadSafetensors reads a safetensors-layout file (the project's weight file, or any
// safetensors file of F32/F16/BF16 tensors). Tensors come back in data order; the
// "__metadata__" strings are kept in StateDict.Meta.
func ReadSafetensors(data []byte) (*StateDict, error) {
	sd, err := readSafetensors(data)
	if err != nil {
		return nil, fmt.Errorf("reading safetensors: %w", err)
	}
	return sd, nil
}

func readSafetensors(data []byte) (*StateDict, error) {
	if len(data) < 8 {
		return nil, fmt.Errorf("file of %d bytes is too short for the header length", len(data))
	}
	h := binary.LittleEndian.Uint64(data)
	if h > uint64(len(data)-8) {
		return nil, fmt.Errorf("header length %d runs past the end of the %d byte file", h, len(data))
	}
	if h > maxHeaderBytes {
		return nil, fmt.Errorf("header length %d is over the %d byte limit", h, maxHeaderBytes)
	}
	body := data[8+h:]
	names, entries, meta, err := parseHeader(data[8 : 8+h])
	if err != nil {
		return nil, err
	}

	type item struct {
		name       string
		e          stEntry
		dt         *dtype
		n          int
		begin, end uint64
	}
	items := make([]item, len(names))
	for i, name := range names {
		e := entries[i]
		dt := safetensorsDtypes[e.Dtype]
		if dt == nil {
			return nil, fmt.Errorf("tensor %s has dtype %q; only F32, F16 and BF16 are supported", name, e.Dtype)
		}
		n, err := checkedNumel(e.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		if len(e.DataOffsets) != 2 {
			return nil, fmt.Errorf("tensor %s: data_offsets must be [begin, end]", name)
		}
		b, end := e.DataOffsets[0], e.DataOffsets[1]
		if b > end || end > uint64(len(body)) {
			return nil, fmt.Errorf("tensor %s: data_offsets [%d, %d] outside the %d data bytes", name, b, end, len(body))
		}
		if end-b != uint64(n)*uint64(dt.size) {
			return nil, fmt.Errorf("tensor %s: data_offsets [%d, %d] hold %d bytes, shape %v of %s needs %d",
				name, b, end, end-b, e.Shape, dt.name, uint64(n)*uint64(dt.size))
		}
		items[i] = item{name, e, dt, n, b, end}
	}
	// Data order is the order the writer chose (state_dict order for ctseg and the golden
	// files); the JSON object order is not guaranteed to mean anything.
	sort.SliceStable(items, func(i, j int) bool { return items[i].begin < items[j].begin })
	var prevEnd uint64
	prevName := ""
	for _, it := range items {
		if it.begin == it.end {
			continue // an empty tensor occupies nothing
		}
		if it.begin < prevEnd {
			return nil, fmt.Errorf("tensors %s and %s overlap in the data section", prevName, it.name)
		}
		prevEnd, prevName = it.end, it.name
	}
	ts := make([]*Tensor, len(items))
	for i, it := range items {
		shape := make([]int, len(it.e.Shape))
		for k, s := range it.e.Shape {
			shape[k] = int(s)
		}
		t := &Tensor{Name: it.name, Shape: shape, Data: make([]float32, it.n)}
		if err := decodeFloats(t.Data, body[it.begin:it.end], it.dt); err != nil {
			return nil, fmt.Errorf("tensor %s: %w", it.name, err)
		}
		ts[i] = t
	}
	sd := NewStateDict(ts)
	sd.Meta = meta
	return sd, nil
}

// parseHeader walks the header object with a token decoder, which keeps key order and lets
// duplicate keys be refused (encoding/json into a map would silently keep the last one).
func parseHeader(h []byte) ([]string, []stEntry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(h))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, nil, fmt.Errorf("header is not a JSON object")
	}
	var names []string
	var entries []stEntry
	var meta map[string]string
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("bad header JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, nil, fmt.Errorf("bad header JSON: key is not a string")
		}
		if seen[key] {
			return nil, nil, nil, fmt.Errorf("header names %q twice", key)
		}
		seen[key] = true
		if key == "__metadata__" {
			if err := dec.Decode(&meta); err != nil {
				return nil, nil, nil, fmt.Errorf("bad __metadata__ (must map strings to strings): %w", err)
			}
			continue
		}
		if key == "" {
			return nil, nil, nil, fmt.Errorf("header has a tensor with an empty name")
		}
		var e stEntry
		if err := dec.Decode(&e); err != nil {
			return nil, nil, nil, fmt.Errorf("bad header entry for %s: %w", key, err)
		}
		names = append(names, key)
		entries = append(entries, e)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, nil, nil, fmt.Errorf("bad header JSON: unterminated object")
	}
	// Only padding (spaces) may follow the object.
	if rest := bytes.TrimLeft(h[dec.InputOffset():], " \t\r\n"); len(rest) != 0 {
		return nil, nil, nil, fmt.Errorf("bad header JSON: trailing data after the object")
	}
	return names, entries, meta, nil
}

// WriteSafetensors writes sd in the project weight format. The state dict must be a valid
// SegResNet (InferConfig); the inferred config is recorded in the metadata together with
// opt.Metadata. Output is deterministic: tensors in sd order, metadata keys sorted.
func WriteSafetensors(w io.Writer, sd *StateDict, opt WriteOptions) error {
	if err := writeSafetensors(w, sd, opt); err != nil {
		return fmt.Errorf("writing safetensors: %w", err)
	}
	return nil
}

func writeSafetensors(w io.Writer, sd *StateDict, opt WriteOptions) error {
	cfg, err := InferConfig(sd)
	if err != nil {
		return err
	}
	dt := dtF32
	if opt.F16 {
		dt = dtF16
		// Check the range before writing anything, so a refusal leaves no partial output.
		for _, t := range sd.Tensors {
			for i, v := range t.Data {
				if float16.Fromfloat32(v).IsInf(0) {
					return fmt.Errorf("tensor %s element %d = %g is outside the float16 range (±65504); write float32 instead", t.Name, i, v)
				}
			}
		}
	}
	meta, err := buildMeta(cfg, dt, opt.Metadata)
	if err != nil {
		return err
	}
	header, err := buildHeader(sd, dt, meta)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	bw.Write(lenBuf[:])
	bw.Write(header)
	const chunk = 1 << 14 // values encoded per buffer fill
	buf := make([]byte, 0, chunk*dt.size)
	for _, t := range sd.Tensors {
		for start := 0; start < len(t.Data); start += chunk {
			buf = encodeFloats(buf[:0], t.Data[start:min(len(t.Data), start+chunk)], dt)
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

func encodeFloats(dst []byte, src []float32, dt *dtype) []byte {
	switch dt {
	case dtF16:
		for _, v := range src {
			dst = binary.LittleEndian.AppendUint16(dst, float16.Fromfloat32(v).Bits())
		}
	default:
		for _, v := range src {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
		}
	}
	return dst
}

// configJSON is how the inferred Config is recorded in the metadata.
type configJSON struct {
	InitFilters int   `json:"init_filters"`
	InChannels  int   `json:"in_channels"`
	OutChannels int   `json:"out_channels"`
	BlocksDown  []int `json:"blocks_down"`
	BlocksUp    []int `json:"blocks_up"`
}

func buildMeta(cfg Config, dt *dtype, user map[string]string) (map[string]string, error) {
	c, err := json.Marshal(configJSON{cfg.InitFilters, cfg.InChannels, cfg.OutChannels, cfg.BlocksDown, cfg.BlocksUp})
	if err != nil {
		return nil, err
	}
	meta := map[string]string{
		"format":         FormatName,
		"format_version": "1",
		"config":         string(c),
		"dtype":          dt.name,
		"param_count":    strconv.Itoa(cfg.ParamCount()),
	}
	for k, v := range user {
		if slices.Contains(reservedMeta, k) {
			return nil, fmt.Errorf("metadata key %q is reserved", k)
		}
		meta[k] = v
	}
	return meta, nil
}

// buildHeader writes the JSON by hand so key order (metadata first, then tensors in sd
// order) is fixed; strings go through json.Marshal for escaping.
func buildHeader(sd *StateDict, dt *dtype, meta map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"__metadata__":{`)
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, k)
		b.WriteByte(':')
		writeJSONString(&b, meta[k])
	}
	b.WriteByte('}')
	var off uint64
	seen := map[string]bool{}
	for _, t := range sd.Tensors {
		if t.Name == "__metadata__" || t.Name == "" || seen[t.Name] {
			return nil, fmt.Errorf("cannot store a tensor named %q", t.Name)
		}
		seen[t.Name] = true
		if len(t.Data) != numel(t.Shape) {
			return nil, fmt.Errorf("tensor %s holds %d values for shape %v", t.Name, len(t.Data), t.Shape)
		}
		n := uint64(len(t.Data)) * uint64(dt.size)
		b.WriteByte(',')
		writeJSONString(&b, t.Name)
		fmt.Fprintf(&b, `:{"dtype":"%s","shape":[`, dt.name)
		for i, s := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(s))
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, off, off+n)
		off += n
	}
	b.WriteByte('}')
	// Pad to a multiple of 8 so the data section starts aligned (as the safetensors
	// library does), which lets readers view f32 data in place.
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes(), nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	j, _ := json.Marshal(s) // marshalling a string cannot fail
	b.Write(j)
}

// looksLikeSafetensors is the content sniff Parse uses: a plausible header length followed
// by a JSON object.
func looksLikeSafetensors(data []byte) bool {
	if len(data) < 10 {
		return false
	}
	h := binary.LittleEndian.Uint64(data)
	return h >= 2 && h <= uint64(len(data)-8) && data[8] == '{'
}

var errNotWeights = errors.New("not a MONAI checkpoint or ctseg weight file")
