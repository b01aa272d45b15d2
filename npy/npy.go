// Package npy reads and writes NumPy .npy files (format versions 1.0-3.0,
// C order, little-endian), the format of the reference fixtures and of
// segsam's tensor outputs.
package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// Array is a decoded .npy array: its shape, element type and raw
// little-endian bytes in C order.
type Array struct {
	// Shape is the array's shape; empty for a 0-d (scalar) array.
	Shape []int
	// DType is the NumPy type code without the byte-order mark:
	// "f4", "f8", "f2", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1".
	DType string
	data  []byte
}

// Size is the number of elements (1 for a scalar).
func (a *Array) Size() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

var itemSizes = map[string]int{
	"f2": 2, "f4": 4, "f8": 8,
	"i1": 1, "i2": 2, "i4": 4, "i8": 8,
	"u1": 1, "u2": 2, "u4": 4, "u8": 8,
	"b1": 1,
}

const magic = "\x93NUMPY"

// maxElements bounds what Decode accepts, so that a corrupt header cannot
// request an absurd allocation.
const maxElements = 1 << 31

// Read decodes the .npy file at path.
func Read(path string) (*Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	a, err := Decode(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return a, nil
}

var (
	reDescr   = regexp.MustCompile(`'descr'\s*:\s*'([<>|=])([a-z]\d)'`)
	reFortran = regexp.MustCompile(`'fortran_order'\s*:\s*(True|False)`)
	reShape   = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
)

// Decode reads one .npy array from r.
func Decode(r io.Reader) (*Array, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("npy: reading magic: %w", err)
	}
	if string(pre[:6]) != magic {
		return nil, errors.New("npy: not a .npy file (bad magic)")
	}
	var headerLen int
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("npy: reading header length: %w", err)
		}
		headerLen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("npy: reading header length: %w", err)
		}
		headerLen = int(binary.LittleEndian.Uint32(b[:]))
		if headerLen > 1<<20 {
			return nil, fmt.Errorf("npy: header of %d bytes is too large", headerLen)
		}
	default:
		return nil, fmt.Errorf("npy: unsupported format version %d.%d", pre[6], pre[7])
	}
	header := make([]byte, headerLen)
	if _, err := io.ReadFull(r, header); err != nil {
		return nil, fmt.Errorf("npy: reading header: %w", err)
	}
	h := string(header)
	m := reDescr.FindStringSubmatch(h)
	if m == nil {
		return nil, fmt.Errorf("npy: unsupported or missing dtype in header %q", strings.TrimSpace(h))
	}
	order, dtype := m[1], m[2]
	size, ok := itemSizes[dtype]
	if !ok {
		return nil, fmt.Errorf("npy: unsupported dtype %q", dtype)
	}
	if order == ">" && size > 1 {
		return nil, fmt.Errorf("npy: big-endian arrays are not supported")
	}
	if m := reFortran.FindStringSubmatch(h); m == nil {
		return nil, errors.New("npy: header has no fortran_order")
	} else if m[1] == "True" {
		return nil, errors.New("npy: Fortran-order arrays are not supported")
	}
	m = reShape.FindStringSubmatch(h)
	if m == nil {
		return nil, errors.New("npy: header has no shape")
	}
	a := &Array{DType: dtype, Shape: []int{}}
	for _, s := range strings.Split(m[1], ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		d, err := strconv.Atoi(s)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("npy: bad dimension %q in shape", s)
		}
		a.Shape = append(a.Shape, d)
	}
	n := 1
	for _, d := range a.Shape {
		if d > 0 && n > maxElements/d {
			return nil, fmt.Errorf("npy: shape %v is too large", a.Shape)
		}
		n *= d
	}
	// Read through a growing buffer rather than allocating n*size bytes up
	// front, so that a corrupt header on a short file costs no more memory
	// than the file holds.
	var buf bytes.Buffer
	got, err := io.CopyN(&buf, r, int64(n*size))
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("npy: reading %d bytes of data for shape %v (got %d): %w", n*size, a.Shape, got, err)
	}
	a.data = buf.Bytes()
	return a, nil
}

// Float64 returns the elements converted to float64 (any numeric dtype).
func (a *Array) Float64() []float64 {
	n := a.Size()
	out := make([]float64, n)
	d := a.data
	le := binary.LittleEndian
	for i := range out {
		switch a.DType {
		case "f2":
			out[i] = float64(halfToFloat32(le.Uint16(d[2*i:])))
		case "f4":
			out[i] = float64(math.Float32frombits(le.Uint32(d[4*i:])))
		case "f8":
			out[i] = math.Float64frombits(le.Uint64(d[8*i:]))
		case "i1":
			out[i] = float64(int8(d[i]))
		case "i2":
			out[i] = float64(int16(le.Uint16(d[2*i:])))
		case "i4":
			out[i] = float64(int32(le.Uint32(d[4*i:])))
		case "i8":
			out[i] = float64(int64(le.Uint64(d[8*i:])))
		case "u1", "b1":
			out[i] = float64(d[i])
		case "u2":
			out[i] = float64(le.Uint16(d[2*i:]))
		case "u4":
			out[i] = float64(le.Uint32(d[4*i:]))
		case "u8":
			out[i] = float64(le.Uint64(d[8*i:]))
		}
	}
	return out
}

// Float32 returns the elements converted to float32. A float32 array is
// returned exactly; other types go through float64.
func (a *Array) Float32() []float32 {
	out := make([]float32, a.Size())
	if a.DType == "f4" {
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(a.data[4*i:]))
		}
		return out
	}
	for i, v := range a.Float64() {
		out[i] = float32(v)
	}
	return out
}

// Uint8 returns the raw elements of a "u1" or "b1" array.
func (a *Array) Uint8() ([]uint8, error) {
	if a.DType != "u1" && a.DType != "b1" {
		return nil, fmt.Errorf("npy: array has dtype %s, not uint8", a.DType)
	}
	return append([]uint8(nil), a.data...), nil
}

// Int32 returns the elements of an integer array as int32.
func (a *Array) Int32() ([]int32, error) {
	switch a.DType {
	case "i1", "i2", "i4", "u1", "u2", "b1":
	default:
		return nil, fmt.Errorf("npy: array has dtype %s, not a small integer type", a.DType)
	}
	f := a.Float64()
	out := make([]int32, len(f))
	for i, v := range f {
		out[i] = int32(v)
	}
	return out, nil
}

func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := int(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		return float32(math.Copysign(float64(mant)*math.Pow(2, -24), float64(int32(sign)|1)))
	case exp == 31:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | uint32(exp-15+127)<<23 | mant<<13)
}

// Element is a type that Write can store.
type Element interface {
	~float32 | ~float64 | ~int32 | ~int64 | ~uint8
}

// Encode writes data with the given shape to w as a version 1.0 .npy array.
func Encode[T Element](w io.Writer, shape []int, data []T) error {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != len(data) {
		return fmt.Errorf("npy: shape %v holds %d elements, got %d", shape, n, len(data))
	}
	var descr string
	var zero T
	switch any(zero).(type) {
	case float32:
		descr = "<f4"
	case float64:
		descr = "<f8"
	case int32:
		descr = "<i4"
	case int64:
		descr = "<i8"
	case uint8:
		descr = "|u1"
	default:
		return fmt.Errorf("npy: unsupported element type %T", zero)
	}
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	shapeStr := strings.Join(dims, ", ")
	if len(shape) == 1 {
		shapeStr += ","
	}
	header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shapeStr)
	// Pad so that the data starts on a 64-byte boundary, ending with '\n'.
	total := len(magic) + 2 + 2 + len(header) + 1
	header += strings.Repeat(" ", (64-total%64)%64) + "\n"
	var buf bytes.Buffer
	buf.WriteString(magic)
	buf.Write([]byte{1, 0})
	_ = binary.Write(&buf, binary.LittleEndian, uint16(len(header)))
	buf.WriteString(header)
	if _, err := w.Write(buf.Bytes()); err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	if err := binary.Write(bw, binary.LittleEndian, data); err != nil {
		return err
	}
	return bw.Flush()
}

// Write stores data with the given shape in a .npy file at path.
func Write[T Element](path string, shape []int, data []T) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Encode(f, shape, data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
