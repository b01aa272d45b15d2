package dicom

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/segsam/segsam/npy"
)

const testdata = "../../testdata/medimg/dicom"

type expectedSeries struct {
	Affine   [4][4]float64 `json:"affine"`
	Modality string        `json:"modality"`
	Shape    []int         `json:"shape"` // slices, rows, columns
}

// TestReadSeries reads the generated series and compares voxels and
// geometry with the values gen.py wrote them from.
func TestReadSeries(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testdata, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var expected map[string]expectedSeries
	if err := json.Unmarshal(b, &expected); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"explicit", "implicit", "bigendian"} {
		t.Run(name, func(t *testing.T) {
			want := expected[name]
			s, err := ReadSeries(filepath.Join(testdata, name))
			if err != nil {
				t.Fatal(err)
			}
			if s.Slices != want.Shape[0] || s.Rows != want.Shape[1] || s.Columns != want.Shape[2] {
				t.Fatalf("size %dx%dx%d, want %v (slices, rows, columns)", s.Slices, s.Rows, s.Columns, want.Shape)
			}
			wantMod := want.Modality
			if wantMod == "PET" {
				wantMod = "PT"
			}
			if s.Modality != wantMod {
				t.Errorf("modality %q, want %q", s.Modality, wantMod)
			}
			for r := 0; r < 4; r++ {
				for c := 0; c < 4; c++ {
					if math.Abs(s.Affine[r][c]-want.Affine[r][c]) > 1e-4 {
						t.Fatalf("affine\n%v\nwant\n%v", s.Affine, want.Affine)
					}
				}
			}
			arr, err := npy.Read(filepath.Join(testdata, name+".npy"))
			if err != nil {
				t.Fatal(err)
			}
			vals := arr.Float32()
			if len(vals) != len(s.Data) {
				t.Fatalf("%d values, want %d", len(s.Data), len(vals))
			}
			for i := range vals {
				if math.Abs(float64(vals[i]-s.Data[i])) > 1e-4*math.Max(1, math.Abs(float64(vals[i]))) {
					t.Fatalf("voxel %d = %v, want %v", i, s.Data[i], vals[i])
				}
			}
			// Reading one file gives its whole series.
			one, err := ReadSeries(s.Files[2])
			if err != nil {
				t.Fatal(err)
			}
			if one.Slices != s.Slices || one.Data[len(one.Data)-1] != s.Data[len(s.Data)-1] {
				t.Errorf("series read from one file differs")
			}
		})
	}
}

// TestReadSeriesErrors checks the errors for series that cannot be read.
func TestReadSeriesErrors(t *testing.T) {
	old := Dcm2niix
	Dcm2niix = "" // the rejection message, whether or not dcm2niix is installed
	defer func() { Dcm2niix = old }()
	cases := []struct {
		dir  string
		want []string
		is   error
	}{
		{"compressed", []string{"RLE Lossless", "1.2.840.10008.1.2.5", "dcm2niix -z y"}, ErrUnsupported},
		{"mixed", []string{"holds 2 series", "pass one of their files"}, nil},
		{"uneven", []string{"uneven slice spacing", "missing slices"}, nil},
	}
	for _, c := range cases {
		t.Run(c.dir, func(t *testing.T) {
			_, err := ReadSeries(filepath.Join(testdata, c.dir))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
		})
	}
	t.Run("one series of mixed", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(testdata, "mixed", "IM*"))
		total := 0
		for _, f := range files[:2] {
			s, err := ReadSeries(f)
			if err != nil {
				t.Fatal(err)
			}
			total += s.Slices
		}
		if total < 4 || total > 6 {
			t.Errorf("slices of two files' series: %d", total)
		}
	})
	t.Run("empty dir", func(t *testing.T) {
		if _, err := ReadSeries(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no DICOM image files") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("inconsistent sizes", func(t *testing.T) {
		dir := t.TempDir()
		a := mustRead(t, filepath.Join(testdata, "mixed"), 0)
		copyTo(t, filepath.Join(testdata, "explicit"), dir)
		os.WriteFile(filepath.Join(dir, "other"), a, 0o644)
		_, err := ReadSeries(dir)
		if err == nil || !strings.Contains(err.Error(), "series") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("truncated file", func(t *testing.T) {
		dir := t.TempDir()
		copyTo(t, filepath.Join(testdata, "explicit"), dir)
		entries, _ := os.ReadDir(dir)
		p := filepath.Join(dir, entries[0].Name())
		b, _ := os.ReadFile(p)
		os.WriteFile(p, b[:len(b)-100], 0o644)
		_, err := ReadSeries(dir)
		if err == nil || !strings.Contains(err.Error(), entries[0].Name()) {
			t.Errorf("error %v does not name the truncated file", err)
		}
	})
}

// badVR corrupts the VR of the first element after the file meta group.
func badVR(good []byte) []byte {
	b := append([]byte{}, good...)
	metaLen := int(b[140]) | int(b[141])<<8 // (0002,0000) group length value
	off := 132 + 12 + metaLen
	b[off+4], b[off+5] = 'x', '?'
	return b
}

func mustRead(t *testing.T, dir string, i int) []byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "IM*"))
	b, err := os.ReadFile(files[i])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyTo(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(from, e.Name()))
		os.WriteFile(filepath.Join(to, e.Name()), b, 0o644)
	}
}

// TestParseErrors checks that Parse rejects malformed input with an
// error, not a panic.
func TestParseErrors(t *testing.T) {
	good := mustRead(t, filepath.Join(testdata, "explicit"), 0)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a DICOM file"},
		{"text", []byte(strings.Repeat("hello ", 50)), "not a DICOM file"},
		{"truncated meta", good[:140], "truncated"},
		{"truncated body", good[:400], "truncated"},
		{"bad VR", badVR(good), "invalid VR"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.data)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

// FuzzDICOM checks that parsing and decoding never panic.
func FuzzDICOM(f *testing.F) {
	for _, d := range []string{"explicit", "implicit", "bigendian", "compressed"} {
		f.Add(mustReadF(f, filepath.Join(testdata, d)))
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0, 0x05, 0, 4, 0, 0, 0, 'I', 'S', 'O', '_'})
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := Parse(data)
		if err != nil {
			return
		}
		s := &slice{ds: ds}
		s.rows, _ = ds.Uint(TagRows)
		s.cols, _ = ds.Uint(TagColumns)
		if s.rows < 1 || s.cols < 1 || s.rows*s.cols > 1<<20 || s.unsupportedReason() != "" {
			return
		}
		s.slope, s.intercep = 1, 0
		s.pixels()
		ds.Floats(TagImagePositionPatient)
	})
}

func mustReadF(f *testing.F, dir string) []byte {
	files, _ := filepath.Glob(filepath.Join(dir, "IM*"))
	b, err := os.ReadFile(files[0])
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// TestCompressedWithDcm2niix reads the RLE series through dcm2niix when it
// is installed, and compares it with the rejection-free path's geometry.
func TestCompressedWithDcm2niix(t *testing.T) {
	if _, err := exec.LookPath(Dcm2niix); err != nil {
		t.Skip("dcm2niix not installed")
	}
	s, err := ReadSeries(filepath.Join(testdata, "compressed"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Columns != 8 || s.Rows != 8 || s.Slices != 3 || s.Modality != "CT" {
		t.Errorf("series %dx%dx%d %q", s.Columns, s.Rows, s.Slices, s.Modality)
	}
	// Spacing 1 x 1 x 2 mm whatever axis order dcm2niix chose.
	var sp []float64
	for c := 0; c < 3; c++ {
		sp = append(sp, math.Round(math.Sqrt(s.Affine[0][c]*s.Affine[0][c]+s.Affine[1][c]*s.Affine[1][c]+s.Affine[2][c]*s.Affine[2][c])*1000)/1000)
	}
	if sp[0] != 1 || sp[1] != 1 || sp[2] != 2 {
		t.Errorf("spacing %v", sp)
	}
	// dcm2niix may reorder axes: compare the sorted values.
	arr, err := npy.Read(filepath.Join(testdata, "compressed.npy"))
	if err != nil {
		t.Fatal(err)
	}
	want := arr.Float32()
	got := append([]float32(nil), s.Data...)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("decoded values differ from the ones written")
	}
}
