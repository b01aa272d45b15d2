package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
)

// dtype describes how one element type is stored: little-endian, size bytes.
type dtype struct {
	name string // e.g. "float32", "bfloat16"
	size int    // bytes per element
}

var (
	dtFloat64  = &dtype{"float64", 8}
	dtFloat32  = &dtype{"float32", 4}
	dtFloat16  = &dtype{"float16", 2}
	dtBFloat16 = &dtype{"bfloat16", 2}
	dtInt64    = &dtype{"int64", 8}
	dtInt32    = &dtype{"int32", 4}
	dtInt16    = &dtype{"int16", 2}
	dtInt8     = &dtype{"int8", 1}
	dtUint64   = &dtype{"uint64", 8}
	dtUint32   = &dtype{"uint32", 4}
	dtUint16   = &dtype{"uint16", 2}
	dtUint8    = &dtype{"uint8", 1}
	dtBool     = &dtype{"bool", 1}
)

// torchStorages maps torch's legacy storage class names (still used inside
// torch.save files to name a storage's dtype) to dtypes.
var torchStorages = map[string]*dtype{
	"DoubleStorage":   dtFloat64,
	"FloatStorage":    dtFloat32,
	"HalfStorage":     dtFloat16,
	"BFloat16Storage": dtBFloat16,
	"LongStorage":     dtInt64,
	"IntStorage":      dtInt32,
	"ShortStorage":    dtInt16,
	"CharStorage":     dtInt8,
	"ByteStorage":     dtUint8,
	"BoolStorage":     dtBool,
}

// safetensorsDTypes maps safetensors dtype codes to dtypes.
var safetensorsDTypes = map[string]*dtype{
	"F64":  dtFloat64,
	"F32":  dtFloat32,
	"F16":  dtFloat16,
	"BF16": dtBFloat16,
	"I64":  dtInt64,
	"I32":  dtInt32,
	"I16":  dtInt16,
	"I8":   dtInt8,
	"U64":  dtUint64,
	"U32":  dtUint32,
	"U16":  dtUint16,
	"U8":   dtUint8,
	"BOOL": dtBool,
}

// decode converts len(dst) consecutive elements stored in src (at least
// len(dst)*dt.size bytes) to float32.
func (dt *dtype) decode(dst []float32, src []byte) {
	le := binary.LittleEndian
	switch dt {
	case dtFloat32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case dtFloat64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(src[8*i:])))
		}
	case dtFloat16:
		for i := range dst {
			dst[i] = halfToFloat32(le.Uint16(src[2*i:]))
		}
	case dtBFloat16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(le.Uint16(src[2*i:])) << 16)
		}
	case dtInt64:
		for i := range dst {
			dst[i] = float32(int64(le.Uint64(src[8*i:])))
		}
	case dtInt32:
		for i := range dst {
			dst[i] = float32(int32(le.Uint32(src[4*i:])))
		}
	case dtInt16:
		for i := range dst {
			dst[i] = float32(int16(le.Uint16(src[2*i:])))
		}
	case dtInt8:
		for i := range dst {
			dst[i] = float32(int8(src[i]))
		}
	case dtUint64:
		for i := range dst {
			dst[i] = float32(le.Uint64(src[8*i:]))
		}
	case dtUint32:
		for i := range dst {
			dst[i] = float32(le.Uint32(src[4*i:]))
		}
	case dtUint16:
		for i := range dst {
			dst[i] = float32(le.Uint16(src[2*i:]))
		}
	case dtUint8:
		for i := range dst {
			dst[i] = float32(src[i])
		}
	case dtBool:
		for i := range dst {
			if src[i] != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	default:
		panic(fmt.Sprintf("checkpoint: decode of unknown dtype %q", dt.name))
	}
}

// halfToFloat32 converts an IEEE 754 binary16 value exactly.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf, NaN
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0: // signed zero
		return math.Float32frombits(sign)
	default: // subnormal: mant * 2^-24, exact in float32
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
}
