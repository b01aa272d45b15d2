package segsam

import (
	"math"
	"strings"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
)

// packPixels is space-to-depth with a fixed layout: channel (ry·4+rx)·P+p
// of token (gy, gx) holds pixel (4gy+ry, 4gx+rx), feature p; unpackPixels
// undoes it exactly.
func TestPackPixelsLayout(t *testing.T) {
	const i, grid, p = 2, 3, 5
	side := pixelSkipStride * grid
	data := make([]float32, i*side*side*p)
	for j := range data {
		data[j] = float32(j)
	}
	backend := tinyModel(t, "sam").SAM.Backend
	exec, err := model.NewExec(backend, model.NewStore(), func(scope *model.Scope, f *Node) []*Node {
		packed := packPixels(f)
		return []*Node{packed, unpackPixels(packed)}
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Call(tensors.FromFlatDataAndDimensions(data, i, side, side, p))
	if err != nil {
		t.Fatal(err)
	}
	if d := out[0].Shape().Dimensions; d[0] != i || d[1] != 16*p || d[2] != grid || d[3] != grid {
		t.Fatalf("packed shape %v, want [%d %d %d %d]", d, i, 16*p, grid, grid)
	}
	packed := tensors.MustCopyFlatData[float32](out[0])
	for b := range i {
		for ry := range 4 {
			for rx := range 4 {
				for q := range p {
					for gy := range grid {
						for gx := range grid {
							ch := (ry*4+rx)*p + q
							got := packed[((b*16*p+ch)*grid+gy)*grid+gx]
							want := data[((b*side+4*gy+ry)*side+4*gx+rx)*p+q]
							if got != want {
								t.Fatalf("packed[%d, %d, %d, %d] = %g, want pixel (%d, %d) feature %d = %g", b, ch, gy, gx, got, 4*gy+ry, 4*gx+rx, q, want)
							}
						}
					}
				}
			}
		}
	}
	back := tensors.MustCopyFlatData[float32](out[1])
	for j := range data {
		if back[j] != data[j] {
			t.Fatalf("unpack(pack(f))[%d] = %g, want %g", j, back[j], data[j])
		}
	}
}

// A model that gains the pixel skip (new, zero-initialised projections)
// predicts exactly what the model without it did; its embedding keeps SAM's
// channels first; once a projection is non-zero the masks change.
func TestPixelSkipStartsAsBefore(t *testing.T) {
	base := tinyModel(t, "seg_sam")
	cfg := base.Config
	cfg.Parts.PixelSkip = true
	skip, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := skip.Seed(9); err != nil {
		t.Fatal(err)
	}
	if err := skip.SetTextEmbeddings(textSet(8)); err != nil {
		t.Fatal(err)
	}
	if err := skip.Materialize(); err != nil {
		t.Fatal(err)
	}
	weights, err := base.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range weights {
		v := skip.SAM.Store.GetVariable(sam.KeyToPath(w.Name))
		if v == nil {
			t.Fatalf("%s missing from the model with the pixel skip", w.Name)
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(w.Data, w.Shape...))
	}
	skip.forgetCompiled()

	p := sam.NewPredictor(base.SAM)
	img := fixtureImage(t)
	input, _, _, err := p.Model.Preprocess(img)
	if err != nil {
		t.Fatal(err)
	}
	embBase, err := base.SAM.Encode(input)
	if err != nil {
		t.Fatal(err)
	}
	embSkip, err := skip.SAM.Encode(input)
	if err != nil {
		t.Fatal(err)
	}
	c, g := cfg.SAM.PromptEncoder.EmbedDim, cfg.SAM.TokenGrid()
	if d := embSkip.Shape().Dimensions; d[1] != cfg.EmbeddingChannels() || cfg.EmbeddingChannels() != c+16*pixelSkipChannels {
		t.Fatalf("embedding with the pixel skip has shape %v, want %d channels", d, c+16*pixelSkipChannels)
	}
	a, b := tensors.MustCopyFlatData[float32](embBase), tensors.MustCopyFlatData[float32](embSkip)
	if len(a) != c*g*g {
		t.Fatalf("base embedding has %d values", len(a))
	}
	for j := range a { // image 0: SAM's channels come first
		if a[j] != b[j] {
			t.Fatalf("embedding value %d: %g with the skip, %g without", j, b[j], a[j])
		}
	}
	in := func(emb *tensors.Tensor) sam.DecoderInputs {
		return sam.DecoderInputs{
			Embedding: emb,
			Coords:    tensors.FromFlatDataAndDimensions([]float32{20, 30, 90, 100, 50, 50, 0, 0}, 2, 2, 2),
			Labels:    tensors.FromFlatDataAndDimensions([]int32{sam.LabelBoxTopLeft, sam.LabelBoxBotRight, sam.LabelPositive, sam.LabelPadding}, 2, 2),
		}
	}
	want, err := base.Infer(in(embBase))
	if err != nil {
		t.Fatal(err)
	}
	got, err := skip.Infer(in(embSkip))
	if err != nil {
		t.Fatal(err)
	}
	maxDiff := func(x, y *tensors.Tensor) float64 {
		u, v := tensors.MustCopyFlatData[float32](x), tensors.MustCopyFlatData[float32](y)
		d := 0.0
		for j := range u {
			d = math.Max(d, math.Abs(float64(u[j]-v[j])))
		}
		return d
	}
	if d := maxDiff(want.Binary, got.Binary); d > 1e-5 {
		t.Errorf("binary masks differ by %g with zero-initialised skip projections", d)
	}
	if d := maxDiff(want.Semantic, got.Semantic); d > 1e-5 {
		t.Errorf("semantic masks differ by %g with zero-initialised skip projections", d)
	}
	if _, err := skip.Infer(in(embBase)); err == nil || !strings.Contains(err.Error(), "embedding shape") {
		t.Errorf("a SAM-width embedding given to the pixel-skip model: error %v, want one naming the embedding shape", err)
	}

	for _, dec := range []string{"mask_decoder", "semantic_decoder"} {
		v := skip.SAM.Store.GetVariable("/" + dec + "/pixel_skip/weight")
		if v == nil {
			t.Fatalf("no %s/pixel_skip/weight", dec)
		}
		w := make([]float32, v.Shape().Size())
		for j := range w {
			w[j] = float32(math.Sin(float64(j)))
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(w, v.Shape().Dimensions...))
	}
	skip.forgetCompiled()
	moved, err := skip.Infer(in(embSkip))
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(want.Binary, moved.Binary); d < 1e-3 {
		t.Errorf("binary masks moved by only %g with non-zero skip projections", d)
	}
	if d := maxDiff(want.Semantic, moved.Semantic); d < 1e-3 {
		t.Errorf("semantic masks moved by only %g with non-zero skip projections", d)
	}
}

// The pixel skip needs the input to be 16× the token grid.
func TestPixelSkipGeometry(t *testing.T) {
	cfg, err := NewConfig(tinyBase(t), "seg_sam", testClasses, 8)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Parts.PixelSkip = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("patch-16 model with the pixel skip: %v", err)
	}
	cfg.SAM.ImageEncoder.PatchSize = 8
	cfg.SAM.PromptEncoder.ImageEmbeddingSize = [2]int{16, 16}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "pixel_skip") {
		t.Errorf("patch-8 model with the pixel skip: error %v, want one naming pixel_skip", err)
	}
}
