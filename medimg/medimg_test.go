package medimg

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/medimg/nifti"
	"github.com/segsam/segsam/npy"
)

const (
	niftiDir = "../testdata/medimg/nifti"
	dicomDir = "../testdata/medimg/dicom"
)

type golden struct {
	Shape       []int         `json:"shape"`
	Affine      [4][4]float64 `json:"affine"`
	Axcodes     string        `json:"axcodes"`
	Percentiles [2]float64    `json:"p0.5_99.5"`
}

func loadGolden(t *testing.T) map[string]golden {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(niftiDir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Files map[string]golden `json:"files"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g.Files
}

func readNpy(t *testing.T, path string) ([]float32, []int) {
	t.Helper()
	a, err := npy.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return a.Float32(), a.Shape
}

func mustRead(t *testing.T, path string) *Volume {
	t.Helper()
	v, err := ReadVolume(path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOrientationCases reads the same synthetic volume stored with
// different axis orders, flips, qform/sform combinations and an oblique
// affine, and checks that the canonical volume is the same each time.
func TestOrientationCases(t *testing.T) {
	g := loadGolden(t)
	want, _ := readNpy(t, filepath.Join(niftiDir, "syn_lps.npy")) // [k][j][i], i fastest
	lpsAffine := [4][4]float64{{-1.5, 0, 0, 40}, {0, -2, 0, 30}, {0, 0, 3, -20}, {0, 0, 0, 1}}
	cases := []string{
		"syn_lps.nii", "syn_ras.nii.gz", "syn_las.nii.gz", "syn_pir.nii.gz", "syn_sal.nii.gz",
		"syn_sform_wins.nii.gz", "syn_qform_only.nii.gz", "syn_oblique.nii.gz",
		"syn_bigendian.nii.gz", "syn_nifti2.nii", "syn_pair.hdr",
	}
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			v := mustRead(t, filepath.Join(niftiDir, name))
			if got := v.Orientation(); got != g[name].Axcodes {
				t.Errorf("orientation %s, nibabel says %s", got, g[name].Axcodes)
			}
			if cd := v.CanonicalDim(); cd != [3]int{7, 5, 4} {
				t.Fatalf("canonical size %v", cd)
			}
			if cs := v.CanonicalSpacing(); math.Abs(cs[0]-1.5) > 1e-5 || math.Abs(cs[1]-2) > 1e-5 || math.Abs(cs[2]-3) > 1e-5 {
				t.Errorf("canonical spacing %v", cs)
			}
			c := v.Canonical()
			for i := range want {
				if c.Data[i] != want[i] {
					t.Fatalf("canonical voxel %d = %v, want %v", i, c.Data[i], want[i])
				}
			}
			if name != "syn_oblique.nii.gz" {
				for r := 0; r < 4; r++ {
					for k := 0; k < 4; k++ {
						if math.Abs(c.Affine[r][k]-lpsAffine[r][k]) > 1e-4 {
							t.Fatalf("canonical affine %v, want %v", c.Affine, lpsAffine)
						}
					}
				}
			}
			// Axial slice 1: rows run Anterior->Posterior (j), columns
			// Right->Left (i); value = i + 10j + 100k - 150.
			s, info, err := v.SourceSlice(SliceSpec{Axial, 1})
			if err != nil {
				t.Fatal(err)
			}
			if info.SourceWidth != 7 || info.SourceHeight != 5 {
				t.Fatalf("axial size %dx%d", info.SourceWidth, info.SourceHeight)
			}
			if s[0] != -50 || s[6] != -44 || s[7] != -40 {
				t.Errorf("axial slice starts %v", s[:8])
			}
			// Coronal: top row is the most superior (k = 3).
			s, _, _ = v.SourceSlice(SliceSpec{Coronal, 2})
			if s[0] != 300+20-150 || s[len(s)-1] != 6+20-150 {
				t.Errorf("coronal corners %v %v", s[0], s[len(s)-1])
			}
			// Sagittal: columns run Anterior->Posterior, top row superior.
			s, info, _ = v.SourceSlice(SliceSpec{Sagittal, 4})
			if info.SourceWidth != 5 || s[0] != 4+300-150 || s[1] != 4+10+300-150 {
				t.Errorf("sagittal start %v (width %d)", s[:2], info.SourceWidth)
			}
		})
	}
}

// TestSlicesMatchNibabel compares slices of real volumes with the ones
// gen.py cut from nibabel's canonical (RAS) array flipped to LPS.
func TestSlicesMatchNibabel(t *testing.T) {
	cases := []struct {
		file, prefix string
		specs        []SliceSpec
	}{
		{"sts019_pet.nii.gz", "sts019_pet", []SliceSpec{{Axial, 20}, {Coronal, 14}, {Sagittal, 9}}},
		{"ct_crop.nii.gz", "ct_crop", []SliceSpec{{Axial, 15}, {Coronal, 20}, {Sagittal, 25}}},
	}
	for _, c := range cases {
		v := mustRead(t, filepath.Join(niftiDir, c.file))
		for _, spec := range c.specs {
			t.Run(c.prefix+"/"+spec.String(), func(t *testing.T) {
				want, shape := readNpy(t, filepath.Join(niftiDir, c.prefix+"_"+spec.Axis.String()+"_"+itoa(spec.Index)+".npy"))
				got, info, err := v.SourceSlice(spec)
				if err != nil {
					t.Fatal(err)
				}
				if info.SourceHeight != shape[0] || info.SourceWidth != shape[1] {
					t.Fatalf("size %dx%d, want %dx%d", info.SourceWidth, info.SourceHeight, shape[1], shape[0])
				}
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("pixel %d = %v, want %v", i, got[i], want[i])
					}
				}
			})
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestSquarePixels checks resampling of anisotropic slices: the CT crop
// has 6 x 6 x 3 mm voxels.
func TestSquarePixels(t *testing.T) {
	v := mustRead(t, filepath.Join(niftiDir, "ct_crop.nii.gz"))
	lab := mustRead(t, filepath.Join(niftiDir, "ct_crop_label.nii.gz"))
	cases := []struct {
		spec          SliceSpec
		w, h          int
		pixel         float64
		resampledCols bool
	}{
		{SliceSpec{Axial, 3}, 50, 45, 6, false},
		{SliceSpec{Coronal, 10}, 100, 30, 3, true},
		{SliceSpec{Sagittal, 10}, 90, 30, 3, true},
	}
	for _, c := range cases {
		t.Run(c.spec.String(), func(t *testing.T) {
			vals, info, err := v.SliceFloat(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			if info.Width != c.w || info.Height != c.h || math.Abs(info.PixelSpacing-c.pixel) > 1e-4 {
				t.Fatalf("got %dx%d at %g mm, want %dx%d at %g", info.Width, info.Height, info.PixelSpacing, c.w, c.h, c.pixel)
			}
			src, _, _ := v.SourceSlice(c.spec)
			if c.resampledCols {
				// Upsampling by 2 with aligned pixel centres: output column
				// 2x+1 lies 1/4 of the way from source x to x+1.
				for r := 0; r < info.Height; r++ {
					for x := 0; x+1 < info.SourceWidth; x++ {
						a, b := float64(src[r*info.SourceWidth+x]), float64(src[r*info.SourceWidth+x+1])
						if got := float64(vals[r*info.Width+2*x+1]); math.Abs(got-(0.75*a+0.25*b)) > 1e-3 {
							t.Fatalf("row %d col %d = %v, want %v", r, 2*x+1, got, 0.75*a+0.25*b)
						}
					}
				}
			}
			labels, linfo, err := lab.SliceLabels(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			if linfo.Width != info.Width || linfo.Height != info.Height || len(labels) != len(vals) {
				t.Fatalf("label slice %dx%d, image %dx%d", linfo.Width, linfo.Height, info.Width, info.Height)
			}
			srcLab, _, _ := lab.SourceSlice(c.spec)
			sx := info.SourceWidth * 1000 / info.Width
			for r := 0; r < info.Height; r++ {
				for x := 0; x < info.Width; x++ {
					if want := int32(srcLab[r*info.SourceWidth+x*sx/1000]); labels[r*info.Width+x] != want {
						t.Fatalf("label (%d,%d) = %d, want %d", r, x, labels[r*info.Width+x], want)
					}
				}
			}
		})
	}
}

func TestParseWindow(t *testing.T) {
	cases := []struct {
		in     string
		lo, hi float64
		pct    bool
		err    string
	}{
		{"soft", -160, 240, false, ""},
		{"Lung", -1350, 150, false, ""},
		{"bone", -500, 1300, false, ""},
		{"brain", 0, 80, false, ""},
		{"50,350", -125, 225, false, ""},
		{" -600 , 1500 ", -1350, 150, false, ""},
		{"auto", 0.5, 99.5, true, ""},
		{"p1,99", 1, 99, true, ""},
		{"40", 0, 0, false, "LEVEL,WIDTH"},
		{"40,0", 0, 0, false, "width must be positive"},
		{"p50,10", 0, 0, false, "percentiles"},
		{"liver", 0, 0, false, "want one of"},
		{"nan,3", 0, 0, false, "LEVEL,WIDTH"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			w, err := ParseWindow(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.pct {
				if w.Kind != Percentile || w.LowPct != c.lo || w.HighPct != c.hi {
					t.Errorf("got %+v", w)
				}
				return
			}
			lo, hi, err := w.Range(nil)
			if err != nil || lo != c.lo || hi != c.hi {
				t.Errorf("range %v..%v (%v), want %v..%v", lo, hi, err, c.lo, c.hi)
			}
			if back, err := ParseWindow(w.String()); err != nil || back != w {
				t.Errorf("String %q does not parse back: %+v %v", w.String(), back, err)
			}
		})
	}
}

// TestPercentileWindow compares the default window with numpy.percentile.
func TestPercentileWindow(t *testing.T) {
	g := loadGolden(t)
	for _, name := range []string{"sts019_pet.nii.gz", "ct_crop.nii.gz", "syn_scaled.nii"} {
		v := mustRead(t, filepath.Join(niftiDir, name))
		lo, hi, err := DefaultWindow.Range(v)
		if err != nil {
			t.Fatal(err)
		}
		want := g[name].Percentiles
		if math.Abs(lo-want[0]) > 1e-4*math.Max(1, math.Abs(want[0])) || math.Abs(hi-want[1]) > 1e-4*math.Max(1, math.Abs(want[1])) {
			t.Errorf("%s: percentiles %v, %v; numpy %v", name, lo, hi, want)
		}
	}
	if _, err := Percentiles([]float32{float32(math.NaN())}, 50); err == nil {
		t.Error("no error for all-NaN values")
	}
}

// TestSlice8 checks windowing to 0..255 on a CT slice.
func TestSlice8(t *testing.T) {
	v := mustRead(t, filepath.Join(niftiDir, "ct_crop.nii.gz"))
	spec := SliceSpec{Axial, 12}
	img, info, err := v.Slice8(spec, SoftTissueWindow)
	if err != nil {
		t.Fatal(err)
	}
	vals, _, _ := v.SliceFloat(spec)
	if info.Low != -160 || info.High != 240 || img.Bounds().Dx() != info.Width {
		t.Fatalf("info %+v", info)
	}
	var black, white, mid int
	for i, x := range vals {
		want := uint8(math.Round(math.Max(0, math.Min(255, (float64(x)+160)/400*255))))
		if img.Pix[i] != want {
			t.Fatalf("pixel %d: HU %v -> %d, want %d", i, x, img.Pix[i], want)
		}
		switch img.Pix[i] {
		case 0:
			black++
		case 255:
			white++
		default:
			mid++
		}
	}
	if black == 0 || white == 0 || mid == 0 {
		t.Errorf("window does not span the slice: %d black, %d white, %d grey", black, white, mid)
	}
	if _, _, err := v.Slice8(SliceSpec{Axial, 30}, SoftTissueWindow); err == nil || !strings.Contains(err.Error(), "0..29") {
		t.Errorf("out of range slice: %v", err)
	}
}

func TestParseSlice(t *testing.T) {
	cases := []struct {
		in   string
		want SliceSpec
		err  bool
	}{
		{"axial:42", SliceSpec{Axial, 42}, false},
		{"Coronal:0", SliceSpec{Coronal, 0}, false},
		{"sag:7", SliceSpec{Sagittal, 7}, false},
		{"axial", SliceSpec{}, true},
		{"axial:-1", SliceSpec{}, true},
		{"oblique:3", SliceSpec{}, true},
		{"axial:x", SliceSpec{}, true},
	}
	for _, c := range cases {
		got, err := ParseSlice(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseSlice(%q) = %v, %v", c.in, got, err)
		}
	}
	if axes, err := ParseAxes("axial,sagittal"); err != nil || len(axes) != 2 || axes[1] != Sagittal {
		t.Errorf("ParseAxes: %v %v", axes, err)
	}
	if _, err := ParseAxes("axial,ax"); err == nil {
		t.Error("ParseAxes accepted a repeat")
	}
}

// TestDICOMVolume reads DICOM series through ReadVolume.
func TestDICOMVolume(t *testing.T) {
	cases := []struct {
		dir, modality, orient string
		dim                   [3]int
	}{
		{"explicit", "CT", "LPS", [3]int{12, 10, 6}},
		{"implicit", "MR", "LIP", [3]int{9, 8, 5}},
		{"bigendian", "PET", "LPS", [3]int{7, 6, 4}},
	}
	for _, c := range cases {
		t.Run(c.dir, func(t *testing.T) {
			v := mustRead(t, filepath.Join(dicomDir, c.dir))
			if v.Modality != c.modality || v.Orientation() != c.orient || v.Dim != c.dim {
				t.Errorf("modality %q orientation %s dim %v, want %q %s %v", v.Modality, v.Orientation(), v.Dim, c.modality, c.orient, c.dim)
			}
			want, _ := readNpy(t, filepath.Join(dicomDir, c.dir+".npy"))
			for i := range want {
				if math.Abs(float64(v.Data[i]-want[i])) > 1e-3 {
					t.Fatalf("voxel %d = %v, want %v", i, v.Data[i], want[i])
				}
			}
			if _, _, err := v.Slice8(SliceSpec{Sagittal, 0}, DefaultWindow); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The coronal MR series: its axial slices come from the rows, with
	// superior (row 0) last.
	v := mustRead(t, filepath.Join(dicomDir, "implicit"))
	s, info, _ := v.SourceSlice(SliceSpec{Axial, 0})
	if info.SourceWidth != 9 || info.SourceHeight != 5 {
		t.Fatalf("axial size %dx%d", info.SourceWidth, info.SourceHeight)
	}
	// Rows run to Inferior and slices (sorted by position along the
	// normal) to Posterior, so axial 0 is row 7 and its top row is the
	// first, most anterior, slice.
	if s[0] != v.At(0, 7, 0) {
		t.Errorf("axial(0) top-left %v, want %v", s[0], v.At(0, 7, 0))
	}
}

// TestWriteLabelNIfTI writes label maps on NIfTI and DICOM grids and reads
// them back.
func TestWriteLabelNIfTI(t *testing.T) {
	dir := t.TempDir()
	for _, src := range []string{filepath.Join(niftiDir, "ct_crop.nii.gz"), filepath.Join(dicomDir, "implicit")} {
		ref := mustRead(t, src)
		labels := make([]uint16, len(ref.Data))
		idx, _, err := ref.SliceVoxels(SliceSpec{Axial, 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range idx {
			labels[i] = 7
		}
		labels[0] = 300 // forces uint16
		out := filepath.Join(dir, filepath.Base(src)+"_label.nii.gz")
		if err := WriteLabelNIfTI(out, ref, labels); err != nil {
			t.Fatal(err)
		}
		img, err := nifti.Read(out)
		if err != nil {
			t.Fatal(err)
		}
		if img.Datatype != nifti.Uint16 || img.IntentCode != nifti.IntentLabel {
			t.Errorf("datatype %v intent %d", img.Datatype, img.IntentCode)
		}
		back, err := ReadVolume(out)
		if err != nil {
			t.Fatal(err)
		}
		if !back.SameGrid(ref, 1e-3) {
			t.Errorf("%s: grid %v %v, want %v %v", src, back.Dim, back.Affine, ref.Dim, ref.Affine)
		}
		got, _, _ := back.SliceLabels(SliceSpec{Axial, 2})
		for i, l := range got {
			if l != 7 && !(l == 300 && idx[i] == 0) {
				t.Fatalf("%s: painted slice pixel %d = %d", src, i, l)
			}
		}
		if n := count(back.Data, 7); n != len(uniq(idx)) {
			t.Errorf("%d voxels labelled 7, want %d", n, len(uniq(idx)))
		}
	}
	ref := mustRead(t, filepath.Join(niftiDir, "sts019_pet.nii.gz"))
	if err := WriteLabelNIfTI(filepath.Join(dir, "x.nii"), ref, make([]uint16, 3)); err == nil {
		t.Error("no error for a label map of the wrong size")
	}
	// A uint8 copy of the PET label keeps the qform-only geometry.
	lab := mustRead(t, filepath.Join(niftiDir, "sts019_pet_label.nii.gz"))
	l16 := make([]uint16, len(lab.Data))
	for i, x := range lab.Data {
		l16[i] = uint16(x)
	}
	out := filepath.Join(dir, "pet_label.nii")
	if err := WriteLabelNIfTI(out, ref, l16); err != nil {
		t.Fatal(err)
	}
	img, _ := nifti.Read(out)
	if img.Datatype != nifti.Uint8 || img.QformCode != 1 || img.SformCode != 0 {
		t.Errorf("datatype %v, codes q%d s%d", img.Datatype, img.QformCode, img.SformCode)
	}
	back := mustRead(t, out)
	if !back.SameGrid(ref, 1e-5) || count(back.Data, 1) != count(lab.Data, 1) {
		t.Error("PET label map changed in the round trip")
	}
}

func count(d []float32, v float32) int {
	n := 0
	for _, x := range d {
		if x == v {
			n++
		}
	}
	return n
}

func uniq(xs []int) map[int]bool {
	m := map[int]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func TestReadVolumeErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte(strings.Repeat("not an image\n", 40)), 0o644)
	good, _ := os.ReadFile(filepath.Join(niftiDir, "syn_lps.nii"))
	trunc := filepath.Join(dir, "trunc.nii")
	os.WriteFile(trunc, good[:len(good)/2], 0o644)
	fourD, _ := nifti.New([]int{2, 2, 2, 3}, make([]float32, 24))
	four := filepath.Join(dir, "four.nii")
	nifti.Write(four, fourD)
	cases := []struct{ path, want string }{
		{filepath.Join(dir, "missing.nii"), "no such file"},
		{text, "neither a NIfTI file nor a DICOM file"},
		{trunc, "truncated"},
		{four, "3-D volumes"},
		{filepath.Join(dicomDir, "mixed"), "holds 2 series"},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			_, err := ReadVolume(c.path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	if _, err := NewVolume([3]int{2, 2, 2}, make([]float32, 8), [4][4]float64{}); err == nil {
		t.Error("NewVolume accepted a singular affine")
	}
}

// TestFileSlice checks, for volumes in every stored orientation, that the
// slice FileSlice names for a file plane (axis a = index) holds exactly
// that plane's voxels: every voxel SliceVoxels returns lies in the plane,
// and every voxel of the plane is returned.
func TestFileSlice(t *testing.T) {
	for _, name := range []string{"syn_lps.nii", "syn_ras.nii.gz", "syn_pir.nii.gz", "syn_sal.nii.gz", "syn_oblique.nii.gz"} {
		v := mustRead(t, filepath.Join(niftiDir, name))
		for axis := 0; axis < 3; axis++ {
			for _, index := range []int{0, v.Dim[axis] - 1, v.Dim[axis] / 2} {
				spec, err := v.FileSlice(axis, index)
				if err != nil {
					t.Fatalf("%s axis %d index %d: %v", name, axis, index, err)
				}
				idx, _, err := v.SliceVoxels(spec)
				if err != nil {
					t.Fatalf("%s %v: %v", name, spec, err)
				}
				seen := map[int]bool{}
				for _, fi := range idx {
					f := [3]int{fi % v.Dim[0], (fi / v.Dim[0]) % v.Dim[1], fi / (v.Dim[0] * v.Dim[1])}
					if f[axis] != index {
						t.Fatalf("%s axis %d index %d: slice %v holds voxel %v", name, axis, index, spec, f)
					}
					seen[fi] = true
				}
				if want := len(v.Data) / v.Dim[axis]; len(seen) != want {
					t.Errorf("%s axis %d index %d: slice %v covers %d voxels of the plane's %d", name, axis, index, spec, len(seen), want)
				}
			}
		}
		if _, err := v.FileSlice(2, v.Dim[2]); err == nil {
			t.Errorf("%s: FileSlice accepted an index past the end", name)
		}
	}
}
