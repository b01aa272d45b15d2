package medimg

import (
	"fmt"
	"math"
)

// orientation maps the canonical LPS frame onto the file's voxel axes:
// canonical axis a is file axis perm[a], reversed when flip[a].
type orientation struct {
	perm [3]int
	flip [3]bool
}

// canonicalDirs are the canonical axes' directions in RAS+ world
// coordinates: Left = -x, Posterior = -y, Superior = +z.
var canonicalSign = [3]float64{-1, -1, 1}

// computeOrientation matches each file axis to the world axis its affine
// column points along most closely (greedily, largest cosine first), as
// nibabel's io_orientation does for non-degenerate affines.
func computeOrientation(aff [4][4]float64) orientation {
	var cos [3][3]float64 // cos[world][file]
	for c := 0; c < 3; c++ {
		n := math.Sqrt(aff[0][c]*aff[0][c] + aff[1][c]*aff[1][c] + aff[2][c]*aff[2][c])
		if n == 0 {
			n = 1
		}
		for r := 0; r < 3; r++ {
			cos[r][c] = aff[r][c] / n
		}
	}
	var o orientation
	usedW, usedF := [3]bool{}, [3]bool{}
	for step := 0; step < 3; step++ {
		bw, bf, best := -1, -1, -1.0
		for w := 0; w < 3; w++ {
			if usedW[w] {
				continue
			}
			for f := 0; f < 3; f++ {
				if usedF[f] {
					continue
				}
				if a := math.Abs(cos[w][f]); a > best {
					bw, bf, best = w, f, a
				}
			}
		}
		usedW[bw], usedF[bf] = true, true
		o.perm[bw] = bf
		o.flip[bw] = cos[bw][bf]*canonicalSign[bw] < 0
	}
	return o
}

// orientation returns the volume's cached orientation.
func (v *Volume) orientation() orientation {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.orient == nil {
		o := computeOrientation(v.Affine)
		v.orient = &o
	}
	return *v.orient
}

// Orientation returns the anatomical direction each file axis points to,
// as three letters (nibabel's axis codes): "RAS" for a NIfTI-style volume
// whose i axis runs to the patient's Right, "LPS" for a DICOM-style one.
func (v *Volume) Orientation() string {
	o := v.orientation()
	var codes [3]byte
	pos := [3]byte{'L', 'P', 'S'}
	neg := [3]byte{'R', 'A', 'I'}
	for a := 0; a < 3; a++ {
		if o.flip[a] {
			codes[o.perm[a]] = neg[a]
		} else {
			codes[o.perm[a]] = pos[a]
		}
	}
	return string(codes[:])
}

// CanonicalDim returns the number of voxels along the canonical axes
// (Right->Left, Anterior->Posterior, Inferior->Superior).
func (v *Volume) CanonicalDim() [3]int {
	o := v.orientation()
	return [3]int{v.Dim[o.perm[0]], v.Dim[o.perm[1]], v.Dim[o.perm[2]]}
}

// CanonicalSpacing returns the voxel size in mm along the canonical axes.
func (v *Volume) CanonicalSpacing() [3]float64 {
	o := v.orientation()
	s := v.Spacing()
	return [3]float64{s[o.perm[0]], s[o.perm[1]], s[o.perm[2]]}
}

// fileIndex returns the flat file-order index of canonical voxel c.
func (v *Volume) fileIndex(o orientation, c [3]int) int {
	var f [3]int
	for a := 0; a < 3; a++ {
		x := c[a]
		if o.flip[a] {
			x = v.Dim[o.perm[a]] - 1 - x
		}
		f[o.perm[a]] = x
	}
	return f[0] + v.Dim[0]*(f[1]+v.Dim[1]*f[2])
}

// Canonical returns a copy of the volume with its voxels reordered into the
// canonical LPS frame (i to the patient's Left, j Posterior, k Superior)
// and the affine updated so that every voxel keeps its world position.
func (v *Volume) Canonical() *Volume {
	o := v.orientation()
	cd := v.CanonicalDim()
	data := make([]float32, len(v.Data))
	n := 0
	for k := 0; k < cd[2]; k++ {
		for j := 0; j < cd[1]; j++ {
			for i := 0; i < cd[0]; i++ {
				data[n] = v.Data[v.fileIndex(o, [3]int{i, j, k})]
				n++
			}
		}
	}
	// Canonical voxel c sits at file voxel f with f[perm[a]] = c[a] or
	// dim-1-c[a]; compose that with the file affine.
	var aff [4][4]float64
	aff[3][3] = 1
	for r := 0; r < 3; r++ {
		aff[r][3] = v.Affine[r][3]
	}
	for a := 0; a < 3; a++ {
		p := o.perm[a]
		for r := 0; r < 3; r++ {
			if o.flip[a] {
				aff[r][a] = -v.Affine[r][p]
				aff[r][3] += v.Affine[r][p] * float64(v.Dim[p]-1)
			} else {
				aff[r][a] = v.Affine[r][p]
			}
		}
	}
	return &Volume{Dim: cd, Data: data, Affine: aff, Modality: v.Modality, Source: v.Source}
}

// FileSlice returns the slice that holds file axis fileAxis (0 i, 1 j, 2 k)
// at index: the canonical slice perpendicular to that axis (axial when the
// file's k axis runs inferior-superior, as in most CT and MR files). Its
// SliceVoxels all have that file index, so a mask predicted on it paints
// exactly the file's plane fileAxis = index (as MONAI Label's slice k).
func (v *Volume) FileSlice(fileAxis, index int) (SliceSpec, error) {
	if fileAxis < 0 || fileAxis > 2 {
		return SliceSpec{}, fmt.Errorf("file axis %d: want 0, 1 or 2", fileAxis)
	}
	if index < 0 || index >= v.Dim[fileAxis] {
		return SliceSpec{}, fmt.Errorf("index %d along file axis %d is outside the volume (0..%d)", index, fileAxis, v.Dim[fileAxis]-1)
	}
	o := v.orientation()
	for c := 0; c < 3; c++ {
		if o.perm[c] != fileAxis {
			continue
		}
		i := index
		if o.flip[c] {
			i = v.Dim[fileAxis] - 1 - index
		}
		axis := map[int]Axis{0: Sagittal, 1: Coronal, 2: Axial}[c]
		return SliceSpec{Axis: axis, Index: i}, nil
	}
	return SliceSpec{}, fmt.Errorf("file axis %d has no canonical axis", fileAxis)
}
