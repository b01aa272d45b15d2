package segsam

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
)

// TestLossGradientsMatchFiniteDifferences checks the gradient of the SEG-SAM
// loss (image encoder included) against central finite differences along a
// random direction, per weight tensor: the engine's automatic
// differentiation of every operation the model uses is exercised. With the
// pixel skip its projections are made non-zero first, so that gradients
// reach its stem.
func TestLossGradientsMatchFiniteDifferences(t *testing.T) {
	for _, pixelSkip := range []bool{false, true} {
		name := "seg_sam"
		if pixelSkip {
			name += "+pixel_skip"
		}
		t.Run(name, func(t *testing.T) { checkLossGradients(t, pixelSkip) })
	}
}

func checkLossGradients(t *testing.T, pixelSkip bool) {
	cfg, err := NewConfig(tinyBase(t), "seg_sam", testClasses, 8)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Parts.PixelSkip = pixelSkip
	cfg.SAM.Family = sam.FamilySAMMed2D
	// Keep the loss smooth for finite differences: no IoU-MSE (its target is
	// a thresholded mask) and no multimask choice (an argmin).
	cfg.Loss.IoU = 0
	m, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Seed(11); err != nil {
		t.Fatal(err)
	}
	if err := m.SetTextEmbeddings(textSet(8)); err != nil {
		t.Fatal(err)
	}
	if err := m.Materialize(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	if pixelSkip {
		for _, dec := range []string{"mask_decoder", "semantic_decoder"} {
			v := m.SAM.Store.GetVariable("/" + dec + "/pixel_skip/weight")
			w := make([]float32, v.Shape().Size())
			for j := range w {
				w[j] = float32(0.3 * rng.NormFloat64())
			}
			v.MustSetValue(tensors.FromFlatDataAndDimensions(w, v.Shape().Dimensions...))
		}
	}
	s := cfg.SAM.ImageEncoder.ImgSize
	b := 2
	image := make([]float32, b*3*s*s)
	for i := range image {
		image[i] = float32(rng.NormFloat64())
	}
	mask := make([]float32, b*s*s)
	for y := 30; y < 90; y++ {
		for x := 20; x < 70; x++ {
			mask[y*s+x] = 1
			mask[s*s+(y/2+10)*s+x+30] = 1
		}
	}
	inputs := []any{
		tensors.FromFlatDataAndDimensions(image, b, 3, s, s),
		tensors.FromFlatDataAndDimensions([]float32{20, 30, 69, 89, 60, 25, 0, 0}, b, 2, 2),
		tensors.FromFlatDataAndDimensions([]int32{2, 3, 1, -1}, b, 2),
		tensors.FromFlatDataAndDimensions(mask, b, s, s),
		tensors.FromFlatDataAndDimensions([]int32{1, 2}, b),
		tensors.FromFlatDataAndDimensions([]float32{0, 1, 1, 1, 0, 1}, b, 3),
		tensors.FromFlatDataAndDimensions([]float32{0, 0}, b),
	}
	var names []string
	for v := range m.SAM.Store.IterVariables() {
		p := v.Path()
		if strings.Contains(p, "text_embeddings") || strings.Contains(p, "gaussian_matrix") || strings.Contains(p, "mask_downscaling") || strings.Contains(p, "no_mask") == false && strings.HasPrefix(p, "/prompt_encoder/no_mask") {
			continue
		}
		if strings.HasPrefix(p, "/image_encoder/") || strings.HasPrefix(p, "/mask_decoder/") || strings.HasPrefix(p, "/semantic_decoder/") || strings.HasPrefix(p, "/text_enhancer/") || strings.HasPrefix(p, "/prompt_encoder/point") {
			names = append(names, p)
		}
	}
	lossFn := func(scope *model.Scope, in []*Node) *Node {
		g := in[0].Graph()
		scope.SetTraining(g, true)
		emb := EncodeImage(scope, cfg, in[0])
		out := Forward(scope, cfg, emb, in[1], in[2], nil)
		return Loss(cfg, out, Targets{Mask: in[3], Class: in[4], Presence: in[5], Multimask: in[6]}).Total
	}
	lossExec, err := model.NewExec(m.SAM.Backend, m.SAM.Store, func(scope *model.Scope, in []*Node) []*Node {
		return []*Node{lossFn(scope, in)}
	})
	if err != nil {
		t.Fatal(err)
	}
	gradExec, err := model.NewExec(m.SAM.Backend, m.SAM.Store, func(scope *model.Scope, in []*Node) []*Node {
		loss := lossFn(scope, in)
		var nodes []*Node
		for _, n := range names {
			nodes = append(nodes, m.SAM.Store.GetVariable(n).NodeValue(in[0].Graph()))
		}
		return Gradient(loss, nodes...)
	})
	if err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		out, err := lossExec.Call(inputs...)
		if err != nil {
			t.Fatal(err)
		}
		return float64(tensors.MustCopyFlatData[float32](out[0])[0])
	}
	grads, err := gradExec.Call(inputs...)
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, n := range names {
		v := m.SAM.Store.GetVariable(n)
		orig := tensors.MustCopyFlatData[float32](v.MustValue())
		g := tensors.MustCopyFlatData[float32](grads[i])
		dir := make([]float32, len(orig))
		var norm float64
		for j := range dir {
			dir[j] = float32(rng.NormFloat64())
			norm += float64(dir[j]) * float64(dir[j])
		}
		scale := 1 / math.Sqrt(norm)
		analytic := 0.0
		for j := range dir {
			dir[j] *= float32(scale)
			analytic += float64(dir[j]) * float64(g[j])
		}
		const eps = 1e-2
		set := func(sign float64) {
			p := make([]float32, len(orig))
			for j := range p {
				p[j] = orig[j] + float32(sign*eps)*dir[j]
			}
			v.MustSetValue(tensors.FromFlatDataAndDimensions(p, v.Shape().Dimensions...))
		}
		set(1)
		lp := loss()
		set(-1)
		lm := loss()
		v.MustSetValue(tensors.FromFlatDataAndDimensions(orig, v.Shape().Dimensions...))
		numeric := (lp - lm) / (2 * eps)
		if math.Abs(numeric-analytic) > 0.05*math.Max(math.Abs(numeric), math.Abs(analytic))+2e-3 {
			bad++
			t.Errorf("%s: directional derivative %.5g analytic, %.5g numeric", n, analytic, numeric)
		}
	}
	t.Logf("%d weight tensors checked", len(names))
	_ = dtypes.Float32
}
