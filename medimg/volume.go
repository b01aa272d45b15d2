// Package medimg holds 3-D medical image volumes (CT, MR, PET) read from
// NIfTI files or DICOM series, and turns them into 2-D 8-bit slices ready for
// a segmentation model.
//
// # Orientation
//
// A Volume keeps its voxels in file order together with the voxel-to-world
// affine (RAS+ millimetres, the NIfTI convention). Slicing first maps the
// volume onto a canonical LPS frame: canonical axis 0 runs from the
// patient's Right to Left, axis 1 from Anterior to Posterior and axis 2 from
// Inferior to Superior. Each file axis is matched to the anatomical axis it
// is closest to (oblique volumes are not resampled, only permuted and
// flipped), so slices come out the same way up whatever the file's
// orientation. Slice indices (SliceSpec.Index) count along the canonical
// axes: axial 0 is the most inferior slice, coronal 0 the most anterior,
// sagittal 0 the rightmost.
//
// Slices are shown in the radiological convention:
//   - axial: viewed from the feet; anterior at the top, the patient's left
//     on the image's right;
//   - coronal: viewed from the front; superior at the top, the patient's
//     left on the image's right;
//   - sagittal: viewed from the patient's left; superior at the top,
//     anterior on the image's left.
package medimg

import (
	"fmt"
	"math"
	"sync"

	"github.com/segsam/segsam/medimg/nifti"
)

// Volume is a 3-D scalar image.
type Volume struct {
	// Dim is the number of voxels along the file's axes i, j, k.
	Dim [3]int
	// Data holds Dim[0]*Dim[1]*Dim[2] values in file order, i varying
	// fastest, with any rescaling (scl_slope, RescaleSlope) applied: HU for
	// CT.
	Data []float32
	// Affine maps voxel indices (i, j, k, 1) to RAS+ world millimetres.
	Affine [4][4]float64
	// Modality is the modality recorded in the file (DICOM's Modality,
	// with PT given as PET); empty when the file does not say (NIfTI).
	Modality string
	// Source is the path the volume was read from.
	Source string

	// header is the NIfTI header of the source, used to write label maps
	// with the same geometry; nil for DICOM.
	header *nifti.Header

	mu     sync.Mutex
	pcts   map[[2]float64][2]float64 // cached percentile ranges
	orient *orientation
}

// NewVolume returns a volume of the given size whose voxel-to-world affine
// is affine (RAS+ mm). data is used, not copied, and must hold
// dim[0]*dim[1]*dim[2] values with i varying fastest.
func NewVolume(dim [3]int, data []float32, affine [4][4]float64) (*Volume, error) {
	n := 1
	for a, d := range dim {
		if d < 1 {
			return nil, fmt.Errorf("volume dimension %d has size %d", a, d)
		}
		if n > math.MaxInt32/d {
			return nil, fmt.Errorf("volume of %v voxels is too large", dim)
		}
		n *= d
	}
	if len(data) != n {
		return nil, fmt.Errorf("volume of %v voxels needs %d values, got %d", dim, n, len(data))
	}
	if err := checkAffine(affine); err != nil {
		return nil, err
	}
	return &Volume{Dim: dim, Data: data, Affine: affine}, nil
}

func checkAffine(m [4][4]float64) error {
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			if math.IsNaN(m[r][c]) || math.IsInf(m[r][c], 0) {
				return fmt.Errorf("voxel-to-world affine has a non-finite entry %v", m[r][c])
			}
		}
	}
	var r [3][3]float64
	for i := 0; i < 3; i++ {
		copy(r[i][:], m[i][:3])
	}
	d := r[0][0]*(r[1][1]*r[2][2]-r[1][2]*r[2][1]) - r[0][1]*(r[1][0]*r[2][2]-r[1][2]*r[2][0]) + r[0][2]*(r[1][0]*r[2][1]-r[1][1]*r[2][0])
	if math.Abs(d) < 1e-12 {
		return fmt.Errorf("voxel-to-world affine is singular (zero voxel size or collinear axes)")
	}
	return nil
}

// Spacing returns the voxel size in mm along the file's axes i, j, k (the
// lengths of the affine's columns).
func (v *Volume) Spacing() [3]float64 {
	var s [3]float64
	for c := 0; c < 3; c++ {
		s[c] = math.Sqrt(v.Affine[0][c]*v.Affine[0][c] + v.Affine[1][c]*v.Affine[1][c] + v.Affine[2][c]*v.Affine[2][c])
	}
	return s
}

// At returns the value of voxel (i, j, k) in file order.
func (v *Volume) At(i, j, k int) float32 {
	return v.Data[i+v.Dim[0]*(j+v.Dim[1]*k)]
}

// SameGrid reports whether w has v's voxel grid: the same dimensions and
// an affine equal to within tol mm (use it to check that a label map
// matches its image).
func (v *Volume) SameGrid(w *Volume, tol float64) bool {
	if v.Dim != w.Dim {
		return false
	}
	for r := 0; r < 3; r++ {
		for c := 0; c < 4; c++ {
			if math.Abs(v.Affine[r][c]-w.Affine[r][c]) > tol {
				return false
			}
		}
	}
	return true
}

// FromNIfTI turns a 3-D NIfTI image (or a 4-D one with a single volume)
// into a Volume, applying scl_slope/scl_inter.
func FromNIfTI(img *nifti.Image) (*Volume, error) {
	shape := img.Shape()
	for len(shape) > 3 && shape[len(shape)-1] == 1 {
		shape = shape[:len(shape)-1]
	}
	if len(shape) > 3 {
		return nil, fmt.Errorf("NIfTI image has shape %v: segsam reads 3-D volumes, not time series or vector images", shape)
	}
	var dim [3]int
	for a := range dim {
		dim[a] = 1
		if a < len(shape) {
			dim[a] = shape[a]
		}
	}
	data, err := img.Float32()
	if err != nil {
		return nil, err
	}
	aff, _ := img.Affine()
	v, err := NewVolume(dim, data, aff)
	if err != nil {
		return nil, err
	}
	h := img.Header
	v.header = &h
	return v, nil
}
