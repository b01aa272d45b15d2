package nifti

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// Image is a NIfTI header and its voxel data.
type Image struct {
	Header
	// Data holds the voxels as little-endian bytes in file order (the first
	// dimension varies fastest), whatever the byte order of the file.
	Data []byte
}

const (
	sizeofHdr1 = 348
	sizeofHdr2 = 540
)

var (
	magic1Single = []byte("n+1\x00")
	magic1Pair   = []byte("ni1\x00")
	magic2Single = []byte("n+2\x00\r\n\x1a\n")
	magic2Pair   = []byte("ni2\x00\r\n\x1a\n")
)

// ErrNotNIfTI is returned (wrapped) when the input is not a NIfTI file.
var ErrNotNIfTI = errors.New("not a NIfTI file")

// Read reads a NIfTI image from path: a .nii or .nii.gz file (gzip is
// detected from the content), or the header of a .hdr/.img pair, whose data
// is then read from the matching .img or .img.gz file.
func Read(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, closeFn, err := maybeGunzip(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer closeFn()
	h, pair, err := decodeHeader(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !pair {
		img, err := decodeData(r, h)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return img, nil
	}
	imgPath, err := pairedImagePath(path)
	if err != nil {
		return nil, err
	}
	g, err := os.Open(imgPath)
	if err != nil {
		return nil, fmt.Errorf("read data of %s: %w", path, err)
	}
	defer g.Close()
	gr, gclose, err := maybeGunzip(bufio.NewReader(g))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", imgPath, err)
	}
	defer gclose()
	img, err := decodeData(gr, h)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", imgPath, err)
	}
	return img, nil
}

// pairedImagePath finds the .img (or .img.gz) file that goes with a .hdr.
func pairedImagePath(hdr string) (string, error) {
	base := strings.TrimSuffix(hdr, ".gz")
	if !strings.HasSuffix(strings.ToLower(base), ".hdr") {
		return "", fmt.Errorf("read %s: header of a .hdr/.img pair, but the file is not named .hdr", hdr)
	}
	base = base[:len(base)-len(".hdr")]
	for _, ext := range []string{".img", ".img.gz", ".IMG", ".IMG.GZ"} {
		if _, err := os.Stat(base + ext); err == nil {
			return base + ext, nil
		}
	}
	return "", fmt.Errorf("read %s: header of a .hdr/.img pair but %s.img is missing", hdr, base)
}

// Decode reads a single-file NIfTI image (.nii content, gzipped or not)
// from r.
func Decode(r io.Reader) (*Image, error) {
	rr, closeFn, err := maybeGunzip(bufio.NewReader(r))
	if err != nil {
		return nil, err
	}
	defer closeFn()
	h, pair, err := decodeHeader(rr)
	if err != nil {
		return nil, err
	}
	if pair {
		return nil, errors.New("header of a .hdr/.img pair: the voxel data are in a separate .img file (use Read with the .hdr path)")
	}
	return decodeData(rr, h)
}

// maybeGunzip returns a reader of the decompressed content when br starts
// with the gzip magic number, else br itself.
func maybeGunzip(br *bufio.Reader) (io.Reader, func(), error) {
	head, _ := br.Peek(2)
	if len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	}
	return br, func() {}, nil
}

// headerReader decodes fixed-layout fields in either byte order.
type headerReader struct {
	b     []byte
	order binary.ByteOrder
}

func (h headerReader) i16(off int) int64 { return int64(int16(h.order.Uint16(h.b[off:]))) }
func (h headerReader) i32(off int) int64 { return int64(int32(h.order.Uint32(h.b[off:]))) }
func (h headerReader) i64(off int) int64 { return int64(h.order.Uint64(h.b[off:])) }
func (h headerReader) f32(off int) float64 {
	return float64(math.Float32frombits(h.order.Uint32(h.b[off:])))
}
func (h headerReader) f64(off int) float64 { return math.Float64frombits(h.order.Uint64(h.b[off:])) }
func (h headerReader) str(off, n int) string {
	s := h.b[off : off+n]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return string(s)
}

// decodeHeader reads a NIfTI-1 or NIfTI-2 header and its extensions, leaving
// r at the voxel data (single-file form). pair reports the .hdr/.img form.
func decodeHeader(r io.Reader) (h *Header, pair bool, err error) {
	var first [4]byte
	if _, err := io.ReadFull(r, first[:]); err != nil {
		return nil, false, fmt.Errorf("%w: file too short for a header (%v)", ErrNotNIfTI, err)
	}
	var order binary.ByteOrder
	var size int
	switch {
	case binary.LittleEndian.Uint32(first[:]) == sizeofHdr1:
		order, size = binary.LittleEndian, sizeofHdr1
	case binary.BigEndian.Uint32(first[:]) == sizeofHdr1:
		order, size = binary.BigEndian, sizeofHdr1
	case binary.LittleEndian.Uint32(first[:]) == sizeofHdr2:
		order, size = binary.LittleEndian, sizeofHdr2
	case binary.BigEndian.Uint32(first[:]) == sizeofHdr2:
		order, size = binary.BigEndian, sizeofHdr2
	default:
		return nil, false, fmt.Errorf("%w: sizeof_hdr is %d, want 348 (NIfTI-1) or 540 (NIfTI-2)",
			ErrNotNIfTI, binary.LittleEndian.Uint32(first[:]))
	}
	buf := make([]byte, size)
	copy(buf, first[:])
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		return nil, false, fmt.Errorf("truncated header: %w", err)
	}
	hr := headerReader{buf, order}
	h = &Header{}
	if size == sizeofHdr1 {
		pair, err = decodeHeader1(hr, h)
	} else {
		pair, err = decodeHeader2(hr, h)
	}
	if err != nil {
		return nil, false, err
	}
	if err := h.validate(); err != nil {
		return nil, false, fmt.Errorf("invalid header: %w", err)
	}
	h.bigEndian = order == binary.BigEndian
	if pair {
		return h, true, nil
	}
	// Skip the extension flag and any extensions up to vox_offset.
	minOffset := int64(size)
	if h.VoxOffset < minOffset {
		return nil, false, fmt.Errorf("invalid header: vox_offset %d is inside the %d-byte header", h.VoxOffset, size)
	}
	if n, err := io.CopyN(io.Discard, r, h.VoxOffset-minOffset); err != nil {
		return nil, false, fmt.Errorf("truncated file: vox_offset is %d but the file ends at byte %d", h.VoxOffset, minOffset+n)
	}
	return h, false, nil
}

func decodeHeader1(hr headerReader, h *Header) (pair bool, err error) {
	magic := hr.b[344:348]
	switch {
	case bytes.Equal(magic, magic1Single):
	case bytes.Equal(magic, magic1Pair):
		pair = true
	default:
		return false, fmt.Errorf("%w: magic is %q, want \"n+1\" or \"ni1\" (an ANALYZE 7.5 header?)", ErrNotNIfTI, hr.str(344, 4))
	}
	h.Version = 1
	for i := 0; i < 8; i++ {
		h.Dim[i] = hr.i16(40 + 2*i)
		h.Pixdim[i] = hr.f32(76 + 4*i)
	}
	h.DimInfo = hr.b[39]
	h.IntentP1, h.IntentP2, h.IntentP3 = hr.f32(56), hr.f32(60), hr.f32(64)
	h.IntentCode = int(hr.i16(68))
	h.Datatype = DataType(hr.i16(70))
	h.Bitpix = int(hr.i16(72))
	h.SliceStart = hr.i16(74)
	h.VoxOffset = int64(hr.f32(108))
	h.SclSlope, h.SclInter = hr.f32(112), hr.f32(116)
	h.SliceEnd = hr.i16(120)
	h.SliceCode = int(hr.b[122])
	h.XYZTUnits = int(hr.b[123])
	h.CalMax, h.CalMin = hr.f32(124), hr.f32(128)
	h.SliceDuration, h.Toffset = hr.f32(132), hr.f32(136)
	h.Descrip = hr.str(148, 80)
	h.AuxFile = hr.str(228, 24)
	h.QformCode, h.SformCode = int(hr.i16(252)), int(hr.i16(254))
	h.QuaternB, h.QuaternC, h.QuaternD = hr.f32(256), hr.f32(260), hr.f32(264)
	h.QOffset = [3]float64{hr.f32(268), hr.f32(272), hr.f32(276)}
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			h.Srow[r][c] = hr.f32(280 + 16*r + 4*c)
		}
	}
	h.IntentName = hr.str(328, 16)
	if f := hr.f32(108); math.IsNaN(f) || f < 0 || f > math.MaxInt32 {
		return false, fmt.Errorf("invalid header: vox_offset %v", f)
	}
	return pair, nil
}

func decodeHeader2(hr headerReader, h *Header) (pair bool, err error) {
	magic := hr.b[4:12]
	switch {
	case bytes.Equal(magic, magic2Single):
	case bytes.Equal(magic, magic2Pair):
		pair = true
	default:
		return false, fmt.Errorf("%w: NIfTI-2 magic is %q, want \"n+2\\x00\\r\\n\\x1a\\n\"", ErrNotNIfTI, string(magic))
	}
	h.Version = 2
	h.Datatype = DataType(hr.i16(12))
	h.Bitpix = int(hr.i16(14))
	for i := 0; i < 8; i++ {
		h.Dim[i] = hr.i64(16 + 8*i)
		h.Pixdim[i] = hr.f64(104 + 8*i)
	}
	h.IntentP1, h.IntentP2, h.IntentP3 = hr.f64(80), hr.f64(88), hr.f64(96)
	h.VoxOffset = hr.i64(168)
	h.SclSlope, h.SclInter = hr.f64(176), hr.f64(184)
	h.CalMax, h.CalMin = hr.f64(192), hr.f64(200)
	h.SliceDuration, h.Toffset = hr.f64(208), hr.f64(216)
	h.SliceStart, h.SliceEnd = hr.i64(224), hr.i64(232)
	h.Descrip = hr.str(240, 80)
	h.AuxFile = hr.str(320, 24)
	h.QformCode, h.SformCode = int(hr.i32(344)), int(hr.i32(348))
	h.QuaternB, h.QuaternC, h.QuaternD = hr.f64(352), hr.f64(360), hr.f64(368)
	h.QOffset = [3]float64{hr.f64(376), hr.f64(384), hr.f64(392)}
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			h.Srow[r][c] = hr.f64(400 + 32*r + 8*c)
		}
	}
	h.SliceCode = int(hr.i32(496))
	h.XYZTUnits = int(hr.i32(500))
	h.IntentCode = int(hr.i32(504))
	h.IntentName = hr.str(508, 16)
	h.DimInfo = hr.b[524]
	return pair, nil
}

// decodeData reads the voxel data that follow the header and converts them
// to little-endian order.
func decodeData(r io.Reader, h *Header) (*Image, error) {
	size := h.Datatype.Size()
	want := h.NumVoxels() * int64(size)
	// Grow the buffer as data arrive rather than trusting the header's size
	// for one allocation.
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, want))
	if err != nil {
		return nil, fmt.Errorf("read voxel data: %w", err)
	}
	if n < want {
		return nil, fmt.Errorf("truncated file: header declares %v %v voxels (%d bytes) but only %d bytes of data follow",
			h.Shape(), h.Datatype, want, n)
	}
	data := buf.Bytes()
	if h.bigEndian {
		swapBytes(data, h.Datatype)
		h.bigEndian = false
	}
	return &Image{Header: *h, Data: data}, nil
}

// swapBytes reverses the byte order of every element in place.
func swapBytes(data []byte, t DataType) {
	elem := t.Size()
	switch t {
	case Complex64, Complex128, Complex256:
		elem /= 2
	case RGB24, RGBA32:
		return
	}
	if elem <= 1 {
		return
	}
	for i := 0; i+elem <= len(data); i += elem {
		e := data[i : i+elem]
		for a, b := 0, elem-1; a < b; a, b = a+1, b-1 {
			e[a], e[b] = e[b], e[a]
		}
	}
}

// Float64 returns the voxel values with scl_slope/scl_inter applied, in file
// order. It fails for non-scalar datatypes (complex, RGB, float128).
func (img *Image) Float64() ([]float64, error) {
	out := make([]float64, 0, len(img.Data)/max(1, img.Datatype.Size()))
	err := img.each(func(v float64) { out = append(out, v) })
	return out, err
}

// Float32 is Float64 rounded to float32, which halves the memory of large
// volumes; integers up to 2^24 (every label map in practice) stay exact.
func (img *Image) Float32() ([]float32, error) {
	out := make([]float32, 0, len(img.Data)/max(1, img.Datatype.Size()))
	err := img.each(func(v float64) { out = append(out, float32(v)) })
	return out, err
}

// Scaled reports whether the header asks for scl_slope/scl_inter scaling.
func (h *Header) Scaled() bool {
	s := h.SclSlope
	return s != 0 && !math.IsNaN(s) && !math.IsInf(s, 0) && !(s == 1 && h.SclInter == 0)
}

// each calls fn with every voxel value, scaled.
func (img *Image) each(fn func(float64)) error {
	t := img.Datatype
	if !t.Scalar() {
		return fmt.Errorf("datatype %v is not a scalar type (complex, RGB and float128 are not supported)", t)
	}
	size := t.Size()
	n := len(img.Data) / size
	if int64(n) != img.NumVoxels() {
		return fmt.Errorf("image has %d bytes of data, want %d voxels of %d bytes", len(img.Data), img.NumVoxels(), size)
	}
	slope, inter := 1.0, 0.0
	if img.Scaled() {
		slope = img.SclSlope
		if !math.IsNaN(img.SclInter) && !math.IsInf(img.SclInter, 0) {
			inter = img.SclInter
		}
	}
	d := img.Data
	le := binary.LittleEndian
	for i := 0; i < n; i++ {
		o := i * size
		var v float64
		switch t {
		case Uint8:
			v = float64(d[o])
		case Int8:
			v = float64(int8(d[o]))
		case Int16:
			v = float64(int16(le.Uint16(d[o:])))
		case Uint16:
			v = float64(le.Uint16(d[o:]))
		case Int32:
			v = float64(int32(le.Uint32(d[o:])))
		case Uint32:
			v = float64(le.Uint32(d[o:]))
		case Int64:
			v = float64(int64(le.Uint64(d[o:])))
		case Uint64:
			v = float64(le.Uint64(d[o:]))
		case Float32:
			v = float64(math.Float32frombits(le.Uint32(d[o:])))
		case Float64:
			v = math.Float64frombits(le.Uint64(d[o:]))
		}
		fn(v*slope + inter)
	}
	return nil
}

// Number is the set of Go types that New stores.
type Number interface {
	~uint8 | ~int8 | ~int16 | ~uint16 | ~int32 | ~uint32 | ~int64 | ~uint64 | ~float32 | ~float64
}

// New returns a NIfTI-1 image of the given shape (1 to 7 dimensions) holding
// data in file order (first dimension fastest), with the datatype matching
// T, unit voxel sizes in mm and no transform. Set the geometry with
// Header.SetAffine.
func New[T Number](shape []int, data []T) (*Image, error) {
	if len(shape) < 1 || len(shape) > 7 {
		return nil, fmt.Errorf("nifti: %d dimensions, want 1..7", len(shape))
	}
	h := Header{Version: 1, XYZTUnits: UnitsMM, VoxOffset: 352}
	h.Dim[0] = int64(len(shape))
	n := int64(1)
	for i, s := range shape {
		if s < 1 {
			return nil, fmt.Errorf("nifti: dimension %d has size %d", i, s)
		}
		h.Dim[i+1] = int64(s)
		n *= int64(s)
	}
	for i := len(shape) + 1; i < 8; i++ {
		h.Dim[i] = 1
	}
	for i := range h.Pixdim {
		h.Pixdim[i] = 1
	}
	if int64(len(data)) != n {
		return nil, fmt.Errorf("nifti: shape %v needs %d values, got %d", shape, n, len(data))
	}
	var zero T
	var dt DataType
	switch any(zero).(type) {
	case uint8:
		dt = Uint8
	case int8:
		dt = Int8
	case int16:
		dt = Int16
	case uint16:
		dt = Uint16
	case int32:
		dt = Int32
	case uint32:
		dt = Uint32
	case int64:
		dt = Int64
	case uint64:
		dt = Uint64
	case float32:
		dt = Float32
	case float64:
		dt = Float64
	default:
		return nil, fmt.Errorf("nifti: unsupported element type %T", zero)
	}
	h.Datatype = dt
	h.Bitpix = 8 * dt.Size()
	var buf bytes.Buffer
	buf.Grow(int(n) * dt.Size())
	if err := binary.Write(&buf, binary.LittleEndian, data); err != nil {
		return nil, fmt.Errorf("nifti: encode data: %w", err)
	}
	return &Image{Header: h, Data: buf.Bytes()}, nil
}

// Write writes img to path as a single-file NIfTI (.nii), gzipped when the
// path ends in ".gz". The version follows img.Version (NIfTI-2 when 2, or
// when a dimension does not fit NIfTI-1's int16).
func Write(path string, img *Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	var w io.Writer = bw
	var zw *gzip.Writer
	if strings.HasSuffix(strings.ToLower(path), ".gz") {
		zw = gzip.NewWriter(bw)
		w = zw
	}
	err = Encode(w, img)
	if zw != nil {
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Encode writes img as an uncompressed single-file NIfTI, little-endian,
// with no extensions.
func Encode(w io.Writer, img *Image) error {
	h := img.Header
	if err := h.validate(); err != nil {
		return fmt.Errorf("invalid header: %w", err)
	}
	if want := h.NumVoxels() * int64(h.Datatype.Size()); int64(len(img.Data)) != want {
		return fmt.Errorf("image has %d bytes of data, header needs %d", len(img.Data), want)
	}
	version := h.Version
	for i := 0; i < 8; i++ {
		if h.Dim[i] > math.MaxInt16 {
			version = 2
		}
	}
	h.Bitpix = 8 * h.Datatype.Size()
	var hdr []byte
	if version == 2 {
		hdr = encodeHeader2(&h)
	} else {
		hdr = encodeHeader1(&h)
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(img.Data)
	return err
}

type headerWriter struct{ b []byte }

func (h headerWriter) i16(off int, v int64) {
	binary.LittleEndian.PutUint16(h.b[off:], uint16(int16(v)))
}
func (h headerWriter) i32(off int, v int64) {
	binary.LittleEndian.PutUint32(h.b[off:], uint32(int32(v)))
}
func (h headerWriter) i64(off int, v int64) { binary.LittleEndian.PutUint64(h.b[off:], uint64(v)) }
func (h headerWriter) f32(off int, v float64) {
	binary.LittleEndian.PutUint32(h.b[off:], math.Float32bits(float32(v)))
}
func (h headerWriter) f64(off int, v float64) {
	binary.LittleEndian.PutUint64(h.b[off:], math.Float64bits(v))
}
func (h headerWriter) str(off, n int, s string) {
	if len(s) >= n {
		s = s[:n-1]
	}
	copy(h.b[off:off+n], s)
}

// encodeHeader1 returns a NIfTI-1 header plus the 4-byte extension flag
// (vox_offset 352).
func encodeHeader1(h *Header) []byte {
	hw := headerWriter{make([]byte, 352)}
	hw.i32(0, sizeofHdr1)
	hw.b[38] = 'r'
	hw.b[39] = h.DimInfo
	for i := 0; i < 8; i++ {
		hw.i16(40+2*i, h.Dim[i])
		hw.f32(76+4*i, h.Pixdim[i])
	}
	hw.f32(56, h.IntentP1)
	hw.f32(60, h.IntentP2)
	hw.f32(64, h.IntentP3)
	hw.i16(68, int64(h.IntentCode))
	hw.i16(70, int64(h.Datatype))
	hw.i16(72, int64(h.Bitpix))
	hw.i16(74, h.SliceStart)
	hw.f32(108, 352)
	hw.f32(112, h.SclSlope)
	hw.f32(116, h.SclInter)
	hw.i16(120, h.SliceEnd)
	hw.b[122] = byte(h.SliceCode)
	hw.b[123] = byte(h.XYZTUnits)
	hw.f32(124, h.CalMax)
	hw.f32(128, h.CalMin)
	hw.f32(132, h.SliceDuration)
	hw.f32(136, h.Toffset)
	hw.str(148, 80, h.Descrip)
	hw.str(228, 24, h.AuxFile)
	hw.i16(252, int64(h.QformCode))
	hw.i16(254, int64(h.SformCode))
	hw.f32(256, h.QuaternB)
	hw.f32(260, h.QuaternC)
	hw.f32(264, h.QuaternD)
	for i := 0; i < 3; i++ {
		hw.f32(268+4*i, h.QOffset[i])
	}
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			hw.f32(280+16*r+4*c, h.Srow[r][c])
		}
	}
	hw.str(328, 16, h.IntentName)
	copy(hw.b[344:], magic1Single)
	return hw.b
}

// encodeHeader2 returns a NIfTI-2 header plus the 4-byte extension flag
// (vox_offset 544).
func encodeHeader2(h *Header) []byte {
	hw := headerWriter{make([]byte, 544)}
	hw.i32(0, sizeofHdr2)
	copy(hw.b[4:], magic2Single)
	hw.i16(12, int64(h.Datatype))
	hw.i16(14, int64(h.Bitpix))
	for i := 0; i < 8; i++ {
		hw.i64(16+8*i, h.Dim[i])
		hw.f64(104+8*i, h.Pixdim[i])
	}
	hw.f64(80, h.IntentP1)
	hw.f64(88, h.IntentP2)
	hw.f64(96, h.IntentP3)
	hw.i64(168, 544)
	hw.f64(176, h.SclSlope)
	hw.f64(184, h.SclInter)
	hw.f64(192, h.CalMax)
	hw.f64(200, h.CalMin)
	hw.f64(208, h.SliceDuration)
	hw.f64(216, h.Toffset)
	hw.i64(224, h.SliceStart)
	hw.i64(232, h.SliceEnd)
	hw.str(240, 80, h.Descrip)
	hw.str(320, 24, h.AuxFile)
	hw.i32(344, int64(h.QformCode))
	hw.i32(348, int64(h.SformCode))
	hw.f64(352, h.QuaternB)
	hw.f64(360, h.QuaternC)
	hw.f64(368, h.QuaternD)
	for i := 0; i < 3; i++ {
		hw.f64(376+8*i, h.QOffset[i])
	}
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			hw.f64(400+32*r+8*c, h.Srow[r][c])
		}
	}
	hw.i32(496, int64(h.SliceCode))
	hw.i32(500, int64(h.XYZTUnits))
	hw.i32(504, int64(h.IntentCode))
	hw.str(508, 16, h.IntentName)
	hw.b[524] = h.DimInfo
	return hw.b
}
