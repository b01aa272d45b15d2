package nifti

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const testdata = "../../testdata/medimg/nifti"

// goldenFile is what nibabel read from one test file (see gen.py).
type goldenFile struct {
	Version   int           `json:"version"`
	Shape     []int         `json:"shape"`
	Datatype  int           `json:"datatype"`
	Affine    [4][4]float64 `json:"affine"`
	QformCode int           `json:"qform_code"`
	SformCode int           `json:"sform_code"`
	Sum       float64       `json:"sum"`
	Voxels    [][4]float64  `json:"voxels"`
}

func loadGolden(t *testing.T) map[string]goldenFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Files map[string]goldenFile `json:"files"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g.Files
}

func sortedNames(m map[string]goldenFile) []string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TestReadMatchesNibabel compares every test file with the values,
// geometry and codes nibabel read from it.
func TestReadMatchesNibabel(t *testing.T) {
	golden := loadGolden(t)
	for _, name := range sortedNames(golden) {
		want := golden[name]
		t.Run(name, func(t *testing.T) {
			img, err := Read(filepath.Join(testdata, name))
			if err != nil {
				t.Fatal(err)
			}
			if img.Version != want.Version {
				t.Errorf("version %d, want %d", img.Version, want.Version)
			}
			if got := img.Shape(); !equalInts(got, want.Shape) {
				t.Errorf("shape %v, want %v", got, want.Shape)
			}
			if int(img.Datatype) != want.Datatype {
				t.Errorf("datatype %v, want %d", img.Datatype, want.Datatype)
			}
			if img.QformCode != want.QformCode || img.SformCode != want.SformCode {
				t.Errorf("codes q%d s%d, want q%d s%d", img.QformCode, img.SformCode, want.QformCode, want.SformCode)
			}
			aff, _ := img.Affine()
			for r := 0; r < 4; r++ {
				for c := 0; c < 4; c++ {
					if math.Abs(aff[r][c]-want.Affine[r][c]) > 1e-4 {
						t.Fatalf("affine\n%v\nwant\n%v", aff, want.Affine)
					}
				}
			}
			vals, err := img.Float64()
			if err != nil {
				t.Fatal(err)
			}
			sum := 0.0
			for _, v := range vals {
				sum += v
			}
			if math.Abs(sum-want.Sum) > 1e-6*math.Max(1, math.Abs(want.Sum)) {
				t.Errorf("sum %v, want %v", sum, want.Sum)
			}
			nx, ny := want.Shape[0], want.Shape[1]
			for _, v := range want.Voxels {
				i, j, k := int(v[0]), int(v[1]), int(v[2])
				got := vals[i+nx*(j+ny*k)]
				if math.Abs(got-v[3]) > 1e-6*math.Max(1, math.Abs(v[3])) {
					t.Errorf("voxel (%d,%d,%d) = %v, want %v", i, j, k, got, v[3])
				}
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRoundTrip writes images of every scalar datatype in both versions,
// plain and gzipped, and reads them back.
func TestRoundTrip(t *testing.T) {
	shape := []int{3, 4, 2}
	n := 24
	aff := [4][4]float64{{-1.5, 0.1, 0, 10}, {0, -2, 0.2, 20}, {0.05, 0, 3, -5}, {0, 0, 0, 1}}
	cases := []struct {
		name string
		make func() (*Image, error)
	}{
		{"uint8", func() (*Image, error) { return New(shape, seq[uint8](n, 0)) }},
		{"int8", func() (*Image, error) { return New(shape, seq[int8](n, -12)) }},
		{"int16", func() (*Image, error) { return New(shape, seq[int16](n, -1000)) }},
		{"uint16", func() (*Image, error) { return New(shape, seq[uint16](n, 60000)) }},
		{"int32", func() (*Image, error) { return New(shape, seq[int32](n, -70000)) }},
		{"uint32", func() (*Image, error) { return New(shape, seq[uint32](n, 1<<31)) }},
		{"int64", func() (*Image, error) { return New(shape, seq[int64](n, -5)) }},
		{"uint64", func() (*Image, error) { return New(shape, seq[uint64](n, 7)) }},
		{"float32", func() (*Image, error) { return New(shape, seq[float32](n, -0.25)) }},
		{"float64", func() (*Image, error) { return New(shape, seq[float64](n, 1e-3)) }},
	}
	for _, c := range cases {
		for _, version := range []int{1, 2} {
			for _, ext := range []string{".nii", ".nii.gz"} {
				t.Run(c.name+"/v"+string(rune('0'+version))+ext, func(t *testing.T) {
					img, err := c.make()
					if err != nil {
						t.Fatal(err)
					}
					img.Version = version
					img.SetAffine(aff, XformScannerAnat)
					img.SclSlope, img.SclInter = 2, -3
					img.Descrip = "round trip"
					path := filepath.Join(t.TempDir(), "x"+ext)
					if err := Write(path, img); err != nil {
						t.Fatal(err)
					}
					raw, _ := os.ReadFile(path)
					if gz := len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b; gz != strings.HasSuffix(ext, ".gz") {
						t.Errorf("gzip %v for %s", gz, ext)
					}
					back, err := Read(path)
					if err != nil {
						t.Fatal(err)
					}
					if back.Version != version || back.Datatype != img.Datatype || !bytes.Equal(back.Data, img.Data) {
						t.Fatalf("read back version %d %v, data equal %v", back.Version, back.Datatype, bytes.Equal(back.Data, img.Data))
					}
					if back.Descrip != "round trip" || back.SclSlope != 2 || back.SclInter != -3 {
						t.Errorf("header fields not kept: %q %v %v", back.Descrip, back.SclSlope, back.SclInter)
					}
					want, _ := img.Float64()
					got, _ := back.Float64()
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("value %d: %v, want %v", i, got[i], want[i])
						}
					}
					// The sform keeps the affine exactly (to float32 in v1);
					// the qform approximates it with its nearest rotation.
					tol := 1e-5
					if version == 2 {
						tol = 1e-12
					}
					a, code := back.Affine()
					if code != XformScannerAnat || maxDiff(a, aff) > tol*100 {
						t.Errorf("sform affine %v (code %d), want %v", a, code, aff)
					}
					if d := maxDiff(back.QformAffine(), aff); d > 0.2 {
						t.Errorf("qform affine %v differs from %v by %v", back.QformAffine(), aff, d)
					}
				})
			}
		}
	}
}

func seq[T Number](n int, start T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = start + T(i)
	}
	return out
}

func maxDiff(a, b [4][4]float64) float64 {
	d := 0.0
	for r := 0; r < 4; r++ {
		for c := 0; c < 4; c++ {
			d = math.Max(d, math.Abs(a[r][c]-b[r][c]))
		}
	}
	return d
}

// TestSetAffineQform checks that a rigid affine survives the qform exactly,
// including a left-handed one (qfac -1).
func TestSetAffineQform(t *testing.T) {
	c, s := math.Cos(0.3), math.Sin(0.3)
	cases := map[string][4][4]float64{
		"identity":    {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}},
		"lps":         {{-0.8, 0, 0, 5}, {0, -0.8, 0, 6}, {0, 0, 2.5, 7}, {0, 0, 0, 1}},
		"rotated":     {{c * 2, -s * 3, 0, 1}, {s * 2, c * 3, 0, 2}, {0, 0, 4, 3}, {0, 0, 0, 1}},
		"permuted":    {{0, 0, 1.2, 0}, {-1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 0, 1}},
		"180 about y": {{-1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, -1, 0}, {0, 0, 0, 1}},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			var h Header
			h.SetAffine(m, XformScannerAnat)
			if d := maxDiff(h.QformAffine(), m); d > 1e-9 {
				t.Errorf("qform %v, want %v (diff %v)", h.QformAffine(), m, d)
			}
		})
	}
}

// TestReadErrors checks that malformed input gives a clear error.
func TestReadErrors(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(testdata, "syn_lps.nii"))
	if err != nil {
		t.Fatal(err)
	}
	patch := func(off int, v any) []byte {
		b := bytes.Clone(good)
		var buf bytes.Buffer
		binary.Write(&buf, binary.LittleEndian, v)
		copy(b[off:], buf.Bytes())
		return b
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(good[:200])
	zw.Close()
	cases := []struct {
		name, want string
		data       []byte
		notNIfTI   bool
	}{
		{"empty", "too short", nil, true},
		{"png", "sizeof_hdr", []byte("\x89PNG\r\n\x1a\n" + strings.Repeat("x", 400)), true},
		{"analyze", "magic", patch(344, [4]byte{}), true},
		{"truncated header", "truncated header", good[:200], false},
		{"truncated gz header", "truncated header", gz.Bytes(), false},
		{"truncated data", "truncated file", good[:len(good)-10], false},
		{"bad dim0", "dim[0]", patch(40, int16(9)), false},
		{"negative dim", "dim[2]", patch(44, int16(-5)), false},
		{"huge dims", "too large", patch(42, [3]int16{32767, 32767, 32767}), false},
		{"bad datatype", "datatype", patch(70, int16(3)), false},
		{"bitpix mismatch", "bitpix", patch(72, int16(32)), false},
		{"vox_offset in header", "vox_offset", patch(108, float32(100)), false},
		{"vox_offset past end", "truncated file", patch(108, float32(1e6)), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(bytes.NewReader(c.data))
			if err == nil {
				t.Fatalf("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			if errors.Is(err, ErrNotNIfTI) != c.notNIfTI {
				t.Errorf("errors.Is(err, ErrNotNIfTI) = %v for %q", !c.notNIfTI, err)
			}
		})
	}
	t.Run("pair without img", func(t *testing.T) {
		dir := t.TempDir()
		hdr, _ := os.ReadFile(filepath.Join(testdata, "syn_pair.hdr"))
		os.WriteFile(filepath.Join(dir, "a.hdr"), hdr, 0o644)
		if _, err := Read(filepath.Join(dir, "a.hdr")); err == nil || !strings.Contains(err.Error(), ".img is missing") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("rgb values", func(t *testing.T) {
		img := &Image{Header: Header{Version: 1, Datatype: RGB24, Dim: [8]int64{1, 2, 1, 1, 1, 1, 1, 1}}, Data: make([]byte, 6)}
		if _, err := img.Float32(); err == nil || !strings.Contains(err.Error(), "rgb24") {
			t.Errorf("error %v", err)
		}
	})
}

// FuzzNIfTI checks that Decode never panics and that whatever it accepts
// converts to values and encodes again.
func FuzzNIfTI(f *testing.F) {
	for _, name := range []string{"syn_lps.nii", "syn_ras.nii.gz", "syn_bigendian.nii.gz", "syn_nifti2.nii", "syn_scaled.nii", "syn_uint8.nii", "syn_pair.hdr"} {
		b, err := os.ReadFile(filepath.Join(testdata, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x5c, 0x01, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Decode(bytes.NewReader(data))
		if err != nil {
			return
		}
		img.Affine()
		if img.Datatype.Scalar() {
			if _, err := img.Float32(); err != nil {
				t.Fatalf("decoded image does not convert: %v", err)
			}
		}
		var buf bytes.Buffer
		if err := Encode(&buf, img); err != nil {
			t.Fatalf("decoded image does not encode: %v", err)
		}
		back, err := Decode(&buf)
		if err != nil {
			t.Fatalf("re-encoded image does not decode: %v", err)
		}
		if !bytes.Equal(back.Data, img.Data) {
			t.Fatalf("data changed in re-encoding")
		}
	})
}
