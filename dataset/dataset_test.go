package dataset

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const subsetDir = "../testdata/dataset/demo_subset"

func TestNormalizeModality(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"CT", CT, true},
		{"ct", CT, true},
		{"MRI", MR, true},
		{"mr", MR, true},
		{" MR ", MR, true},
		{"PET", PET, true},
		{"Dermoscopy", Dermoscopy, true},
		{"endoscopy", Endoscopy, true},
		{"Fundus", Fundus, true},
		{"US", Ultrasound, true},
		{"Ultrasound", Ultrasound, true},
		{"xray", XRay, true},
		{"X-Ray", XRay, true},
		{"x_ray", XRay, true},
		{"X-ray", XRay, true},
		{"unknown", Unknown, true},
		{"histopathology", "histopathology", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := NormalizeModality(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NormalizeModality(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseMaskName(t *testing.T) {
	known := map[string]bool{"liver": true, "inferior_vena_cava": true, "rib_left_9": true}
	tests := []struct {
		image, mask string
		known       map[string]bool
		class       string
		index       int
		wantErr     string
	}{
		{"amos_0004_75", "amos_0004_75_liver_000", known, "liver", 0, ""},
		{"amos_0004_75", "amos_0004_75_inferior_vena_cava_002", known, "inferior_vena_cava", 2, ""},
		{"s0114_111", "s0114_111_rib_left_9_000", known, "rib_left_9", 0, ""},
		{"s0114_111", "s0114_111_rib_left_9_1234", nil, "rib_left_9", 1234, ""},
		// Mask renamed: falls back to the longest known class.
		{"img", "other_inferior_vena_cava_001", known, "inferior_vena_cava", 1, ""},
		{"img", "img_spleen_000", known, "", 0, "not in meta.json classes"},
		{"img", "img_spleen_000", nil, "spleen", 0, ""},
		{"img", "img_liver", known, "", 0, "not a number"},
		{"img", "imgliver000", known, "", 0, "not <image>_<class>_<nnn>"},
		{"img", "other_kidney_000", known, "", 0, "ends in no known class"},
		{"img", "img_liver_-01", known, "", 0, "not a number"},
	}
	for _, tt := range tests {
		class, idx, err := parseMaskName(tt.image, tt.mask, tt.known)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseMaskName(%q, %q) error = %v, want one containing %q", tt.image, tt.mask, err, tt.wantErr)
			}
			continue
		}
		if err != nil || class != tt.class || idx != tt.index {
			t.Errorf("parseMaskName(%q, %q) = %q, %d, %v; want %q, %d", tt.image, tt.mask, class, idx, err, tt.class, tt.index)
		}
	}
}

func TestOpenSubset(t *testing.T) {
	ds, err := Open(subsetDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Warnings) != 0 {
		t.Errorf("warnings: %q", ds.Warnings)
	}
	if got := len(ds.Images); got != 18 {
		t.Errorf("%d images, want 18", got)
	}
	if got := ds.NumMasks(); got != 34 {
		t.Errorf("%d masks, want 34", got)
	}
	if got := ds.ModalitiesPresent(); !slices.Equal(got, Modalities) {
		t.Errorf("modalities %q, want %q", got, Modalities)
	}
	if got := len(ds.Classes()); got != 19 {
		t.Errorf("%d classes, want 19: %q", got, ds.Classes())
	}
	byName := map[string]*ImageEntry{}
	for _, e := range ds.Images {
		byName[e.Name] = e
	}
	tests := []struct {
		name     string
		modality string
		group    string
		w, h     int
		classes  []string
		indices  []int
	}{
		{"amos_0004_75", CT, "samed2d:amos_0004", 256, 256, []string{"aorta", "inferior_vena_cava", "liver"}, []int{0, 0, 0}},
		{"kits19_10038_68", CT, "kits19:10038", 256, 256, []string{"kidney", "kidney"}, []int{0, 1}},
		{"sts_019_pet_z021", PET, "sts:STS_019", 0, 0, []string{"soft_tissue_sarcoma"}, []int{0}},
		{"drive_03_test", Fundus, "", 0, 0, []string{"retinal_vessel"}, []int{0}},
	}
	for _, tt := range tests {
		e := byName[tt.name]
		if e == nil {
			t.Errorf("image %s missing", tt.name)
			continue
		}
		if e.Modality != tt.modality || (tt.group != "" && e.Group != tt.group) {
			t.Errorf("%s: modality %q group %q, want %q %q", tt.name, e.Modality, e.Group, tt.modality, tt.group)
		}
		if tt.w != 0 && (e.Width != tt.w || e.Height != tt.h) {
			t.Errorf("%s: size %dx%d, want %dx%d", tt.name, e.Width, e.Height, tt.w, tt.h)
		}
		var classes []string
		var indices []int
		for _, m := range e.Masks {
			classes = append(classes, m.Class)
			indices = append(indices, m.Index)
		}
		if !slices.Equal(classes, tt.classes) || !slices.Equal(indices, tt.indices) {
			t.Errorf("%s: masks %q %v, want %q %v", tt.name, classes, indices, tt.classes, tt.indices)
		}
		img, err := e.LoadImage()
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
		} else if b := img.Bounds(); b.Dx() != e.Width || b.Dy() != e.Height || e.Meta.StoredSize != [2]int{e.Width, e.Height} {
			t.Errorf("%s: loaded %v, entry %dx%d, meta stored_size %v", tt.name, b, e.Width, e.Height, e.Meta.StoredSize)
		}
		bits, err := e.LoadMaskBits(0)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		n := 0
		for _, b := range bits {
			if b {
				n++
			}
		}
		if n == 0 || n == len(bits) {
			t.Errorf("%s: mask 0 has %d of %d pixels set", tt.name, n, len(bits))
		}
	}
	if _, err := byName["amos_0004_75"].LoadMask(3); err == nil {
		t.Error("LoadMask(3) on an image with 3 masks: no error")
	}
}

// copySubset copies the test subset into a temporary directory.
func copySubset(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(subsetDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(subsetDir, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func editJSON(t *testing.T, p string, edit func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	edit(v)
	data, _ = json.Marshal(v)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	const amos = "images/amos_0004_75.png"
	tests := []struct {
		name    string
		corrupt func(t *testing.T, dir string)
		wantErr string
	}{
		{"no index", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, Image2LabelFile)) }, "image2label.json"},
		{"bad json", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, MetaFile), []byte("{"), 0o644)
		}, "parse"},
		{"missing mask", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "masks/amos_0004_75_liver_000.png"))
		}, "amos_0004_75_liver_000.png"},
		{"missing image", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, amos))
		}, amos},
		{"mask of another size", func(t *testing.T, dir string) {
			f, _ := os.Create(filepath.Join(dir, "masks/amos_0004_75_liver_000.png"))
			png.Encode(f, image.NewGray(image.Rect(0, 0, 10, 12)))
			f.Close()
		}, "has another size (10x12)"},
		{"escaping path", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, Image2LabelFile), func(v map[string]any) {
				v["../x.png"] = []any{}
			})
		}, "stay inside"},
		{"class not in list", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, MetaFile), func(v map[string]any) {
				v["classes"] = []any{"liver"}
			})
		}, `class "aorta" is not in meta.json classes`},
		{"mask listed twice", func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, Image2LabelFile), func(v map[string]any) {
				v[amos] = append(v[amos].([]any), "masks/amos_0004_75_liver_000.png")
			})
		}, "also listed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copySubset(t)
			tt.corrupt(t, dir)
			_, err := Open(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open: error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestOpenWithoutMeta(t *testing.T) {
	dir := copySubset(t)
	if err := os.Remove(filepath.Join(dir, MetaFile)); err != nil {
		t.Fatal(err)
	}
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Warnings) == 0 || !strings.Contains(ds.Warnings[0], "meta.json is missing") {
		t.Errorf("warnings %q, want a missing meta.json warning", ds.Warnings)
	}
	for _, e := range ds.Images {
		if e.Modality != Unknown || e.Group != e.Path {
			t.Errorf("%s: modality %q group %q, want %q and its path", e.Path, e.Modality, e.Group, Unknown)
		}
	}
	// Classes are inferred from mask names by stripping the image prefix.
	if got := len(ds.Classes()); got != 19 {
		t.Errorf("inferred %d classes, want 19: %q", got, ds.Classes())
	}
}

func TestOpenNormalisesModality(t *testing.T) {
	dir := copySubset(t)
	editJSON(t, filepath.Join(dir, MetaFile), func(v map[string]any) {
		imgs := v["images"].(map[string]any)
		imgs["images/acdc_10555.png"].(map[string]any)["modality"] = "MRI"
		imgs["images/cxrseg_ards_secondary_to_tiger_snake_bite.png"].(map[string]any)["modality"] = "xray"
		imgs["images/hc18_697_hc.png"].(map[string]any)["modality"] = "sonar"
		delete(imgs, "images/ph2_imd211.png")
	})
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"acdc_10555": MR, "cxrseg_ards_secondary_to_tiger_snake_bite": XRay, "hc18_697_hc": "sonar", "ph2_imd211": Unknown}
	for _, e := range ds.Images {
		if w, ok := want[e.Name]; ok && e.Modality != w {
			t.Errorf("%s: modality %q, want %q", e.Name, e.Modality, w)
		}
	}
	if len(ds.Warnings) != 2 {
		t.Errorf("warnings %q, want 2 (unrecognised modality, missing record)", ds.Warnings)
	}
}

func TestSplitByGroup(t *testing.T) {
	ds, err := Open(subsetDir)
	if err != nil {
		t.Fatal(err)
	}
	names := func(d *Dataset) []string {
		var out []string
		for _, e := range d.Images {
			out = append(out, e.Name)
		}
		slices.Sort(out)
		return out
	}
	for _, frac := range []float64{0, 0.2, 0.5, 1} {
		for _, seed := range []int64{1, 2} {
			train, val := ds.SplitByGroup(frac, seed)
			if len(train.Images)+len(val.Images) != len(ds.Images) {
				t.Errorf("frac %g seed %d: %d+%d images, want %d", frac, seed, len(train.Images), len(val.Images), len(ds.Images))
			}
			groups := map[string]bool{}
			for _, e := range train.Images {
				groups[e.Group] = true
			}
			for _, e := range val.Images {
				if groups[e.Group] {
					t.Errorf("frac %g seed %d: group %s in both splits", frac, seed, e.Group)
				}
			}
			// The split depends on group names and seed, not on image order.
			rev := ds.Subset(func(*ImageEntry) bool { return true })
			slices.Reverse(rev.Images)
			_, val2 := rev.SplitByGroup(frac, seed)
			if !slices.Equal(names(val), names(val2)) {
				t.Errorf("frac %g seed %d: split changed with image order: %q vs %q", frac, seed, names(val), names(val2))
			}
			switch frac {
			case 0:
				if len(val.Images) != 0 {
					t.Errorf("frac 0: %d val images", len(val.Images))
				}
			case 1:
				if len(train.Images) != 0 {
					t.Errorf("frac 1: %d train images", len(train.Images))
				}
			default:
				// Every modality with two or more groups has a group in val.
				if got := val.ModalitiesPresent(); len(got) < 7 {
					t.Errorf("frac %g seed %d: val has modalities %q", frac, seed, got)
				}
			}
		}
	}
	_, a := ds.SplitByGroup(0.5, 1)
	_, b := ds.SplitByGroup(0.5, 7)
	if slices.Equal(names(a), names(b)) {
		t.Logf("seeds 1 and 7 gave the same split (possible but unlikely)")
	}
}

func TestWriterRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	grey := image.NewGray(image.Rect(0, 0, 6, 4))
	for i := range grey.Pix {
		grey.Pix[i] = uint8(i * 10)
	}
	rgb := image.NewRGBA(image.Rect(10, 10, 16, 14)) // non-zero origin
	for i := range rgb.Pix {
		rgb.Pix[i] = uint8(i)
		if i%4 == 3 {
			rgb.Pix[i] = 255
		}
	}
	mask := func(x0, y0, x1, y1 int, v uint8) *image.Gray {
		g := image.NewGray(image.Rect(0, 0, 6, 4))
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				g.SetGray(x, y, color.Gray{Y: v})
			}
		}
		return g
	}
	meta := ImageMeta{Modality: "MRI", Group: "p1", Source: "synthetic", License: "CC0",
		OriginalSize: [2]int{12, 8}, Extra: map[string]any{"slice": 3.0},
		Other: map[string]json.RawMessage{"spacing": json.RawMessage(`[0.5,0.5]`)}}
	if err := w.AddImage("case_1", grey, meta, []Mask{
		{Class: "left_ventricle", Index: 0, Mask: mask(0, 0, 2, 2, 1)},
		{Class: "left_ventricle", Index: 1, Mask: mask(4, 2, 6, 4, 200)},
		{Class: "myocardium", Index: 0, Mask: mask(2, 0, 4, 4, 255)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.AddImage("case_2.png", rgb, ImageMeta{Modality: "endoscopy"}, []Mask{{Class: "polyp", Mask: mask(1, 1, 3, 3, 9)}}); err != nil {
		t.Fatal(err)
	}
	addErrs := []struct {
		name    string
		img     image.Image
		meta    ImageMeta
		masks   []Mask
		wantErr string
	}{
		{"case_1", grey, ImageMeta{Modality: "CT"}, nil, "already added"},
		{"a/b", grey, ImageMeta{Modality: "CT"}, nil, "not allowed"},
		{"", grey, ImageMeta{Modality: "CT"}, nil, "empty name"},
		{"x", grey, ImageMeta{Modality: "sonar"}, nil, "unknown modality"},
		{"x", grey, ImageMeta{Modality: "CT"}, []Mask{{Class: "liver", Mask: image.NewGray(image.Rect(0, 0, 5, 4))}}, "another size"},
		{"x", grey, ImageMeta{Modality: "CT"}, []Mask{{Class: "liver", Mask: mask(0, 0, 0, 0, 0)}}, "is empty"},
		{"x", grey, ImageMeta{Modality: "CT"}, []Mask{{Class: "li ver", Mask: mask(0, 0, 1, 1, 1)}}, "not allowed"},
		{"x", grey, ImageMeta{Modality: "CT"}, []Mask{{Class: "liver", Mask: mask(0, 0, 1, 1, 1)}, {Class: "liver", Mask: mask(1, 1, 2, 2, 1)}}, "two masks"},
		{"x", nil, ImageMeta{Modality: "CT"}, nil, "nil image"},
	}
	for _, tt := range addErrs {
		if err := w.AddImage(tt.name, tt.img, tt.meta, tt.masks); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("AddImage(%q): error %v, want one containing %q", tt.name, err, tt.wantErr)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.AddImage("late", grey, ImageMeta{Modality: "CT"}, nil); err == nil {
		t.Error("AddImage after Close: no error")
	}

	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Warnings) != 0 {
		t.Errorf("warnings %q", ds.Warnings)
	}
	if got := ds.Classes(); !slices.Equal(got, []string{"left_ventricle", "myocardium", "polyp"}) {
		t.Errorf("classes %q", got)
	}
	if len(ds.Images) != 2 {
		t.Fatalf("%d images, want 2", len(ds.Images))
	}
	e := ds.Images[0]
	if e.Path != "images/case_1.png" || e.Modality != MR || e.Group != "p1" || e.Width != 6 || e.Height != 4 {
		t.Errorf("entry %+v", e)
	}
	if e.Meta.OriginalSize != [2]int{12, 8} || e.Meta.StoredSize != [2]int{6, 4} || e.Meta.Extra["slice"] != 3.0 ||
		!jsonEqual(e.Meta.Other["spacing"], "[0.5,0.5]") || e.Meta.License != "CC0" {
		t.Errorf("meta %+v", e.Meta)
	}
	img, err := e.LoadImage()
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := img.(*image.Gray); !ok || !slices.Equal(g.Pix, grey.Pix) {
		t.Errorf("grey image not stored as 8-bit grey unchanged: %T", img)
	}
	wantMasks := []struct {
		class string
		index int
		set   int
	}{{"left_ventricle", 0, 4}, {"left_ventricle", 1, 4}, {"myocardium", 0, 8}}
	for i, wm := range wantMasks {
		m := e.Masks[i]
		g, err := e.LoadMask(i)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, v := range g.Pix {
			if v == 255 {
				n++
			} else if v != 0 {
				t.Errorf("mask %s has value %d", m.Path, v)
			}
		}
		if m.Class != wm.class || m.Index != wm.index || n != wm.set {
			t.Errorf("mask %d: %s %d with %d px, want %s %d with %d", i, m.Class, m.Index, n, wm.class, wm.index, wm.set)
		}
	}
	img2, err := ds.Images[1].LoadImage()
	if err != nil {
		t.Fatal(err)
	}
	r, g, b, _ := img2.At(0, 0).RGBA()
	if r>>8 != 0 || g>>8 != 1 || b>>8 != 2 || ds.Images[1].Modality != Endoscopy {
		t.Errorf("RGB image pixel (0,0) = %d %d %d, modality %s", r>>8, g>>8, b>>8, ds.Images[1].Modality)
	}

	// The directory is no longer empty: Create refuses it unless asked.
	if _, err := Create(dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Create on a non-empty dir: error %v", err)
	}
	keep := filepath.Join(dir, "SOURCES.md")
	os.WriteFile(keep, []byte("x"), 0o644)
	w2, err := Create(dir, Overwrite())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "images", "case_1.png")); !os.IsNotExist(err) {
		t.Errorf("overwrite left the old image: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("overwrite removed a foreign file: %v", err)
	}
	if err := w2.Close(); err == nil {
		t.Error("Close with no images: no error")
	}
}

func jsonEqual(raw json.RawMessage, want string) bool {
	var buf bytes.Buffer
	return json.Compact(&buf, raw) == nil && buf.String() == want
}

// TestMergeAndSplitEach: merged sets keep reading their own files; a set's
// split is the same alone and next to another set; the same set twice is
// refused.
func TestMergeAndSplitEach(t *testing.T) {
	a, err := Open(copySubset(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(copySubset(t))
	if err != nil {
		t.Fatal(err)
	}
	merged, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(merged.Images) != 2*len(a.Images) || len(merged.Classes()) != len(a.Classes()) {
		t.Fatalf("merged: %d images, %d classes", len(merged.Images), len(merged.Classes()))
	}
	if _, err := merged.Images[len(a.Images)].LoadMask(0); err != nil {
		t.Errorf("a mask of the second set: %v", err)
	}
	if _, err := Merge(a, a); err == nil || !strings.Contains(err.Error(), "in both") {
		t.Errorf("the same set twice: %v", err)
	}
	_, aloneVal := a.SplitByGroup(0.3, 1)
	_, val, err := SplitEach([]*Dataset{a, b}, 0.3, 1)
	if err != nil {
		t.Fatal(err)
	}
	var fromA []string
	for _, e := range val.Images {
		if strings.HasPrefix(e.ImagePath(), a.Dir) {
			fromA = append(fromA, e.Path)
		}
	}
	if len(fromA) != len(aloneVal.Images) || len(fromA) == 0 {
		t.Fatalf("set a's validation part: %d images next to b, %d alone", len(fromA), len(aloneVal.Images))
	}
	for i, e := range aloneVal.Images {
		if fromA[i] != e.Path {
			t.Errorf("validation image %d: %s next to b, %s alone", i, fromA[i], e.Path)
		}
	}
	if all, err := OpenAll(a.Dir + "," + b.Dir); err != nil || len(all.Images) != len(merged.Images) {
		t.Errorf("OpenAll: %v", err)
	}
}
