package medimg

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/segsam/segsam/medimg/dicom"
	"github.com/segsam/segsam/medimg/nifti"
)

// IsNIfTIPath reports whether a file name has a NIfTI extension (.nii,
// .nii.gz or .hdr).
func IsNIfTIPath(path string) bool {
	p := strings.ToLower(path)
	return strings.HasSuffix(p, ".nii") || strings.HasSuffix(p, ".nii.gz") || strings.HasSuffix(p, ".hdr") || strings.HasSuffix(p, ".hdr.gz")
}

// ReadVolume reads a volume from a NIfTI file (.nii, .nii.gz, .hdr/.img),
// a directory holding one DICOM series, or one DICOM file (whose series is
// read from its directory; see dicom.ReadSeries).
func ReadVolume(path string) (*Volume, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read volume: %w", err)
	}
	if st.IsDir() {
		return readDICOM(path)
	}
	img, err := nifti.Read(path)
	if err == nil {
		v, err := FromNIfTI(img)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		v.Source = path
		return v, nil
	}
	if IsNIfTIPath(path) || !errors.Is(err, nifti.ErrNotNIfTI) {
		return nil, err
	}
	v, derr := readDICOM(path)
	if derr != nil {
		if errors.Is(derr, dicom.ErrNotDICOM) {
			return nil, fmt.Errorf("read %s: neither a NIfTI file nor a DICOM file", path)
		}
		return nil, derr
	}
	return v, nil
}

func readDICOM(path string) (*Volume, error) {
	s, err := dicom.ReadSeries(path)
	if err != nil {
		return nil, err
	}
	v, err := FromDICOM(s)
	if err != nil {
		return nil, fmt.Errorf("read DICOM series %s: %w", path, err)
	}
	v.Source = path
	return v, nil
}

// FromDICOM turns a DICOM series into a Volume (i along columns, j along
// rows, k along slices in position order). The modality PT is given as PET.
func FromDICOM(s *dicom.Series) (*Volume, error) {
	v, err := NewVolume([3]int{s.Columns, s.Rows, s.Slices}, s.Data, s.Affine)
	if err != nil {
		return nil, err
	}
	v.Modality = s.Modality
	if v.Modality == "PT" {
		v.Modality = "PET"
	}
	return v, nil
}

// WriteLabelNIfTI writes a label map on ref's voxel grid to path (.nii or
// .nii.gz): labels holds one value per voxel in ref's file order (i
// fastest), as SliceVoxels indexes it. The geometry (dimensions, voxel
// size, qform and sform) is ref's own: copied from its NIfTI header when it
// was read from NIfTI, else built from its affine. The datatype is uint8
// when every label fits, else uint16; the intent is NIFTI_INTENT_LABEL.
func WriteLabelNIfTI(path string, ref *Volume, labels []uint16) error {
	n := ref.Dim[0] * ref.Dim[1] * ref.Dim[2]
	if len(labels) != n {
		return fmt.Errorf("write %s: %d labels for a %v volume (%d voxels)", path, len(labels), ref.Dim, n)
	}
	shape := []int{ref.Dim[0], ref.Dim[1], ref.Dim[2]}
	maxLabel := uint16(0)
	for _, l := range labels {
		maxLabel = max(maxLabel, l)
	}
	var img *nifti.Image
	var err error
	if maxLabel <= math.MaxUint8 {
		b := make([]uint8, n)
		for i, l := range labels {
			b[i] = uint8(l)
		}
		img, err = nifti.New(shape, b)
	} else {
		img, err = nifti.New(shape, labels)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	h := &img.Header
	if ref.header != nil {
		src := ref.header
		h.Pixdim = src.Pixdim
		h.XYZTUnits = src.XYZTUnits
		h.QformCode, h.SformCode = src.QformCode, src.SformCode
		h.QuaternB, h.QuaternC, h.QuaternD = src.QuaternB, src.QuaternC, src.QuaternD
		h.QOffset = src.QOffset
		h.Srow = src.Srow
		h.DimInfo = src.DimInfo
		if src.Version == 2 {
			h.Version = 2
		}
	} else {
		h.SetAffine(ref.Affine, nifti.XformScannerAnat)
	}
	h.SclSlope, h.SclInter = 1, 0
	h.CalMin, h.CalMax = 0, float64(maxLabel)
	h.IntentCode = nifti.IntentLabel
	h.Descrip = "segsam label map"
	return nifti.Write(path, img)
}
