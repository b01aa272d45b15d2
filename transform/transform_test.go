package transform

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/npy"
)

const fixtures = "../testdata/fixtures"

// The fixtures' tiny models use input size 128 (config.json img_size).
const fixtureSize = 128

func readNPY(t testing.TB, path string) *npy.Array {
	t.Helper()
	a, err := npy.Read(path)
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return a
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

func readFixtureImage(t testing.TB, path string) Image {
	t.Helper()
	img, err := ReadImage(path)
	if err != nil {
		t.Fatalf("ReadImage(%s): %v", path, err)
	}
	return img
}

// maxAbsDiff returns the largest |a-b| and how many elements differ at all.
func maxAbsDiff(a, b []float32) (float64, int) {
	worst, n := 0.0, 0
	for i := range a {
		if a[i] != b[i] {
			n++
			worst = max(worst, math.Abs(float64(a[i])-float64(b[i])))
		}
	}
	return worst, n
}

func TestPreprocessShape(t *testing.T) {
	var rc struct {
		GetPreprocessShape []struct {
			OldHW  [2]int `json:"old_hw"`
			Target int    `json:"target"`
			NewHW  [2]int `json:"new_hw"`
		} `json:"get_preprocess_shape"`
	}
	readJSON(t, filepath.Join(fixtures, "resize/resize_cases.json"), &rc)
	if len(rc.GetPreprocessShape) == 0 {
		t.Fatal("no get_preprocess_shape cases")
	}
	for _, c := range rc.GetPreprocessShape {
		nh, nw := PreprocessShape(c.OldHW[0], c.OldHW[1], c.Target)
		if nh != c.NewHW[0] || nw != c.NewHW[1] {
			t.Errorf("PreprocessShape(%d, %d, %d) = %d, %d; want %v", c.OldHW[0], c.OldHW[1], c.Target, nh, nw, c.NewHW)
		}
	}
}

func TestApplyCoordsTable(t *testing.T) {
	var rc struct {
		ApplyCoords []struct {
			OrigHW [2]int       `json:"original_hw"`
			Target int          `json:"target"`
			In     [][2]float64 `json:"in"`
			Out    [][2]float64 `json:"out"`
		} `json:"apply_coords"`
	}
	readJSON(t, filepath.Join(fixtures, "resize/resize_cases.json"), &rc)
	if len(rc.ApplyCoords) == 0 {
		t.Fatal("no apply_coords cases")
	}
	for _, c := range rc.ApplyCoords {
		var in []float64
		for _, p := range c.In {
			in = append(in, p[0], p[1])
		}
		got := SAMCoordScale(c.OrigHW[0], c.OrigHW[1], c.Target).ApplyFloat64(in)
		for i, p := range c.Out {
			if got[2*i] != p[0] || got[2*i+1] != p[1] {
				t.Errorf("%v -> %d: point %v = (%v, %v), want %v", c.OrigHW, c.Target, c.In[i], got[2*i], got[2*i+1], p)
			}
		}
	}
}

func TestResizeBilinearPIL(t *testing.T) {
	var rc struct {
		Images []struct {
			Target int    `json:"target_length"`
			Input  string `json:"input"`
			Output string `json:"output"`
			OutHW  [2]int `json:"out_hw"`
		} `json:"pil_bilinear_images"`
	}
	dir := filepath.Join(fixtures, "resize")
	readJSON(t, filepath.Join(dir, "resize_cases.json"), &rc)
	if len(rc.Images) == 0 {
		t.Fatal("no pil_bilinear_images cases")
	}
	for _, c := range rc.Images {
		t.Run(strings.TrimSuffix(c.Input, "_in.npy"), func(t *testing.T) {
			in := readFixtureImage(t, filepath.Join(dir, c.Input))
			want := readFixtureImage(t, filepath.Join(dir, c.Output))
			nh, nw := PreprocessShape(in.H, in.W, c.Target)
			if nh != c.OutHW[0] || nw != c.OutHW[1] || want.H != nh || want.W != nw {
				t.Fatalf("shape %dx%d, fixture says %v, output file %dx%d", nh, nw, c.OutHW, want.H, want.W)
			}
			got, err := ResizeBilinearPIL(in, nh, nw)
			if err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i := range got.Pix {
				if got.Pix[i] != want.Pix[i] {
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d values differ from PIL", bad, len(got.Pix))
			}
		})
	}
}

func TestResizeNearestCV2(t *testing.T) {
	var rc struct {
		Cases []struct {
			SrcHW [2]int `json:"src_hw"`
			DstHW [2]int `json:"dst_hw"`
			Rows  []int  `json:"src_row_for_dst_row"`
			Cols  []int  `json:"src_col_for_dst_col"`
		} `json:"cases"`
	}
	readJSON(t, filepath.Join(fixtures, "resize/cv2_nearest_cases.json"), &rc)
	if len(rc.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range rc.Cases {
		h, w, nh, nw := c.SrcHW[0], c.SrcHW[1], c.DstHW[0], c.DstHW[1]
		// Each source element holds its own (row, col); two channels.
		src := make([][2]int, 0, h*w*2)
		for y := range h {
			for x := range w {
				src = append(src, [2]int{y, x}, [2]int{y, x})
			}
		}
		got, err := ResizeNearestCV2(src, h, w, 2, nh, nw)
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for y := range nh {
			for x := range nw {
				for ch := range 2 {
					if got[(y*nw+x)*2+ch] != [2]int{c.Rows[y], c.Cols[x]} {
						bad++
					}
				}
			}
		}
		if bad > 0 {
			t.Errorf("%v -> %v: %d of %d elements read the wrong source pixel", c.SrcHW, c.DstHW, bad, nh*nw*2)
		}
	}
}

// imageEntry is one image of a model's cases.json.
type imageEntry struct {
	NPY               string `json:"npy"`
	PNG               string `json:"png"`
	InputResized      string `json:"input_resized"`
	InputSize         [2]int `json:"input_size"`
	OriginalSize      [2]int `json:"original_size"`
	InputPreprocessed string `json:"input_preprocessed"`
}

type caseEntry struct {
	ID              string            `json:"id"`
	API             string            `json:"api"`
	Image           string            `json:"image"`
	Multimask       bool              `json:"multimask_output"`
	Inputs          map[string]any    `json:"inputs"`
	InputsTransform map[string]string `json:"inputs_transformed_to_model_frame"`
	Outputs         map[string]string `json:"outputs"`
}

type casesFile struct {
	Images map[string]imageEntry `json:"images"`
	Cases  []caseEntry           `json:"cases"`
}

func loadCases(t testing.TB, model string) casesFile {
	t.Helper()
	var cf casesFile
	readJSON(t, filepath.Join(fixtures, model, "cases.json"), &cf)
	if len(cf.Images) == 0 || len(cf.Cases) == 0 {
		t.Fatalf("%s/cases.json lists no images or cases", model)
	}
	return cf
}

func TestReadImageFixturePNG(t *testing.T) {
	for _, model := range []string{"sam_tiny", "sammed2d_tiny"} {
		cf := loadCases(t, model)
		for name, im := range cf.Images {
			dir := filepath.Join(fixtures, model)
			fromPNG := readFixtureImage(t, filepath.Join(dir, im.PNG))
			fromNPY := readFixtureImage(t, filepath.Join(dir, im.NPY))
			if fromPNG.H != fromNPY.H || fromPNG.W != fromNPY.W || !bytes.Equal(fromPNG.Pix, fromNPY.Pix) {
				t.Errorf("%s %s: PNG and .npy differ", model, name)
			}
			if fromPNG.H != im.OriginalSize[0] || fromPNG.W != im.OriginalSize[1] {
				t.Errorf("%s %s: size %dx%d, want %v", model, name, fromPNG.H, fromPNG.W, im.OriginalSize)
			}
		}
	}
}

func TestPreprocessSAM(t *testing.T) {
	cf := loadCases(t, "sam_tiny")
	dir := filepath.Join(fixtures, "sam_tiny")
	for name, im := range cf.Images {
		t.Run(name, func(t *testing.T) {
			img := readFixtureImage(t, filepath.Join(dir, im.PNG))
			// input_resized: the uint8 image after apply_image.
			nh, nw := PreprocessShape(img.H, img.W, fixtureSize)
			resized, err := ResizeBilinearPIL(img, nh, nw)
			if err != nil {
				t.Fatal(err)
			}
			wantResized := readFixtureImage(t, filepath.Join(dir, im.InputResized))
			if !bytes.Equal(resized.Pix, wantResized.Pix) || resized.H != wantResized.H {
				t.Errorf("resized image differs from %s", im.InputResized)
			}
			input, nh2, nw2, err := PreprocessSAM(img, fixtureSize, PixelMean, PixelStd)
			if err != nil {
				t.Fatal(err)
			}
			if nh2 != im.InputSize[0] || nw2 != im.InputSize[1] {
				t.Errorf("input size %dx%d, want %v", nh2, nw2, im.InputSize)
			}
			want := readNPY(t, filepath.Join(dir, im.InputPreprocessed))
			if d, n := maxAbsDiff(input, want.Float32()); n > 0 {
				t.Errorf("%d values differ from %s, max %g", n, im.InputPreprocessed, d)
			}
		})
	}
}

func TestPreprocessSAMMed2D(t *testing.T) {
	cf := loadCases(t, "sammed2d_tiny")
	dir := filepath.Join(fixtures, "sammed2d_tiny")
	for name, im := range cf.Images {
		t.Run(name, func(t *testing.T) {
			img := readFixtureImage(t, filepath.Join(dir, im.PNG))
			input, err := PreprocessSAMMed2D(img, fixtureSize, PixelMean, PixelStd)
			if err != nil {
				t.Fatal(err)
			}
			want := readNPY(t, filepath.Join(dir, im.InputPreprocessed))
			if d, n := maxAbsDiff(input, want.Float32()); n > 0 {
				t.Errorf("%d values differ from %s, max %g", n, im.InputPreprocessed, d)
			}
		})
	}
}

// TestPromptTransforms checks every case's prompts against the model-frame
// files: predict goes through float64 (Apply), predict_torch (case g)
// through float32 (ApplyFloat32).
func TestPromptTransforms(t *testing.T) {
	for _, model := range []string{"sam_tiny", "sammed2d_tiny"} {
		cf := loadCases(t, model)
		dir := filepath.Join(fixtures, model)
		checked := 0
		for _, c := range cf.Cases {
			im := cf.Images[c.Image]
			h, w := im.OriginalSize[0], im.OriginalSize[1]
			scale := SAMCoordScale(h, w, fixtureSize)
			if model == "sammed2d_tiny" {
				scale = SAMMed2DCoordScale(h, w, fixtureSize)
			}
			for key, out := range c.InputsTransform {
				inFile, ok := c.Inputs[key].(string)
				if !ok {
					t.Fatalf("%s %s: no input file for %s", model, c.ID, key)
				}
				in := readNPY(t, filepath.Join(dir, inFile))
				want := readNPY(t, filepath.Join(dir, out)).Float32()
				var got []float32
				if c.API == "predict_torch" {
					got = scale.ApplyFloat32(in.Float32())
				} else {
					got = scale.Apply(in.Float64())
				}
				if d, n := maxAbsDiff(got, want); n > 0 || len(got) != len(want) {
					t.Errorf("%s %s %s: %d values differ, max %g", model, c.ID, key, n, d)
				}
				checked++
			}
		}
		if checked == 0 {
			t.Errorf("%s: no prompt transforms checked", model)
		}
	}
}

// masksFromNPY reads low-res logits as [B, C, h, w]; predict's outputs have
// no batch dimension (C x h x w), predict_torch's (case g) have one.
func masksFromNPY(t testing.TB, path string) Masks {
	t.Helper()
	a := readNPY(t, path)
	s := a.Shape
	switch len(s) {
	case 3:
		return Masks{B: 1, C: s[0], H: s[1], W: s[2], Data: a.Float32()}
	case 4:
		return Masks{B: s[0], C: s[1], H: s[2], W: s[3], Data: a.Float32()}
	}
	t.Fatalf("%s: unexpected mask shape %v", path, s)
	return Masks{}
}

// TestPostprocessMasks feeds every case's low-res logits through the
// post-processing and compares with the predictor's masks: they must be
// bit-identical (the emulation of torch's kernels is exact on every case).
func TestPostprocessMasks(t *testing.T) {
	for _, model := range []string{"sam_tiny", "sammed2d_tiny"} {
		cf := loadCases(t, model)
		dir := filepath.Join(fixtures, model)
		for _, c := range cf.Cases {
			t.Run(model+"/"+c.ID, func(t *testing.T) {
				im := cf.Images[c.Image]
				h, w := im.OriginalSize[0], im.OriginalSize[1]
				low := masksFromNPY(t, filepath.Join(dir, c.Outputs["low_res_logits"]))
				want := masksFromNPY(t, filepath.Join(dir, c.Outputs["masks"]))
				var got Masks
				var err error
				if model == "sam_tiny" {
					nh, nw := PreprocessShape(h, w, fixtureSize)
					got, err = PostprocessMasksSAM(low, fixtureSize, nh, nw, h, w)
				} else {
					got, err = PostprocessMasksSAMMed2D(low, fixtureSize, h, w)
					if c.API == "predict_torch" && want.B > low.B {
						// SammedPredictor returns the low-res logits of the
						// last box only: compare the last box's masks.
						n := want.C * want.H * want.W
						want.Data = want.Data[len(want.Data)-low.B*n:]
						want.B = low.B
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				if got.B != want.B || got.C != want.C || got.H != want.H || got.W != want.W {
					t.Fatalf("shape [%d %d %d %d], want [%d %d %d %d]", got.B, got.C, got.H, got.W, want.B, want.C, want.H, want.W)
				}
				if d, n := maxAbsDiff(got.Data, want.Data); n > 0 {
					t.Errorf("%d of %d values differ from torch, max abs %g", n, len(got.Data), d)
				}
			})
		}
	}
}

func TestSAMMed2DBestMask(t *testing.T) {
	// The multimask cases keep only the best-IoU mask: its logits are the
	// single-mask-output logits of the token ArgmaxFirst picks among the
	// decoder's three multimask IoU predictions (tokens 1..3).
	cf := loadCases(t, "sammed2d_tiny")
	dir := filepath.Join(fixtures, "sammed2d_tiny")
	checked := 0
	for _, c := range cf.Cases {
		if !c.Multimask || c.API != "predict" {
			continue
		}
		iou := readNPY(t, filepath.Join(dir, c.Outputs["iou_predictions"])).Float32()
		prompt := strings.TrimSuffix(c.ID, "_mm")
		all := readNPY(t, filepath.Join(dir, prompt+"_iou_pred_all_tokens.npy")).Float32()
		if len(all) != 4 || len(iou) != 1 {
			t.Fatalf("%s: unexpected IoU shapes %d, %d", c.ID, len(all), len(iou))
		}
		k := ArgmaxFirst(all[1:])
		if all[1+k] != iou[0] {
			t.Errorf("%s: ArgmaxFirst picks IoU %v, predictor returned %v", c.ID, all[1+k], iou[0])
		}
		checked++
	}
	if checked == 0 {
		t.Error("no multimask cases checked")
	}
}

func TestArgmaxFirst(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		in   []float32
		want int
	}{
		{nil, -1},
		{[]float32{0.5}, 0},
		{[]float32{0.1, 0.9, 0.3}, 1},
		{[]float32{0.9, 0.1, 0.9}, 0},
		{[]float32{-2, -1, -1}, 1},
		{[]float32{0.1, nan, 0.9}, 1},
		{[]float32{nan, nan}, 0},
	}
	for _, tt := range tests {
		if got := ArgmaxFirst(tt.in); got != tt.want {
			t.Errorf("ArgmaxFirst(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestChannelsLastContiguous(t *testing.T) {
	tests := []struct {
		sizes, strides [4]int
		want           bool
	}{
		{[4]int{1, 1, 32, 32}, [4]int{4096, 1024, 32, 1}, true},      // SAM single mask
		{[4]int{1, 3, 32, 32}, [4]int{4096, 1024, 32, 1}, false},     // SAM multimask
		{[4]int{2, 1, 32, 32}, [4]int{4096, 1024, 32, 1}, false},     // SAM batch of 2
		{[4]int{1, 1, 91, 128}, [4]int{16384, 16384, 128, 1}, true},  // crop, full width
		{[4]int{1, 1, 128, 85}, [4]int{16384, 16384, 128, 1}, false}, // crop, narrower
		{[4]int{1, 3, 8, 8}, [4]int{192, 1, 24, 3}, true},            // real NHWC
	}
	for _, tt := range tests {
		if got := channelsLastContiguous(tt.sizes, tt.strides); got != tt.want {
			t.Errorf("channelsLastContiguous(%v, %v) = %v, want %v", tt.sizes, tt.strides, got, tt.want)
		}
	}
}

func writePNG(t *testing.T, img image.Image) string {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "img.png")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadImageConversions(t *testing.T) {
	const w, h = 5, 3
	grey := image.NewGray(image.Rect(0, 0, w, h))
	grey16 := image.NewGray16(image.Rect(0, 0, w, h))
	rgba := image.NewNRGBA(image.Rect(0, 0, w, h))
	pal := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{
		color.NRGBA{10, 20, 30, 255}, color.NRGBA{200, 100, 50, 0}, color.NRGBA{1, 2, 3, 128},
	})
	want := func(f func(x, y int) [3]uint8) []uint8 {
		var p []uint8
		for y := range h {
			for x := range w {
				c := f(x, y)
				p = append(p, c[0], c[1], c[2])
			}
		}
		return p
	}
	rgb16 := image.NewNRGBA64(image.Rect(0, 0, w, h)) // 16-bit RGBA
	rgb16o := image.NewRGBA64(image.Rect(0, 0, w, h)) // opaque: 16-bit RGB
	for y := range h {
		for x := range w {
			v := uint8(x*50 + y*7)
			v16 := uint16(x)*12345 + uint16(y)*777
			rgb16.SetNRGBA64(x, y, color.NRGBA64{v16, ^v16, v16 / 3, uint16(x) * 9000})
			rgb16o.SetRGBA64(x, y, color.RGBA64{v16, ^v16, v16 / 3, 0xffff})
			grey.SetGray(x, y, color.Gray{v})
			grey16.SetGray16(x, y, color.Gray16{uint16(x)*13000 + uint16(y)*255})
			rgba.SetNRGBA(x, y, color.NRGBA{v, 255 - v, uint8(y * 60), uint8(x * 60)})
			pal.SetColorIndex(x, y, uint8((x+y)%3))
		}
	}
	tests := []struct {
		name string
		img  image.Image
		want []uint8
	}{
		{"grey", grey, want(func(x, y int) [3]uint8 { v := uint8(x*50 + y*7); return [3]uint8{v, v, v} })},
		{"grey16", grey16, want(func(x, y int) [3]uint8 {
			v := uint8((uint16(x)*13000 + uint16(y)*255) >> 8)
			return [3]uint8{v, v, v}
		})},
		{"rgba_alpha_dropped", rgba, want(func(x, y int) [3]uint8 {
			v := uint8(x*50 + y*7)
			return [3]uint8{v, 255 - v, uint8(y * 60)}
		})},
		{"rgba16_alpha_dropped", rgb16, want(func(x, y int) [3]uint8 {
			v16 := uint16(x)*12345 + uint16(y)*777
			return [3]uint8{uint8(v16 >> 8), uint8(^v16 >> 8), uint8(v16 / 3 >> 8)}
		})},
		{"rgb16", rgb16o, want(func(x, y int) [3]uint8 {
			v16 := uint16(x)*12345 + uint16(y)*777
			return [3]uint8{uint8(v16 >> 8), uint8(^v16 >> 8), uint8(v16 / 3 >> 8)}
		})},
		{"paletted", pal, want(func(x, y int) [3]uint8 {
			return [][3]uint8{{10, 20, 30}, {200, 100, 50}, {1, 2, 3}}[(x+y)%3]
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadImage(writePNG(t, tt.img))
			if err != nil {
				t.Fatal(err)
			}
			if got.H != h || got.W != w || !bytes.Equal(got.Pix, tt.want) {
				t.Errorf("got %dx%d %v, want %dx%d %v", got.H, got.W, got.Pix, h, w, tt.want)
			}
		})
	}
}

func TestReadImageGreyNPY(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grey.npy")
	if err := npy.Write(path, []int{2, 3}, []uint8{0, 10, 20, 30, 40, 255}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadImage(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint8{0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30, 40, 40, 40, 255, 255, 255}
	if got.H != 2 || got.W != 3 || !bytes.Equal(got.Pix, want) {
		t.Errorf("got %dx%d %v, want 2x3 %v", got.H, got.W, got.Pix, want)
	}
}

// TestReadImageJPEG round-trips the fixture image through Go's JPEG
// encoder at quality 100: colour and grey JPEGs decode to RGB close to the
// source (JPEG is lossy, so only approximately).
func TestReadImageJPEG(t *testing.T) {
	src := readFixtureImage(t, filepath.Join(fixtures, "sam_tiny/image.png"))
	rgb := image.NewNRGBA(image.Rect(0, 0, src.W, src.H))
	grey := image.NewGray(image.Rect(0, 0, src.W, src.H))
	for i := range src.H * src.W {
		copy(rgb.Pix[4*i:], src.Pix[3*i:3*i+3])
		rgb.Pix[4*i+3] = 255
		grey.Pix[i] = src.Pix[3*i]
	}
	tests := []struct {
		name  string
		img   image.Image
		want  func(i, c int) uint8
		limit int
	}{
		{"colour", rgb, func(i, c int) uint8 { return src.Pix[3*i+c] }, 24},
		{"grey", grey, func(i, c int) uint8 { return src.Pix[3*i] }, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, tt.img, &jpeg.Options{Quality: 100}); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "img.jpg")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadImage(path)
			if err != nil {
				t.Fatal(err)
			}
			if got.H != src.H || got.W != src.W {
				t.Fatalf("size %dx%d, want %dx%d", got.H, got.W, src.H, src.W)
			}
			worst := 0
			for i := range src.H * src.W {
				for c := range 3 {
					d := int(got.Pix[3*i+c]) - int(tt.want(i, c))
					worst = max(worst, d, -d)
				}
			}
			if worst > tt.limit {
				t.Errorf("max difference %d levels > %d", worst, tt.limit)
			}
		})
	}
}

func TestReadImageErrors(t *testing.T) {
	pngBytes, err := os.ReadFile(filepath.Join(fixtures, "sam_tiny/image.png"))
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), pngBytes...)
	for i := 60; i < 200 && i < len(corrupt); i++ {
		corrupt[i] ^= 0x5a
	}
	var hugeHeader bytes.Buffer
	huge := image.NewGray(image.Rect(0, 0, 1, 1))
	if err := png.Encode(&hugeHeader, huge); err != nil {
		t.Fatal(err)
	}
	bigPNG := hugeHeader.Bytes()
	// IHDR width at offset 16 (big-endian): claim 20000 columns, and fix
	// the chunk's CRC (over type and data, bytes 12..28, stored at 29).
	bigPNG[16], bigPNG[17], bigPNG[18], bigPNG[19] = 0, 0, 0x4e, 0x20
	binary.BigEndian.PutUint32(bigPNG[29:33], crc32.ChecksumIEEE(bigPNG[12:29]))
	var npyF64 bytes.Buffer
	if err := npy.Encode(&npyF64, []int{2, 2, 3}, make([]float64, 12)); err != nil {
		t.Fatal(err)
	}
	var npyShape bytes.Buffer
	if err := npy.Encode(&npyShape, []int{2, 2, 4}, make([]uint8, 16)); err != nil {
		t.Fatal(err)
	}
	lying := bytes.Replace(npyShape.Bytes(), []byte("(2, 2, 4)"), []byte("(9000, 9000, 3)"), 1)

	tests := []struct {
		name    string
		data    []byte // nil: the file does not exist
		wantErr string
		is      error
	}{
		{"missing", nil, "no such file", os.ErrNotExist},
		{"empty", []byte{}, "empty file", nil},
		{"text", []byte("hello, this is not an image\n"), "unknown image format", nil},
		{"truncated_png", pngBytes[:len(pngBytes)/2], "PNG", nil},
		{"corrupt_png", corrupt, "PNG", nil},
		{"png_too_large", bigPNG, "too large", ErrImageTooLarge},
		{"truncated_jpeg", []byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 16, 'J', 'F'}, "JPEG", nil},
		{"npy_float64", npyF64.Bytes(), "not uint8", nil},
		{"npy_rgba", npyShape.Bytes(), "want HxWx3", nil},
		{"npy_short_data", lying, "needs more data", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.name)
			if tt.data != nil {
				if err := os.WriteFile(path, tt.data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := ReadImage(path)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
		})
	}
}

func TestBadArguments(t *testing.T) {
	img := Image{H: 2, W: 2, Pix: make([]uint8, 12)}
	tests := []struct {
		name string
		err  func() error
	}{
		{"resize_zero", func() error { _, err := ResizeBilinearPIL(img, 0, 5); return err }},
		{"resize_bad_image", func() error { _, err := ResizeBilinearPIL(Image{H: 2, W: 2, Pix: make([]uint8, 5)}, 4, 4); return err }},
		{"resize_huge", func() error { _, err := ResizeBilinearPIL(img, 20000, 20000); return err }},
		{"nearest_len", func() error { _, err := ResizeNearestCV2(make([]float32, 5), 2, 2, 1, 4, 4); return err }},
		{"nearest_zero", func() error { _, err := ResizeNearestCV2(make([]float32, 4), 2, 2, 1, 0, 4); return err }},
		{"sam_size", func() error { _, _, _, err := PreprocessSAM(img, 0, PixelMean, PixelStd); return err }},
		{"sam_extreme_aspect", func() error {
			_, _, _, err := PreprocessSAM(Image{H: 1, W: 300, Pix: make([]uint8, 900)}, 128, PixelMean, PixelStd)
			return err
		}},
		{"sammed2d_size", func() error { _, err := PreprocessSAMMed2D(img, -1, PixelMean, PixelStd); return err }},
		{"post_shape", func() error {
			_, err := PostprocessMasksSAM(Masks{B: 1, C: 1, H: 4, W: 4, Data: make([]float32, 15)}, 16, 8, 8, 10, 10)
			return err
		}},
		{"post_crop", func() error {
			_, err := PostprocessMasksSAM(Masks{B: 1, C: 1, H: 4, W: 4, Data: make([]float32, 16)}, 16, 17, 8, 10, 10)
			return err
		}},
		{"post_tokens", func() error {
			_, err := PostprocessMasksSAM(Masks{B: 1, C: 5, H: 1, W: 1, Data: make([]float32, 5)}, 16, 8, 8, 10, 10)
			return err
		}},
		{"post_med2d_out", func() error {
			_, err := PostprocessMasksSAMMed2D(Masks{B: 1, C: 1, H: 1, W: 1, Data: make([]float32, 1)}, 16, 0, 10)
			return err
		}},
	}
	for _, tt := range tests {
		if err := tt.err(); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func BenchmarkResizeBilinearPIL(b *testing.B) {
	img := Image{H: 512, W: 512, Pix: make([]uint8, 512*512*3)}
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	nh, nw := PreprocessShape(512, 512, 1024)
	b.ResetTimer()
	for b.Loop() {
		if _, err := ResizeBilinearPIL(img, nh, nw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPostprocessMasksSAM(b *testing.B) {
	low := Masks{B: 1, C: 3, H: 256, W: 256, Data: make([]float32, 3*256*256)}
	for i := range low.Data {
		low.Data[i] = float32(math.Sin(float64(i)))
	}
	nh, nw := PreprocessShape(512, 512, 1024)
	b.ResetTimer()
	for b.Loop() {
		if _, err := PostprocessMasksSAM(low, 1024, nh, nw, 512, 512); err != nil {
			b.Fatal(err)
		}
	}
}

func TestFMA32(t *testing.T) {
	ref := func(a, b, c float32) float32 {
		x := new(big.Float).SetPrec(400).SetFloat64(float64(a))
		x.Mul(x, new(big.Float).SetPrec(400).SetFloat64(float64(b)))
		x.Add(x, new(big.Float).SetPrec(400).SetFloat64(float64(c)))
		f, _ := x.Float32()
		return f
	}
	one := float32(1)
	tests := [][3]float32{
		{1.5, 2, 0.25},
		{0, 0, 0},
		{-3, 0.1, 0.3},
		// exact a*b + c = 1 + 2^-23 + 2^-24 - 2^-70: rounding through
		// float64 would hit the float32 tie and round to even (1 + 2^-22).
		{one + 0x1p-23, 0x1p-24 * (one - 0x1p-23), one + 0x1p-23},
		{-(one + 0x1p-23), 0x1p-24 * (one - 0x1p-23), -(one + 0x1p-23)},
		{3e38, 10, 1},
		{1e-20, 1e-20, 1e-39}, // float32 subnormal range
		{-1e-22, 3e-22, 2e-44},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		e := func() float32 { return float32(rng.NormFloat64()) * float32(math.Ldexp(1, rng.IntN(40)-20)) }
		tests = append(tests, [3]float32{e(), e(), e()})
	}
	for _, tt := range tests {
		got, want := fma32(tt[0], tt[1], tt[2]), ref(tt[0], tt[1], tt[2])
		if got != want && !(math.IsInf(float64(got), 0) && math.IsInf(float64(want), 0)) {
			t.Errorf("fma32(%g, %g, %g) = %g, want %g", tt[0], tt[1], tt[2], got, want)
		}
	}
}

func TestResizeAreaCV2(t *testing.T) {
	var rc struct {
		Cases []struct {
			In    string `json:"in"`
			Out   string `json:"out"`
			SrcHW [2]int `json:"src_hw"`
			DstHW [2]int `json:"dst_hw"`
			Kind  string `json:"kind"`
		} `json:"cases"`
	}
	readJSON(t, filepath.Join(fixtures, "resize/cv2_area_cases.json"), &rc)
	if len(rc.Cases) < 8 {
		t.Fatalf("want the 8 OpenCV INTER_AREA cases, have %d", len(rc.Cases))
	}
	kinds := map[string]int{}
	for _, c := range rc.Cases {
		t.Run(fmt.Sprintf("%dx%d_to_%dx%d_%s", c.SrcHW[0], c.SrcHW[1], c.DstHW[0], c.DstHW[1], c.Kind), func(t *testing.T) {
			in := readNPY(t, filepath.Join(fixtures, "resize", c.In))
			want := readNPY(t, filepath.Join(fixtures, "resize", c.Out))
			src, err := in.Uint8()
			if err != nil {
				t.Fatal(err)
			}
			exp, err := want.Uint8()
			if err != nil {
				t.Fatal(err)
			}
			nh, nw := PreprocessShape(c.SrcHW[0], c.SrcHW[1], 256)
			if [2]int{nh, nw} != c.DstHW {
				t.Fatalf("resize_longest_side size %dx%d, OpenCV made %v", nh, nw, c.DstHW)
			}
			got, err := ResizeAreaCV2(src, c.SrcHW[0], c.SrcHW[1], 3, nh, nw)
			if err != nil {
				t.Fatal(err)
			}
			bad, worst := 0, 0
			for i := range exp {
				if got[i] != exp[i] {
					bad++
					worst = max(worst, int(math.Abs(float64(got[i])-float64(exp[i]))))
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d values differ from OpenCV (worst by %d)", bad, len(exp), worst)
			}
			kinds[c.Kind]++
		})
	}
	for _, k := range []string{"upscale", "downscale", "identity"} {
		if kinds[k] == 0 {
			t.Errorf("no %s case checked", k)
		}
	}
}
