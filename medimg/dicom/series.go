package dicom

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/segsam/segsam/medimg/nifti"
)

// Series is a 3-D volume assembled from the slices of one DICOM series.
type Series struct {
	// Columns, Rows and Slices are the volume's size: voxel (i, j, k) is
	// column i, row j of the k-th slice in position order.
	Columns, Rows, Slices int
	// Data holds Columns*Rows*Slices values, column fastest, with each
	// slice's RescaleSlope and RescaleIntercept applied (HU for CT).
	Data []float32
	// Affine maps voxel indices (i, j, k, 1) to RAS+ world millimetres
	// (DICOM's LPS patient coordinates with x and y negated).
	Affine [4][4]float64
	// Modality, SeriesInstanceUID and SeriesDescription are copied from
	// the headers.
	Modality, SeriesInstanceUID, SeriesDescription string
	// Files lists the slice files in position order (empty when the series
	// was converted by dcm2niix).
	Files []string
}

// slice is one parsed single-frame image file.
type slice struct {
	path            string
	ds              *DataSet
	rows, cols      int
	pos             [3]float64
	hasPos          bool
	iop             [6]float64
	hasIOP          bool
	spacing         [2]float64 // row spacing, column spacing
	instance        int
	slope, intercep float64
}

// Dcm2niix is the command used to convert series this package cannot
// decode; set it to "" to disable the conversion.
var Dcm2niix = "dcm2niix"

// ReadSeries reads a DICOM series. path is a directory holding the files of
// one series (other files are ignored when they are not DICOM; a directory
// holding several series is an error that lists them), or one file, whose
// series is then read from the files of the same directory.
func ReadSeries(path string) (*Series, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	dir, uid := path, ""
	if !st.IsDir() {
		dir = filepath.Dir(path)
		s, err := readSlice(path)
		if err != nil {
			return nil, err
		}
		uid = s.ds.String(TagSeriesInstanceUID)
	}
	slices, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	groups := map[string][]*slice{}
	var order []string
	for _, s := range slices {
		u := s.ds.String(TagSeriesInstanceUID)
		if _, ok := groups[u]; !ok {
			order = append(order, u)
		}
		groups[u] = append(groups[u], s)
	}
	if uid == "" {
		if len(groups) == 0 {
			return nil, fmt.Errorf("read DICOM series %s: no DICOM image files found", dir)
		}
		if len(groups) > 1 {
			var lines []string
			for _, u := range order {
				g := groups[u]
				lines = append(lines, fmt.Sprintf("%s (%s %q, %d files, e.g. %s)", u, g[0].ds.String(TagModality),
					g[0].ds.String(TagSeriesDescription), len(g), filepath.Base(g[0].path)))
			}
			return nil, fmt.Errorf("read DICOM series %s: the directory holds %d series; pass one of their files instead: %s",
				dir, len(groups), strings.Join(lines, "; "))
		}
		uid = order[0]
	}
	return assemble(dir, groups[uid])
}

// readDir parses every regular file of dir that is a DICOM image.
func readDir(dir string) ([]*slice, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []*slice
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		s, err := readSlice(p)
		if errors.Is(err, ErrNotDICOM) || errors.Is(err, errNoPixels) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

var errNoPixels = errors.New("no pixel data")

// readSlice parses one file's headers.
func readSlice(path string) (*slice, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ds, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !ds.Has(TagPixelData) {
		return nil, fmt.Errorf("read %s: %w", path, errNoPixels)
	}
	s := &slice{path: path, ds: ds}
	var ok bool
	if s.rows, ok = ds.Uint(TagRows); !ok || s.rows < 1 {
		return nil, fmt.Errorf("read %s: missing or invalid Rows %s", path, TagRows)
	}
	if s.cols, ok = ds.Uint(TagColumns); !ok || s.cols < 1 {
		return nil, fmt.Errorf("read %s: missing or invalid Columns %s", path, TagColumns)
	}
	if p, err := ds.Floats(TagImagePositionPatient); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	} else if len(p) == 3 {
		copy(s.pos[:], p)
		s.hasPos = true
	}
	if o, err := ds.Floats(TagImageOrientationPatient); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	} else if len(o) == 6 {
		copy(s.iop[:], o)
		s.hasIOP = true
	}
	s.spacing = [2]float64{1, 1}
	if ps, err := ds.Floats(TagPixelSpacing); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	} else if len(ps) == 2 {
		if !(ps[0] > 0 && ps[1] > 0) {
			return nil, fmt.Errorf("read %s: PixelSpacing %v is not positive", path, ps)
		}
		s.spacing = [2]float64{ps[0], ps[1]}
	}
	s.instance, _ = ds.Uint(TagInstanceNumber)
	if s.slope, err = ds.Float(TagRescaleSlope, 1); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if s.intercep, err = ds.Float(TagRescaleIntercept, 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return s, nil
}

// unsupportedReason says why this package cannot decode a slice itself, or
// returns "".
func (s *slice) unsupportedReason() string {
	ds := s.ds
	if ds.Encapsulated {
		name := transferSyntaxNames[ds.TransferSyntax]
		if name == "" {
			name = "compressed"
		}
		return fmt.Sprintf("pixel data are compressed (%s, transfer syntax %s)", name, ds.TransferSyntax)
	}
	switch ds.TransferSyntax {
	case ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian:
	default:
		return fmt.Sprintf("transfer syntax %s is not supported", ds.TransferSyntax)
	}
	if n, ok := ds.Uint(TagNumberOfFrames); ok && n > 1 {
		return fmt.Sprintf("multi-frame image (%d frames)", n)
	}
	if n, ok := ds.Uint(TagSamplesPerPixel); ok && n != 1 {
		return fmt.Sprintf("%d samples per pixel (colour images are not supported)", n)
	}
	return ""
}

// assemble orders the slices of one series and decodes their pixels.
func assemble(dir string, slices []*slice) (*Series, error) {
	for _, s := range slices {
		if why := s.unsupportedReason(); why != "" {
			return convertWithDcm2niix(dir, s.path, why)
		}
	}
	first := slices[0]
	for _, s := range slices[1:] {
		if s.rows != first.rows || s.cols != first.cols {
			return nil, fmt.Errorf("read DICOM series %s: inconsistent image sizes: %s is %dx%d, %s is %dx%d",
				dir, filepath.Base(first.path), first.cols, first.rows, filepath.Base(s.path), s.cols, s.rows)
		}
		if math.Abs(s.spacing[0]-first.spacing[0]) > 1e-3 || math.Abs(s.spacing[1]-first.spacing[1]) > 1e-3 {
			return nil, fmt.Errorf("read DICOM series %s: inconsistent PixelSpacing: %s has %v, %s has %v",
				dir, filepath.Base(first.path), first.spacing, filepath.Base(s.path), s.spacing)
		}
		if s.hasIOP != first.hasIOP || !sameIOP(s.iop, first.iop) {
			return nil, fmt.Errorf("read DICOM series %s: inconsistent ImageOrientationPatient: %s has %v, %s has %v",
				dir, filepath.Base(first.path), first.iop, filepath.Base(s.path), s.iop)
		}
	}
	iop := first.iop
	if !first.hasIOP {
		if len(slices) > 1 {
			return nil, fmt.Errorf("read DICOM series %s: %s lacks ImageOrientationPatient %s, needed to stack %d slices",
				dir, filepath.Base(first.path), TagImageOrientationPatient, len(slices))
		}
		iop = [6]float64{1, 0, 0, 0, 1, 0}
	}
	rowDir := unit([3]float64{iop[0], iop[1], iop[2]}) // direction of increasing column index
	colDir := unit([3]float64{iop[3], iop[4], iop[5]}) // direction of increasing row index
	if math.Abs(dot(rowDir, colDir)) > 1e-3 || norm(rowDir) == 0 || norm(colDir) == 0 {
		return nil, fmt.Errorf("read DICOM series %s: ImageOrientationPatient %v is not two orthogonal unit vectors", dir, iop)
	}
	normal := cross(rowDir, colDir)
	for _, s := range slices {
		if !s.hasPos && len(slices) > 1 {
			return nil, fmt.Errorf("read DICOM series %s: %s lacks ImagePositionPatient %s, needed to order %d slices",
				dir, filepath.Base(s.path), TagImagePositionPatient, len(slices))
		}
	}
	sort.SliceStable(slices, func(a, b int) bool { return dot(slices[a].pos, normal) < dot(slices[b].pos, normal) })
	var step [3]float64
	if n := len(slices); n > 1 {
		gaps := make([]float64, n-1)
		for i := 1; i < n; i++ {
			gaps[i-1] = dot(slices[i].pos, normal) - dot(slices[i-1].pos, normal)
			if gaps[i-1] < 1e-4 {
				return nil, fmt.Errorf("read DICOM series %s: %s and %s are at the same position %v (duplicate slices or several acquisitions in one series)",
					dir, filepath.Base(slices[i-1].path), filepath.Base(slices[i].path), slices[i].pos)
			}
		}
		total := dot(slices[n-1].pos, normal) - dot(slices[0].pos, normal)
		mean := total / float64(n-1)
		for i, g := range gaps {
			if math.Abs(g-mean) > 0.01*mean+1e-3 {
				return nil, fmt.Errorf("read DICOM series %s: uneven slice spacing (%.3g mm between %s and %s, %.3g mm on average): missing slices?",
					dir, g, filepath.Base(slices[i].path), filepath.Base(slices[i+1].path), mean)
			}
		}
		for a := 0; a < 3; a++ {
			step[a] = (slices[n-1].pos[a] - slices[0].pos[a]) / float64(n-1)
		}
	} else {
		th, err := first.ds.Float(TagSpacingBetweenSlices, 0)
		if err != nil || th <= 0 {
			th, err = first.ds.Float(TagSliceThickness, 1)
		}
		if err != nil || th <= 0 {
			th = 1
		}
		step = [3]float64{normal[0] * th, normal[1] * th, normal[2] * th}
	}
	ser := &Series{
		Columns: first.cols, Rows: first.rows, Slices: len(slices),
		Modality:          first.ds.String(TagModality),
		SeriesInstanceUID: first.ds.String(TagSeriesInstanceUID),
		SeriesDescription: first.ds.String(TagSeriesDescription),
	}
	// LPS affine, then negate x and y for RAS+.
	lps := [3][4]float64{}
	for a := 0; a < 3; a++ {
		lps[a][0] = rowDir[a] * first.spacing[1]
		lps[a][1] = colDir[a] * first.spacing[0]
		lps[a][2] = step[a]
		lps[a][3] = slices[0].pos[a]
	}
	for a := 0; a < 3; a++ {
		sign := 1.0
		if a < 2 {
			sign = -1
		}
		for c := 0; c < 4; c++ {
			ser.Affine[a][c] = sign * lps[a][c]
		}
	}
	ser.Affine[3][3] = 1
	per := first.rows * first.cols
	ser.Data = make([]float32, 0, per*len(slices))
	for _, s := range slices {
		vals, err := s.pixels()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.path, err)
		}
		ser.Data = append(ser.Data, vals...)
		ser.Files = append(ser.Files, s.path)
	}
	return ser, nil
}

func sameIOP(a, b [6]float64) bool {
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-4 {
			return false
		}
	}
	return true
}

// pixels decodes a slice's native pixel data and applies the rescale.
func (s *slice) pixels() ([]float32, error) {
	ds := s.ds
	bits, ok := ds.Uint(TagBitsAllocated)
	if !ok {
		return nil, fmt.Errorf("missing BitsAllocated %s", TagBitsAllocated)
	}
	stored, ok := ds.Uint(TagBitsStored)
	if !ok || stored < 1 || stored > bits {
		stored = bits
	}
	signed, _ := ds.Uint(TagPixelRepresentation)
	n := s.rows * s.cols
	raw := ds.Bytes(TagPixelData)
	bytesPer := bits / 8
	if bits != 8 && bits != 16 && bits != 32 {
		return nil, fmt.Errorf("%w: BitsAllocated %d (want 8, 16 or 32)", ErrUnsupported, bits)
	}
	if len(raw) < n*bytesPer {
		return nil, fmt.Errorf("truncated pixel data: %d bytes for %dx%d pixels of %d bits", len(raw), s.cols, s.rows, bits)
	}
	out := make([]float32, n)
	mask := uint32(1)<<uint(stored) - 1
	if stored == 32 {
		mask = math.MaxUint32
	}
	signBit := uint32(1) << uint(stored-1)
	for i := 0; i < n; i++ {
		var u uint32
		switch bits {
		case 8:
			u = uint32(raw[i])
		case 16:
			u = uint32(ds.order.Uint16(raw[2*i:]))
		case 32:
			u = ds.order.Uint32(raw[4*i:])
		}
		u &= mask
		var v float64
		if signed == 1 && u&signBit != 0 {
			v = float64(int64(u) - int64(mask) - 1)
		} else {
			v = float64(u)
		}
		out[i] = float32(v*s.slope + s.intercep)
	}
	return out, nil
}

// convertWithDcm2niix converts the series in dir with dcm2niix, or explains
// how to convert it when dcm2niix is not installed.
func convertWithDcm2niix(dir, example, why string) (*Series, error) {
	exe := ""
	if Dcm2niix != "" {
		exe, _ = exec.LookPath(Dcm2niix)
	}
	if exe == "" {
		return nil, fmt.Errorf("read DICOM series %s: %w: %s in %s; install dcm2niix (apt-get install dcm2niix) so segsam converts it, or convert it yourself with 'dcm2niix -z y -o OUTDIR %s' and pass the .nii.gz (or decompress the files with 'gdcmconv --raw IN OUT' or dcmtk's 'dcmdjpeg'/'dcmdrle')",
			dir, ErrUnsupported, why, filepath.Base(example), dir)
	}
	tmp, err := os.MkdirTemp("", "segsam-dcm2niix-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(exe, "-z", "n", "-b", "n", "-f", "vol_%s", "-o", tmp, dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("read DICOM series %s (%s): dcm2niix failed: %v: %s", dir, why, err, lastLines(string(out), 5))
	}
	niis, _ := filepath.Glob(filepath.Join(tmp, "*.nii"))
	if len(niis) != 1 {
		return nil, fmt.Errorf("read DICOM series %s (%s): dcm2niix wrote %d volumes, want 1: %s", dir, why, len(niis), lastLines(string(out), 5))
	}
	img, err := nifti.Read(niis[0])
	if err != nil {
		return nil, fmt.Errorf("read dcm2niix output for %s: %w", dir, err)
	}
	shape := img.Shape()
	if len(shape) > 3 && img.NumVoxels() != int64(shape[0]*shape[1]*shape[2]) {
		return nil, fmt.Errorf("read DICOM series %s: dcm2niix produced a %v image, not a 3-D volume", dir, shape)
	}
	for len(shape) < 3 {
		shape = append(shape, 1)
	}
	data, err := img.Float32()
	if err != nil {
		return nil, fmt.Errorf("read dcm2niix output for %s: %w", dir, err)
	}
	aff, _ := img.Affine()
	first, _ := readSlice(example)
	s := &Series{Columns: shape[0], Rows: shape[1], Slices: shape[2], Data: data, Affine: aff}
	if first != nil {
		s.Modality = first.ds.String(TagModality)
		s.SeriesInstanceUID = first.ds.String(TagSeriesInstanceUID)
		s.SeriesDescription = first.ds.String(TagSeriesDescription)
	}
	return s, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func dot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }
func norm(a [3]float64) float64   { return math.Sqrt(dot(a, a)) }
func unit(a [3]float64) [3]float64 {
	n := norm(a)
	if n == 0 {
		return a
	}
	return [3]float64{a[0] / n, a[1] / n, a[2] / n}
}
func cross(a, b [3]float64) [3]float64 {
	return [3]float64{a[1]*b[2] - a[2]*b[1], a[2]*b[0] - a[0]*b[2], a[0]*b[1] - a[1]*b[0]}
}
