package weights

import (
	"encoding/binary"
	"fmt"
	"math"
)

// This file is a deliberately small pickle interpreter. A torch.save checkpoint is a pickle,
// and a general unpickler executes arbitrary callables named by the file (os.system is one
// GLOBAL opcode away). Only the opcodes and globals a state_dict needs are implemented; every
// other opcode or global is refused by name, so a hostile file can at worst produce an error.

// Pickle values. Python objects map to: None -> nil, bool, int -> int64, float -> float64,
// str -> string, tuple -> pyTuple, list -> *pyList, dict/OrderedDict -> *pyDict, an allowed
// global -> pyGlobal, a storage persistent id -> *storageRef, a rebuilt tensor -> *pyTensor.
type (
	pyTuple  []any
	pyList   struct{ items []any }
	pyGlobal struct{ module, name string }
	pyDict   struct {
		keys, vals []any
		index      map[any]int // only string, int64, bool, float64 and nil keys (hashable)
	}
	// storageRef is a reference to the raw bytes of one storage record in the zip.
	storageRef struct {
		dtype    *dtype
		key      string
		location string
		numel    int64
	}
	// pyTensor is a view on a storage, as _rebuild_tensor_v2 describes it.
	pyTensor struct {
		storage *storageRef
		offset  int64
		size    []int
	}
)

func (g pyGlobal) String() string { return g.module + "." + g.name }

func newPyDict() *pyDict { return &pyDict{index: map[any]int{}} }

// set follows Python dict semantics: re-setting a key keeps its first position.
func (d *pyDict) set(k, v any) error {
	switch k.(type) {
	case string, int64, bool, float64, nil:
	default:
		return fmt.Errorf("unsupported dict key of type %s", pyTypeName(k))
	}
	if i, ok := d.index[k]; ok {
		d.vals[i] = v
		return nil
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

func pyTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case pyGlobal:
		return "global " + v.(pyGlobal).String()
	case *storageRef:
		return "storage"
	case *pyTensor:
		return "tensor"
	}
	return fmt.Sprintf("%T", v)
}

// Globals the unpickler will resolve. Storage classes are inert type tags (they name the
// dtype of a persistent id); the callables are interpreted here, never looked up.
const (
	globalOrderedDict        = "collections.OrderedDict"
	globalRebuildTensorV2    = "torch._utils._rebuild_tensor_v2"
	globalRebuildParam       = "torch._utils._rebuild_parameter"
	globalRebuildParamWState = "torch._utils._rebuild_parameter_with_state"
	globalTorchSize          = "torch.Size"
)

func globalAllowed(g pyGlobal) bool {
	switch g.String() {
	case globalOrderedDict, globalRebuildTensorV2, globalRebuildParam, globalRebuildParamWState, globalTorchSize:
		return true
	}
	return g.module == "torch" && storageDtypes[g.name] != nil
}

// Limits that keep a hostile pickle from asking for unbounded work or memory.
const (
	maxPickleLine   = 256     // GLOBAL module/name line length
	maxTensorDims   = 16      // more axes than any conv weight needs
	maxTensorElems  = 1 << 28 // per tensor (1 GiB of f32; the bundle's largest has 1.8 M)
	maxStorageElems = 1 << 40 // before multiplying by the element size
)

// Pickle opcodes used here (names as in CPython's pickletools).
const (
	opMark           = '('
	opStop           = '.'
	opBinInt         = 'J'
	opBinInt1        = 'K'
	opBinInt2        = 'M'
	opNone           = 'N'
	opBinPersID      = 'Q'
	opReduce         = 'R'
	opBinString      = 'T'
	opShortBinString = 'U'
	opBinUnicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opAppends        = 'e'
	opBinGet         = 'h'
	opLongBinGet     = 'j'
	opEmptyList      = ']'
	opBinPut         = 'q'
	opLongBinPut     = 'r'
	opSetItem        = 's'
	opTuple          = 't'
	opSetItems       = 'u'
	opEmptyDict      = '}'
	opEmptyTuple     = ')'
	opBinFloat       = 'G'
	opProto          = 0x80
	opNewObj         = 0x81
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewTrue        = 0x88
	opNewFalse       = 0x89
	opLong1          = 0x8a
	opShortBinUni    = 0x8c
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
)

// opNames names the pickle opcodes this reader refuses, so the error says what the file
// tried rather than just a byte value.
var opNames = map[byte]string{
	'0': "POP", '1': "POP_MARK", '2': "DUP", 'F': "FLOAT", 'I': "INT", 'L': "LONG",
	'P': "PERSID", 'S': "STRING", 'V': "UNICODE", 'd': "DICT", 'g': "GET", 'i': "INST",
	'l': "LIST", 'o': "OBJ", 'p': "PUT", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
	0x8b: "LONG4", 'B': "BINBYTES", 'C': "SHORT_BINBYTES", 0x8d: "BINUNICODE8",
	0x8e: "BINBYTES8", 0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET",
	0x92: "NEWOBJ_EX", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}

type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[uint32]any
}

// unpickle runs the restricted interpreter over data and returns the pickled object.
func unpickle(data []byte) (any, error) {
	u := &unpickler{data: data, memo: map[uint32]any{}}
	v, err := u.run()
	if err != nil {
		return nil, fmt.Errorf("pickle: %w", err)
	}
	return v, nil
}

func (u *unpickler) read(n int) ([]byte, error) {
	if n < 0 || n > len(u.data)-u.pos {
		return nil, fmt.Errorf("truncated at offset %d (need %d bytes)", u.pos, n)
	}
	b := u.data[u.pos : u.pos+n]
	u.pos += n
	return b, nil
}

func (u *unpickler) readLine() (string, error) {
	for i := u.pos; i < len(u.data) && i-u.pos <= maxPickleLine; i++ {
		if u.data[i] == '\n' {
			s := string(u.data[u.pos:i])
			u.pos = i + 1
			return s, nil
		}
	}
	return "", fmt.Errorf("unterminated or overlong line at offset %d", u.pos)
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

func (u *unpickler) pop() (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) {
		return nil, fmt.Errorf("stack underflow at offset %d", u.pos)
	}
	v := u.stack[n-1]
	u.stack = u.stack[:n-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	n := len(u.stack)
	if n == 0 || (len(u.marks) > 0 && u.marks[len(u.marks)-1] == n) {
		return nil, fmt.Errorf("stack underflow at offset %d", u.pos)
	}
	return u.stack[n-1], nil
}

// popMark returns the items pushed since the last MARK and removes them and the mark.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, fmt.Errorf("no MARK on the stack at offset %d", u.pos)
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

func (u *unpickler) popN(n int) ([]any, error) {
	items := make([]any, n)
	for i := n - 1; i >= 0; i-- {
		v, err := u.pop()
		if err != nil {
			return nil, err
		}
		items[i] = v
	}
	return items, nil
}

func (u *unpickler) run() (any, error) {
	for {
		if u.pos >= len(u.data) {
			return nil, fmt.Errorf("no STOP opcode before the end of the data")
		}
		at := u.pos
		op := u.data[u.pos]
		u.pos++
		var err error
		switch op {
		case opProto:
			var b []byte
			if b, err = u.read(1); err == nil && b[0] > 5 {
				err = fmt.Errorf("unsupported pickle protocol %d", b[0])
			}
		case opFrame:
			_, err = u.read(8) // framing only groups opcodes; the content is read inline
		case opStop:
			v, err := u.pop()
			if err != nil {
				return nil, err
			}
			return v, nil
		case opMark:
			u.marks = append(u.marks, len(u.stack))
		case opNone:
			u.push(nil)
		case opNewTrue:
			u.push(true)
		case opNewFalse:
			u.push(false)
		case opEmptyDict:
			u.push(newPyDict())
		case opEmptyList:
			u.push(&pyList{})
		case opEmptyTuple:
			u.push(pyTuple{})
		case opTuple:
			var items []any
			if items, err = u.popMark(); err == nil {
				u.push(pyTuple(items))
			}
		case opTuple1, opTuple2, opTuple3:
			var items []any
			if items, err = u.popN(int(op-opTuple1) + 1); err == nil {
				u.push(pyTuple(items))
			}
		case opBinInt:
			var b []byte
			if b, err = u.read(4); err == nil {
				u.push(int64(int32(binary.LittleEndian.Uint32(b))))
			}
		case opBinInt1:
			var b []byte
			if b, err = u.read(1); err == nil {
				u.push(int64(b[0]))
			}
		case opBinInt2:
			var b []byte
			if b, err = u.read(2); err == nil {
				u.push(int64(binary.LittleEndian.Uint16(b)))
			}
		case opLong1:
			err = u.long1()
		case opBinFloat:
			var b []byte
			if b, err = u.read(8); err == nil {
				u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))
			}
		case opBinUnicode, opBinString:
			err = u.str(4)
		case opShortBinUni, opShortBinString:
			err = u.str(1)
		case opBinPut, opLongBinPut:
			err = u.put(op == opLongBinPut)
		case opMemoize:
			var v any
			if v, err = u.top(); err == nil {
				u.memo[uint32(len(u.memo))] = v
			}
		case opBinGet, opLongBinGet:
			err = u.get(op == opLongBinGet)
		case opGlobal:
			var mod, name string
			if mod, err = u.readLine(); err == nil {
				if name, err = u.readLine(); err == nil {
					err = u.global(mod, name)
				}
			}
		case opStackGlobal:
			var items []any
			if items, err = u.popN(2); err == nil {
				mod, ok1 := items[0].(string)
				name, ok2 := items[1].(string)
				if !ok1 || !ok2 {
					err = fmt.Errorf("STACK_GLOBAL needs two strings")
				} else {
					err = u.global(mod, name)
				}
			}
		case opReduce, opNewObj:
			err = u.reduce()
		case opBuild:
			err = u.build()
		case opSetItem:
			var items []any
			if items, err = u.popN(2); err == nil {
				err = u.setItems(items)
			}
		case opSetItems:
			var items []any
			if items, err = u.popMark(); err == nil {
				err = u.setItems(items)
			}
		case opAppend:
			var items []any
			if items, err = u.popN(1); err == nil {
				err = u.appendItems(items)
			}
		case opAppends:
			var items []any
			if items, err = u.popMark(); err == nil {
				err = u.appendItems(items)
			}
		case opBinPersID:
			err = u.persistentID()
		default:
			name := opNames[op]
			if name == "" {
				name = "unknown"
			}
			return nil, fmt.Errorf("checkpoint uses unsupported pickle opcode %s (0x%02x) at offset %d", name, op, at)
		}
		if err != nil {
			return nil, err
		}
	}
}

func (u *unpickler) long1() error {
	b, err := u.read(1)
	if err != nil {
		return err
	}
	n := int(b[0])
	if n > 8 {
		return fmt.Errorf("integer of %d bytes at offset %d is too large", n, u.pos-2)
	}
	if b, err = u.read(n); err != nil {
		return err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if n > 0 && n < 8 && b[n-1]&0x80 != 0 { // sign-extend two's complement
		v |= ^uint64(0) << (8 * n)
	}
	u.push(int64(v))
	return nil
}

func (u *unpickler) str(lenBytes int) error {
	b, err := u.read(lenBytes)
	if err != nil {
		return err
	}
	n := int(b[0])
	if lenBytes == 4 {
		n = int(binary.LittleEndian.Uint32(b))
	}
	if b, err = u.read(n); err != nil {
		return err
	}
	u.push(string(b))
	return nil
}

// memoIndex reads the memo index of a PUT/GET (1 byte) or LONG_BINPUT/LONG_BINGET (4 bytes).
func (u *unpickler) memoIndex(long bool) (uint32, error) {
	if long {
		b, err := u.read(4)
		if err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint32(b), nil
	}
	b, err := u.read(1)
	if err != nil {
		return 0, err
	}
	return uint32(b[0]), nil
}

func (u *unpickler) put(long bool) error {
	idx, err := u.memoIndex(long)
	if err != nil {
		return err
	}
	v, err := u.top()
	if err != nil {
		return err
	}
	u.memo[idx] = v
	return nil
}

func (u *unpickler) get(long bool) error {
	idx, err := u.memoIndex(long)
	if err != nil {
		return err
	}
	v, ok := u.memo[idx]
	if !ok {
		return fmt.Errorf("memo entry %d not defined at offset %d", idx, u.pos)
	}
	u.push(v)
	return nil
}

func (u *unpickler) global(mod, name string) error {
	g := pyGlobal{mod, name}
	if !globalAllowed(g) {
		return fmt.Errorf("checkpoint uses unsupported pickle global %q", g.String())
	}
	u.push(g)
	return nil
}

func (u *unpickler) setItems(items []any) error {
	if len(items)%2 != 0 {
		return fmt.Errorf("SETITEMS with an odd number of items at offset %d", u.pos)
	}
	t, err := u.top()
	if err != nil {
		return err
	}
	d, ok := t.(*pyDict)
	if !ok {
		return fmt.Errorf("SETITEM on a %s at offset %d", pyTypeName(t), u.pos)
	}
	for i := 0; i < len(items); i += 2 {
		if err := d.set(items[i], items[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (u *unpickler) appendItems(items []any) error {
	t, err := u.top()
	if err != nil {
		return err
	}
	l, ok := t.(*pyList)
	if !ok {
		return fmt.Errorf("APPEND on a %s at offset %d", pyTypeName(t), u.pos)
	}
	l.items = append(l.items, items...)
	return nil
}

// build handles BUILD, which PyTorch emits once to set the OrderedDict's _metadata
// attribute (per-module versions). That state carries nothing the weights need.
func (u *unpickler) build() error {
	items, err := u.popN(1)
	if err != nil {
		return err
	}
	obj, err := u.top()
	if err != nil {
		return err
	}
	if _, ok := obj.(*pyDict); ok {
		switch items[0].(type) {
		case *pyDict, nil:
			return nil
		}
	}
	return fmt.Errorf("BUILD of a %s with a %s at offset %d is not supported", pyTypeName(obj), pyTypeName(items[0]), u.pos)
}

// persistentID resolves BINPERSID: PyTorch's ('storage', StorageType, key, location, numel).
func (u *unpickler) persistentID() error {
	items, err := u.popN(1)
	if err != nil {
		return err
	}
	t, ok := items[0].(pyTuple)
	if !ok || len(t) != 5 || t[0] != "storage" {
		return fmt.Errorf("persistent id is not a ('storage', type, key, location, numel) tuple")
	}
	g, ok1 := t[1].(pyGlobal)
	key, ok2 := t[2].(string)
	loc, ok3 := t[3].(string)
	numel, ok4 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return fmt.Errorf("malformed storage persistent id")
	}
	dt := storageDtypes[g.name]
	if g.module != "torch" || dt == nil {
		return fmt.Errorf("persistent id names %s, not a storage type", g.String())
	}
	if numel < 0 || numel > maxStorageElems {
		return fmt.Errorf("storage %q claims %d elements", key, numel)
	}
	u.push(&storageRef{dtype: dt, key: key, location: loc, numel: numel})
	return nil
}

// reduce handles REDUCE (callable(*args)) and NEWOBJ (cls.__new__(cls, *args)); only the
// allowlisted callables are interpreted, each with its argument shapes checked.
func (u *unpickler) reduce() error {
	items, err := u.popN(2)
	if err != nil {
		return err
	}
	g, ok := items[0].(pyGlobal)
	if !ok {
		return fmt.Errorf("call of a %s at offset %d", pyTypeName(items[0]), u.pos)
	}
	args, ok := items[1].(pyTuple)
	if !ok {
		return fmt.Errorf("call of %s with %s arguments", g, pyTypeName(items[1]))
	}
	var v any
	switch g.String() {
	case globalOrderedDict:
		if len(args) != 0 {
			return fmt.Errorf("%s called with arguments", g)
		}
		v = newPyDict()
	case globalTorchSize:
		if len(args) != 1 {
			return fmt.Errorf("%s needs one argument", g)
		}
		t, ok := args[0].(pyTuple)
		if !ok {
			return fmt.Errorf("%s needs a tuple", g)
		}
		v = t
	case globalRebuildTensorV2:
		v, err = rebuildTensor(args)
	case globalRebuildParam, globalRebuildParamWState:
		v, err = rebuildParameter(g, args)
	default:
		return fmt.Errorf("checkpoint calls %s, which is not supported", g)
	}
	if err != nil {
		return err
	}
	u.push(v)
	return nil
}

// rebuildTensor interprets _rebuild_tensor_v2(storage, storage_offset, size, stride,
// requires_grad, backward_hooks[, metadata]). Only C-contiguous views that lie inside their
// storage are accepted, so the later copy is one bounds-checked slice.
func rebuildTensor(args pyTuple) (*pyTensor, error) {
	if len(args) != 6 && len(args) != 7 {
		return nil, fmt.Errorf("_rebuild_tensor_v2 with %d arguments", len(args))
	}
	st, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2 on a %s, not a storage", pyTypeName(args[0]))
	}
	off, ok := args[1].(int64)
	if !ok || off < 0 {
		return nil, fmt.Errorf("tensor on storage %q has a bad storage offset", st.key)
	}
	size, err := intTuple(args[2], "size")
	if err != nil {
		return nil, fmt.Errorf("tensor on storage %q: %w", st.key, err)
	}
	stride, err := intTuple(args[3], "stride")
	if err != nil {
		return nil, fmt.Errorf("tensor on storage %q: %w", st.key, err)
	}
	if len(size) != len(stride) || len(size) > maxTensorDims {
		return nil, fmt.Errorf("tensor on storage %q has %d sizes and %d strides", st.key, len(size), len(stride))
	}
	if h, ok := args[5].(*pyDict); !ok || len(h.keys) != 0 {
		return nil, fmt.Errorf("tensor on storage %q has backward hooks", st.key)
	}
	n, err := checkedNumel(size)
	if err != nil {
		return nil, fmt.Errorf("tensor on storage %q: %w", st.key, err)
	}
	numel := int64(n)
	shape := make([]int, len(size))
	for i, s := range size {
		shape[i] = int(s)
	}
	// C-contiguous: stride[i] = prod(size[i+1:]); axes of length 1 may carry any stride.
	want := int64(1)
	for i := len(size) - 1; i >= 0; i-- {
		if size[i] != 1 && stride[i] != want && numel > 0 {
			return nil, fmt.Errorf("tensor on storage %q is not contiguous (size %v, stride %v)", st.key, size, stride)
		}
		want *= size[i]
	}
	if off > st.numel || numel > st.numel-off {
		return nil, fmt.Errorf("tensor on storage %q needs elements %d..%d of a storage of %d", st.key, off, off+numel, st.numel)
	}
	return &pyTensor{storage: st, offset: off, size: shape}, nil
}

func rebuildParameter(g pyGlobal, args pyTuple) (*pyTensor, error) {
	want := 3
	if g.name == "_rebuild_parameter_with_state" {
		want = 4
	}
	if len(args) != want {
		return nil, fmt.Errorf("%s with %d arguments", g, len(args))
	}
	t, ok := args[0].(*pyTensor)
	if !ok {
		return nil, fmt.Errorf("%s of a %s", g, pyTypeName(args[0]))
	}
	if h, ok := args[2].(*pyDict); !ok || len(h.keys) != 0 {
		return nil, fmt.Errorf("parameter with backward hooks")
	}
	if want == 4 {
		switch s := args[3].(type) {
		case nil:
		case *pyDict:
			if len(s.keys) != 0 {
				return nil, fmt.Errorf("parameter with extra python state")
			}
		default:
			return nil, fmt.Errorf("parameter with %s state", pyTypeName(s))
		}
	}
	return t, nil
}

func intTuple(v any, what string) ([]int64, error) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, fmt.Errorf("%s is a %s, not a tuple", what, pyTypeName(v))
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok {
			return nil, fmt.Errorf("%s holds a %s", what, pyTypeName(x))
		}
		out[i] = n
	}
	return out, nil
}
