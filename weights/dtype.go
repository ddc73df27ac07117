package weights

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
)

// dtype is an element type as stored on disk. Only the float types convert to the float32
// the network uses; the others exist so a checkpoint that carries, say, an int64 step counter
// beside the weights still parses, and fails only if such a tensor is part of the state dict.
type dtype struct {
	name     string // the safetensors spelling: F32, F16, BF16, ...
	size     int    // bytes per element
	floating bool   // convertible to float32 without loss beyond the source precision
}

var (
	dtF32  = &dtype{"F32", 4, true}
	dtF16  = &dtype{"F16", 2, true}
	dtBF16 = &dtype{"BF16", 2, true}
	dtF64  = &dtype{"F64", 8, false} // refused: a silent narrowing would hide a real problem
	dtI64  = &dtype{"I64", 8, false}
	dtI32  = &dtype{"I32", 4, false}
	dtI16  = &dtype{"I16", 2, false}
	dtI8   = &dtype{"I8", 1, false}
	dtU8   = &dtype{"U8", 1, false}
	dtBool = &dtype{"BOOL", 1, false}
)

// storageDtypes maps PyTorch's legacy storage class names (what the pickle names in a
// storage persistent id) to dtypes.
var storageDtypes = map[string]*dtype{
	"FloatStorage": dtF32, "HalfStorage": dtF16, "BFloat16Storage": dtBF16,
	"DoubleStorage": dtF64, "LongStorage": dtI64, "IntStorage": dtI32, "ShortStorage": dtI16,
	"CharStorage": dtI8, "ByteStorage": dtU8, "BoolStorage": dtBool,
}

// safetensorsDtypes are the dtypes the project file may hold.
var safetensorsDtypes = map[string]*dtype{"F32": dtF32, "F16": dtF16, "BF16": dtBF16}

// decodeFloats converts little-endian elements of type dt in src to float32. len(src) must
// be len(dst)*dt.size; callers have checked it. The loops index plain slices (no reflection,
// no per-element calls through interfaces) because the full checkpoint is 18.8M values.
func decodeFloats(dst []float32, src []byte, dt *dtype) error {
	if len(src) != len(dst)*dt.size {
		return fmt.Errorf("internal: %d bytes for %d %s values", len(src), len(dst), dt.name)
	}
	switch dt {
	case dtF32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case dtF16:
		for i := range dst {
			dst[i] = float16.Frombits(binary.LittleEndian.Uint16(src[2*i:])).Float32()
		}
	case dtBF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	default:
		return fmt.Errorf("dtype %s is not supported (only float32, float16 and bfloat16)", dt.name)
	}
	return nil
}

// checkedNumel returns the product of shape, or an error when an axis is negative or the
// product exceeds maxTensorElems (checked per step, so it cannot overflow).
func checkedNumel(shape []int64) (int, error) {
	if len(shape) > maxTensorDims {
		return 0, fmt.Errorf("%d axes, more than %d", len(shape), maxTensorDims)
	}
	n := int64(1)
	for _, s := range shape {
		if s < 0 || s > maxTensorElems {
			return 0, fmt.Errorf("bad shape %v", shape)
		}
		n *= s
		if n > maxTensorElems {
			return 0, fmt.Errorf("shape %v has more than 2^31 elements", shape)
		}
	}
	return int(n), nil
}

// numel is the element count of a shape that is already known to be valid.
func numel(shape []int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return n
}
