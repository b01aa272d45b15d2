package medimg

import (
	"fmt"
	"image"
	"math"
	"strconv"
	"strings"
)

// Axis is a slicing direction.
type Axis int

// The three slicing directions.
const (
	// Axial slices are perpendicular to the Inferior-Superior axis.
	Axial Axis = iota
	// Coronal slices are perpendicular to the Anterior-Posterior axis.
	Coronal
	// Sagittal slices are perpendicular to the Right-Left axis.
	Sagittal
)

// Axes lists the three axes in their usual order.
var Axes = []Axis{Axial, Coronal, Sagittal}

// String returns "axial", "coronal" or "sagittal".
func (a Axis) String() string {
	switch a {
	case Axial:
		return "axial"
	case Coronal:
		return "coronal"
	case Sagittal:
		return "sagittal"
	}
	return fmt.Sprintf("axis(%d)", int(a))
}

// canonical returns the canonical axis a slice of this direction is
// perpendicular to.
func (a Axis) canonical() int {
	switch a {
	case Axial:
		return 2
	case Coronal:
		return 1
	}
	return 0
}

// ParseAxis parses an axis name: axial (also ax, transverse, z), coronal
// (cor, y) or sagittal (sag, x), in any case.
func ParseAxis(s string) (Axis, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "axial", "ax", "transverse", "transversal", "z":
		return Axial, nil
	case "coronal", "cor", "y":
		return Coronal, nil
	case "sagittal", "sag", "x":
		return Sagittal, nil
	}
	return 0, fmt.Errorf("unknown axis %q (want axial, coronal or sagittal)", s)
}

// ParseAxes parses a comma-separated list of axes ("axial,coronal"),
// rejecting repeats.
func ParseAxes(s string) ([]Axis, error) {
	var out []Axis
	seen := map[Axis]bool{}
	for _, part := range strings.Split(s, ",") {
		a, err := ParseAxis(part)
		if err != nil {
			return nil, err
		}
		if seen[a] {
			return nil, fmt.Errorf("axis %s given twice in %q", a, s)
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}

// SliceSpec names one slice of a volume: an axis and an index along the
// canonical axis perpendicular to it (see the package documentation).
type SliceSpec struct {
	Axis  Axis
	Index int
}

// String returns the spec as ParseSlice reads it, e.g. "axial:42".
func (s SliceSpec) String() string { return fmt.Sprintf("%s:%d", s.Axis, s.Index) }

// ParseSlice parses "AXIS:INDEX", e.g. "axial:42" or "sag:10".
func ParseSlice(s string) (SliceSpec, error) {
	name, idx, ok := strings.Cut(s, ":")
	if !ok {
		return SliceSpec{}, fmt.Errorf("slice %q: want AXIS:INDEX, e.g. axial:42", s)
	}
	a, err := ParseAxis(name)
	if err != nil {
		return SliceSpec{}, fmt.Errorf("slice %q: %w", s, err)
	}
	i, err := strconv.Atoi(strings.TrimSpace(idx))
	if err != nil || i < 0 {
		return SliceSpec{}, fmt.Errorf("slice %q: index %q is not a non-negative integer", s, idx)
	}
	return SliceSpec{Axis: a, Index: i}, nil
}

// NumSlices returns the number of slices along an axis.
func (v *Volume) NumSlices(a Axis) int { return v.CanonicalDim()[a.canonical()] }

// SliceInfo describes the 2-D image that a slice becomes.
type SliceInfo struct {
	Spec SliceSpec
	// Width and Height are the size of the returned slice, after
	// resampling to square pixels.
	Width, Height int
	// PixelSpacing is the size in mm of a returned pixel.
	PixelSpacing float64
	// SourceWidth and SourceHeight are the slice's size in voxels.
	SourceWidth, SourceHeight int
	// SourceSpacing is the voxel size in mm across columns and down rows.
	SourceSpacing [2]float64
	// Low and High are the intensities mapped to 0 and 255 (Slice8 only).
	Low, High float64
}

// squareTolerance is the relative difference between the row and column
// spacing below which pixels count as square and no resampling is done.
const squareTolerance = 0.01

// SliceInfo returns the geometry of a slice: its voxel size, and its size
// once resampled to square pixels. Pixels become square by upsampling the
// coarser direction, so no in-plane detail is lost.
func (v *Volume) SliceInfo(spec SliceSpec) (SliceInfo, error) {
	cd := v.CanonicalDim()
	cs := v.CanonicalSpacing()
	if spec.Axis < Axial || spec.Axis > Sagittal {
		return SliceInfo{}, fmt.Errorf("invalid axis %d", int(spec.Axis))
	}
	if n := cd[spec.Axis.canonical()]; spec.Index < 0 || spec.Index >= n {
		return SliceInfo{}, fmt.Errorf("slice %s out of range: the volume has %d %s slices (0..%d)", spec, n, spec.Axis, n-1)
	}
	info := SliceInfo{Spec: spec}
	switch spec.Axis {
	case Axial:
		info.SourceWidth, info.SourceHeight = cd[0], cd[1]
		info.SourceSpacing = [2]float64{cs[0], cs[1]}
	case Coronal:
		info.SourceWidth, info.SourceHeight = cd[0], cd[2]
		info.SourceSpacing = [2]float64{cs[0], cs[2]}
	case Sagittal:
		info.SourceWidth, info.SourceHeight = cd[1], cd[2]
		info.SourceSpacing = [2]float64{cs[1], cs[2]}
	}
	sx, sy := info.SourceSpacing[0], info.SourceSpacing[1]
	info.Width, info.Height, info.PixelSpacing = info.SourceWidth, info.SourceHeight, sx
	if math.Abs(sx-sy) > squareTolerance*math.Min(sx, sy) {
		s := math.Min(sx, sy)
		info.PixelSpacing = s
		info.Width = max(1, int(math.Round(float64(info.SourceWidth)*sx/s)))
		info.Height = max(1, int(math.Round(float64(info.SourceHeight)*sy/s)))
		const maxSide = 1 << 14
		if info.Width > maxSide || info.Height > maxSide {
			return SliceInfo{}, fmt.Errorf("slice %s would be %dx%d pixels after resampling to square pixels (voxel size %gx%g mm): too large",
				spec, info.Width, info.Height, sx, sy)
		}
	}
	return info, nil
}

// canonicalVoxel returns the canonical voxel at (row, col) of a slice
// before resampling, following the display conventions of the package
// documentation.
func canonicalVoxel(spec SliceSpec, cd [3]int, row, col int) [3]int {
	switch spec.Axis {
	case Axial:
		return [3]int{col, row, spec.Index}
	case Coronal:
		return [3]int{col, spec.Index, cd[2] - 1 - row}
	}
	return [3]int{spec.Index, col, cd[2] - 1 - row}
}

// SourceSlice returns the slice's voxel values without resampling, row by
// row (SourceWidth x SourceHeight).
func (v *Volume) SourceSlice(spec SliceSpec) ([]float32, SliceInfo, error) {
	info, err := v.SliceInfo(spec)
	if err != nil {
		return nil, info, err
	}
	o := v.orientation()
	cd := v.CanonicalDim()
	out := make([]float32, info.SourceWidth*info.SourceHeight)
	for r := 0; r < info.SourceHeight; r++ {
		for c := 0; c < info.SourceWidth; c++ {
			out[r*info.SourceWidth+c] = v.Data[v.fileIndex(o, canonicalVoxel(spec, cd, r, c))]
		}
	}
	return out, info, nil
}

// SliceFloat returns the slice resampled to square pixels by bilinear
// interpolation (pixel centres aligned), row by row (Width x Height), in
// the volume's units (e.g. HU).
func (v *Volume) SliceFloat(spec SliceSpec) ([]float32, SliceInfo, error) {
	src, info, err := v.SourceSlice(spec)
	if err != nil {
		return nil, info, err
	}
	if info.Width == info.SourceWidth && info.Height == info.SourceHeight {
		return src, info, nil
	}
	return resampleBilinear(src, info.SourceWidth, info.SourceHeight, info.Width, info.Height), info, nil
}

// resampleBilinear resizes a w x h plane to W x H.
func resampleBilinear(src []float32, w, h, W, H int) []float32 {
	out := make([]float32, W*H)
	sx, sy := float64(w)/float64(W), float64(h)/float64(H)
	for r := 0; r < H; r++ {
		y := clamp((float64(r)+0.5)*sy-0.5, 0, float64(h-1))
		y0 := int(y)
		y1 := min(y0+1, h-1)
		fy := y - float64(y0)
		for c := 0; c < W; c++ {
			x := clamp((float64(c)+0.5)*sx-0.5, 0, float64(w-1))
			x0 := int(x)
			x1 := min(x0+1, w-1)
			fx := x - float64(x0)
			top := float64(src[y0*w+x0])*(1-fx) + float64(src[y0*w+x1])*fx
			bot := float64(src[y1*w+x0])*(1-fx) + float64(src[y1*w+x1])*fx
			out[r*W+c] = float32(top*(1-fy) + bot*fy)
		}
	}
	return out
}

func clamp(x, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, x)) }

// SliceVoxels returns, for every pixel of the square-pixel slice (Width x
// Height, row by row), the file-order index into Data of the nearest voxel.
// Use it to sample a label map on an image's slice grid, or to paint a
// predicted 2-D mask back into a label volume.
func (v *Volume) SliceVoxels(spec SliceSpec) ([]int, SliceInfo, error) {
	info, err := v.SliceInfo(spec)
	if err != nil {
		return nil, info, err
	}
	o := v.orientation()
	cd := v.CanonicalDim()
	out := make([]int, info.Width*info.Height)
	for r := 0; r < info.Height; r++ {
		sr := min(info.SourceHeight-1, int((float64(r)+0.5)*float64(info.SourceHeight)/float64(info.Height)))
		for c := 0; c < info.Width; c++ {
			sc := min(info.SourceWidth-1, int((float64(c)+0.5)*float64(info.SourceWidth)/float64(info.Width)))
			out[r*info.Width+c] = v.fileIndex(o, canonicalVoxel(spec, cd, sr, sc))
		}
	}
	return out, info, nil
}

// SliceLabels returns the slice of a label map, resampled to square pixels
// by nearest neighbour (Width x Height, row by row). Values are rounded to
// integers.
func (v *Volume) SliceLabels(spec SliceSpec) ([]int32, SliceInfo, error) {
	idx, info, err := v.SliceVoxels(spec)
	if err != nil {
		return nil, info, err
	}
	out := make([]int32, len(idx))
	for p, i := range idx {
		x := v.Data[i]
		if x != x { // NaN
			continue
		}
		out[p] = int32(math.Round(float64(x)))
	}
	return out, info, nil
}

// Slice8 returns a slice as an 8-bit grey image with square pixels, ready
// for a model: the volume is windowed with win (see Window) and scaled to
// 0..255. The orientation follows the package documentation (axial:
// anterior up, patient left on the image's right; coronal and sagittal:
// superior up).
func (v *Volume) Slice8(spec SliceSpec, win Window) (*image.Gray, SliceInfo, error) {
	lo, hi, err := win.Range(v)
	if err != nil {
		return nil, SliceInfo{}, err
	}
	vals, info, err := v.SliceFloat(spec)
	if err != nil {
		return nil, info, err
	}
	info.Low, info.High = lo, hi
	img := image.NewGray(image.Rect(0, 0, info.Width, info.Height))
	ToUint8(img.Pix, vals, lo, hi)
	return img, info, nil
}

// ToUint8 maps values to dst: lo and below to 0, hi and above to 255,
// linearly in between (rounded); NaN becomes 0, and so does everything when
// hi <= lo.
func ToUint8(dst []uint8, vals []float32, lo, hi float64) {
	width := hi - lo
	for i, x := range vals {
		f := float64(x)
		switch {
		case f != f || !(width > 0) || f <= lo:
			dst[i] = 0
		case f >= hi:
			dst[i] = 255
		default:
			dst[i] = uint8(math.Round((f - lo) * 255 / width))
		}
	}
}
