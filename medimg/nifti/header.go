// Package nifti reads and writes NIfTI-1 and NIfTI-2 images (.nii, .nii.gz,
// and the two-file .hdr/.img form for reading): every numeric datatype,
// either byte order, scl_slope/scl_inter scaling, and the qform/sform
// voxel-to-world transforms.
//
// World coordinates follow the NIfTI convention: millimetres in a RAS+ frame,
// +x pointing to the patient's Right, +y to Anterior and +z to Superior.
package nifti

import (
	"fmt"
	"math"
)

// DataType is a NIfTI datatype code (the header's datatype field).
type DataType int16

// The NIfTI datatype codes.
const (
	Uint8      DataType = 2
	Int16      DataType = 4
	Int32      DataType = 8
	Float32    DataType = 16
	Complex64  DataType = 32
	Float64    DataType = 64
	RGB24      DataType = 128
	Int8       DataType = 256
	Uint16     DataType = 512
	Uint32     DataType = 768
	Int64      DataType = 1024
	Uint64     DataType = 1280
	Float128   DataType = 1536
	Complex128 DataType = 1792
	Complex256 DataType = 2048
	RGBA32     DataType = 2304
)

var dataTypeInfo = map[DataType]struct {
	name string
	size int // bytes per voxel
}{
	Uint8: {"uint8", 1}, Int16: {"int16", 2}, Int32: {"int32", 4}, Float32: {"float32", 4},
	Complex64: {"complex64", 8}, Float64: {"float64", 8}, RGB24: {"rgb24", 3}, Int8: {"int8", 1},
	Uint16: {"uint16", 2}, Uint32: {"uint32", 4}, Int64: {"int64", 8}, Uint64: {"uint64", 8},
	Float128: {"float128", 16}, Complex128: {"complex128", 16}, Complex256: {"complex256", 32},
	RGBA32: {"rgba32", 4},
}

// String returns the datatype's name, e.g. "int16".
func (t DataType) String() string {
	if i, ok := dataTypeInfo[t]; ok {
		return i.name
	}
	return fmt.Sprintf("datatype(%d)", int16(t))
}

// Size is the number of bytes per voxel, or 0 for an unknown code.
func (t DataType) Size() int { return dataTypeInfo[t].size }

// Scalar reports whether values of this type convert to one real number
// (every integer and the float32/float64 types).
func (t DataType) Scalar() bool {
	switch t {
	case Uint8, Int8, Int16, Uint16, Int32, Uint32, Int64, Uint64, Float32, Float64:
		return true
	}
	return false
}

// Transform codes (qform_code and sform_code).
const (
	XformUnknown     = 0
	XformScannerAnat = 1
	XformAlignedAnat = 2
	XformTalairach   = 3
	XformMNI152      = 4
)

// IntentLabel is the intent code of a label map (NIFTI_INTENT_LABEL).
const IntentLabel = 1002

// Spatial and temporal units of xyzt_units.
const (
	UnitsMeter  = 1
	UnitsMM     = 2
	UnitsMicron = 3
	UnitsSec    = 8
	UnitsMsec   = 16
	UnitsUsec   = 24
)

// Header holds the fields of a NIfTI-1 or NIfTI-2 header, widened to the
// NIfTI-2 types. Fields of NIfTI-1 that NIfTI-2 dropped (data_type, db_name,
// extents, session_error, regular, glmax, glmin) are not kept.
type Header struct {
	// Version is 1 or 2.
	Version int
	// Dim holds the number of dimensions in Dim[0] and their sizes in
	// Dim[1..Dim[0]].
	Dim [8]int64
	// Pixdim holds qfac in Pixdim[0] and the voxel sizes in Pixdim[1..].
	Pixdim   [8]float64
	Datatype DataType
	Bitpix   int
	// VoxOffset is the byte offset of the voxel data in a .nii file.
	VoxOffset int64
	// SclSlope and SclInter scale stored values: real = stored*slope+inter,
	// unless SclSlope is 0 or not finite (no scaling).
	SclSlope, SclInter float64
	CalMin, CalMax     float64
	SliceDuration      float64
	Toffset            float64
	SliceStart         int64
	SliceEnd           int64
	SliceCode          int
	DimInfo            byte
	XYZTUnits          int
	IntentCode         int
	IntentP1           float64
	IntentP2           float64
	IntentP3           float64
	IntentName         string
	Descrip            string
	AuxFile            string
	// QformCode and SformCode say what the qform and sform transforms mean
	// (XformUnknown: not set).
	QformCode, SformCode int
	// QuaternB, QuaternC, QuaternD and QOffset define the qform.
	QuaternB, QuaternC, QuaternD float64
	QOffset                      [3]float64
	// Srow holds the three rows of the sform affine.
	Srow [3][4]float64

	// bigEndian marks a header decoded from a big-endian file whose data
	// have not been swapped yet.
	bigEndian bool
}

// Shape returns the sizes of the image's dimensions (Dim[1..Dim[0]]).
func (h *Header) Shape() []int {
	n := int(h.Dim[0])
	if n < 1 || n > 7 {
		return nil
	}
	s := make([]int, n)
	for i := range s {
		s[i] = int(h.Dim[i+1])
	}
	return s
}

// NumVoxels is the product of the dimension sizes.
func (h *Header) NumVoxels() int64 {
	n := int64(1)
	for _, d := range h.Shape() {
		n *= int64(d)
	}
	return n
}

// maxVoxels bounds the voxel count a header may declare (2^31), so that a
// corrupt header cannot request an absurd allocation.
const maxVoxels = 1 << 31

// validate checks the header for values that make the data unreadable.
func (h *Header) validate() error {
	nd := h.Dim[0]
	if nd < 1 || nd > 7 {
		return fmt.Errorf("dim[0] = %d, want 1..7", nd)
	}
	total := int64(1)
	for i := int64(1); i <= nd; i++ {
		d := h.Dim[i]
		if d < 1 {
			return fmt.Errorf("dim[%d] = %d, want >= 1", i, d)
		}
		if d > maxVoxels || total*d > maxVoxels {
			return fmt.Errorf("image too large: dims %v exceed %d voxels", h.Dim[1:nd+1], int64(maxVoxels))
		}
		total *= d
	}
	size := h.Datatype.Size()
	if size == 0 {
		return fmt.Errorf("unknown datatype code %d", int16(h.Datatype))
	}
	if h.Bitpix != 0 && h.Bitpix != 8*size {
		return fmt.Errorf("bitpix %d does not match datatype %v (%d bits)", h.Bitpix, h.Datatype, 8*size)
	}
	if h.VoxOffset < 0 {
		return fmt.Errorf("negative vox_offset %d", h.VoxOffset)
	}
	return nil
}

// Spacing returns the voxel sizes along the first three axes, from pixdim
// (absolute values; a missing or zero size reads as 1).
func (h *Header) Spacing() [3]float64 {
	var s [3]float64
	for i := range s {
		v := math.Abs(h.Pixdim[i+1])
		if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			v = 1
		}
		s[i] = v
	}
	return s
}

// spatialScale is the factor that turns the header's spatial unit into
// millimetres (1 when the unit is unknown or already mm).
func (h *Header) spatialScale() float64 {
	switch h.XYZTUnits & 7 {
	case UnitsMeter:
		return 1000
	case UnitsMicron:
		return 0.001
	}
	return 1
}

// Affine returns the voxel-to-world transform (a 4x4 matrix mapping voxel
// indices (i, j, k, 1) to RAS+ millimetres) and the code of the transform it
// used. Like nibabel, it prefers the sform when sform_code > 0, then the
// qform when qform_code > 0, and otherwise scales by pixdim (code 0).
func (h *Header) Affine() (m [4][4]float64, code int) {
	scale := h.spatialScale()
	switch {
	case h.SformCode > 0:
		for r := 0; r < 3; r++ {
			for c := 0; c < 4; c++ {
				m[r][c] = h.Srow[r][c] * scale
			}
		}
		m[3][3] = 1
		return m, h.SformCode
	case h.QformCode > 0:
		m = h.QformAffine()
		for r := 0; r < 3; r++ {
			for c := 0; c < 4; c++ {
				m[r][c] *= scale
			}
		}
		return m, h.QformCode
	}
	s := h.Spacing()
	for i := 0; i < 3; i++ {
		m[i][i] = s[i] * scale
	}
	m[3][3] = 1
	return m, XformUnknown
}

// QformAffine returns the transform defined by the quaternion, qoffset,
// pixdim and qfac (pixdim[0]) fields, in the header's spatial unit,
// whatever qform_code says.
func (h *Header) QformAffine() [4][4]float64 {
	b, c, d := h.QuaternB, h.QuaternC, h.QuaternD
	a2 := 1 - (b*b + c*c + d*d)
	var a float64
	if a2 < 1e-7 {
		// Special case of the standard: a 180 degree rotation; renormalise.
		n := math.Sqrt(b*b + c*c + d*d)
		if n > 0 {
			b, c, d = b/n, c/n, d/n
		}
	} else {
		a = math.Sqrt(a2)
	}
	r := [3][3]float64{
		{a*a + b*b - c*c - d*d, 2*b*c - 2*a*d, 2*b*d + 2*a*c},
		{2*b*c + 2*a*d, a*a + c*c - b*b - d*d, 2*c*d - 2*a*b},
		{2*b*d - 2*a*c, 2*c*d + 2*a*b, a*a + d*d - c*c - b*b},
	}
	s := h.Spacing()
	if h.Pixdim[0] < 0 {
		s[2] = -s[2]
	}
	var m [4][4]float64
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			m[i][j] = r[i][j] * s[j]
		}
		m[i][3] = h.QOffset[i]
	}
	m[3][3] = 1
	return m
}

// SetAffine stores m (voxel indices to RAS+ mm) as the sform, exactly, and
// as the qform, through the nearest rotation with the column lengths of m
// as voxel sizes; both codes are set to code and the spatial unit to mm.
func (h *Header) SetAffine(m [4][4]float64, code int) {
	for r := 0; r < 3; r++ {
		copy(h.Srow[r][:], m[r][:4])
	}
	h.SformCode, h.QformCode = code, code
	h.XYZTUnits = h.XYZTUnits&^7 | UnitsMM

	var rot [3][3]float64
	for j := 0; j < 3; j++ {
		n := math.Sqrt(m[0][j]*m[0][j] + m[1][j]*m[1][j] + m[2][j]*m[2][j])
		if n == 0 {
			n = 1
			rot[j][j] = 1 // degenerate column: assume the axis direction
		} else {
			for i := 0; i < 3; i++ {
				rot[i][j] = m[i][j] / n
			}
		}
		h.Pixdim[j+1] = n
	}
	rot = nearestRotation(rot)
	qfac := 1.0
	if det3(rot) < 0 {
		qfac = -1
		for i := 0; i < 3; i++ {
			rot[i][2] = -rot[i][2]
		}
	}
	h.Pixdim[0] = qfac
	h.QuaternB, h.QuaternC, h.QuaternD = quaternion(rot)
	h.QOffset = [3]float64{m[0][3], m[1][3], m[2][3]}
}

func det3(r [3][3]float64) float64 {
	return r[0][0]*(r[1][1]*r[2][2]-r[1][2]*r[2][1]) -
		r[0][1]*(r[1][0]*r[2][2]-r[1][2]*r[2][0]) +
		r[0][2]*(r[1][0]*r[2][1]-r[1][1]*r[2][0])
}

// nearestRotation returns the orthogonal polar factor of r (the nearest
// orthogonal matrix), by the iteration R <- (R + R^-T)/2.
func nearestRotation(r [3][3]float64) [3][3]float64 {
	for it := 0; it < 50; it++ {
		d := det3(r)
		if math.Abs(d) < 1e-12 {
			return [3][3]float64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}
		}
		// Inverse transpose = cofactor matrix / det.
		var n [3][3]float64
		maxDiff := 0.0
		for i := 0; i < 3; i++ {
			for j := 0; j < 3; j++ {
				i1, i2 := (i+1)%3, (i+2)%3
				j1, j2 := (j+1)%3, (j+2)%3
				cof := r[i1][j1]*r[i2][j2] - r[i1][j2]*r[i2][j1]
				n[i][j] = 0.5 * (r[i][j] + cof/d)
				maxDiff = math.Max(maxDiff, math.Abs(n[i][j]-r[i][j]))
			}
		}
		r = n
		if maxDiff < 1e-12 {
			break
		}
	}
	return r
}

// quaternion returns b, c, d of the unit quaternion (with a >= 0) of the
// proper rotation r, as nifti_mat44_to_quatern does.
func quaternion(r [3][3]float64) (b, c, d float64) {
	var a float64
	tr := r[0][0] + r[1][1] + r[2][2] + 1
	if tr > 0.5 {
		a = 0.5 * math.Sqrt(tr)
		b = 0.25 * (r[2][1] - r[1][2]) / a
		c = 0.25 * (r[0][2] - r[2][0]) / a
		d = 0.25 * (r[1][0] - r[0][1]) / a
	} else {
		xd := 1 + r[0][0] - (r[1][1] + r[2][2])
		yd := 1 + r[1][1] - (r[0][0] + r[2][2])
		zd := 1 + r[2][2] - (r[0][0] + r[1][1])
		switch {
		case xd > 1:
			b = 0.5 * math.Sqrt(xd)
			c = 0.25 * (r[0][1] + r[1][0]) / b
			d = 0.25 * (r[0][2] + r[2][0]) / b
			a = 0.25 * (r[2][1] - r[1][2]) / b
		case yd > 1:
			c = 0.5 * math.Sqrt(yd)
			b = 0.25 * (r[0][1] + r[1][0]) / c
			d = 0.25 * (r[1][2] + r[2][1]) / c
			a = 0.25 * (r[0][2] - r[2][0]) / c
		default:
			d = 0.5 * math.Sqrt(zd)
			b = 0.25 * (r[0][2] + r[2][0]) / d
			c = 0.25 * (r[1][2] + r[2][1]) / d
			a = 0.25 * (r[1][0] - r[0][1]) / d
		}
		if a < 0 {
			b, c, d = -b, -c, -d
		}
	}
	return b, c, d
}
