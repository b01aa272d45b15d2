package segsam

import (
	"math"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/checkpoint"
	"github.com/segsam/segsam/internal/engine"
	"github.com/segsam/segsam/sam"
)

// TestBoxPriorMap checks the prior of a box (positive at its centre, zero on
// the inscribed ellipse, negative in the box's corners, -1 far away) and of
// a point prompt (no prior at all).
func TestBoxPriorMap(t *testing.T) {
	backend, err := engine.Backend()
	if err != nil {
		t.Fatal(err)
	}
	const s, r = 64, 16 // 4 px per low-res cell
	coords := []float32{8, 8, 39, 39, 20, 20, 0, 0}
	labels := []int32{sam.LabelBoxTopLeft, sam.LabelBoxBotRight, sam.LabelPositive, sam.LabelPadding}
	out, err := ExecOnce(backend, func(c, l *Node) *Node { return BoxPriorMap(c, l, s, r) },
		tensors.FromFlatDataAndDimensions(coords, 2, 2, 2), tensors.FromFlatDataAndDimensions(labels, 2, 2))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := tensors.CopyFlatData[float32](out) // [2, r, r]
	at := func(b, y, x int) float32 { return v[(b*r+y)*r+x] }
	// Box [8, 40) × [8, 40): centre 24 px = between cells 5 and 6.
	if got := at(0, 5, 5); got != 1 {
		t.Errorf("near the centre: %v, want 1 (saturated)", got)
	}
	if got := at(0, 2, 2); got >= 0 { // pixel centre (10, 10): inside the box, outside the ellipse
		t.Errorf("box corner: %v, want < 0", got)
	}
	if got := at(0, 15, 15); got != -1 {
		t.Errorf("far outside: %v, want -1", got)
	}
	// On the ellipse's axis at its edge the map crosses zero: cell 2 along
	// x (pixel 10, radius 16 from centre 24 → r = 0.875) is positive, cell 1
	// (pixel 6, r = 1.125) negative.
	if a, b := at(0, 5, 2), at(0, 5, 1); !(a > 0 && b < 0) {
		t.Errorf("edge crossing along x: %v, %v", a, b)
	}
	for y := range r {
		for x := range r {
			if got := at(1, y, x); got != 0 {
				t.Fatalf("point prompt has a prior %v at (%d, %d)", got, y, x)
			}
		}
	}
}

// TestBoxPriorAddsToBothDecoders compares a model with the box prior to the
// same weights without it: the masks of both decoders differ by exactly the
// prior at its initial scale for a box, and not at all for a point.
func TestBoxPriorAddsToBothDecoders(t *testing.T) {
	plain := tinyModel(t, "seg_sam")
	cfg := plain.Config
	cfg.Parts.BoxPrior = true
	withPrior, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	tensorsOf, err := plain.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	sd := &checkpoint.StateDict{Tensors: tensorsOf}
	if _, _, missing, err := withPrior.SetWeightsMatching(sd); err != nil || len(missing) != 2 {
		t.Fatalf("matching init: missing %v, err %v", missing, err)
	}
	if err := withPrior.Materialize(); err != nil {
		t.Fatal(err)
	}
	c, g := cfg.SAM.PromptEncoder.EmbedDim, cfg.SAM.TokenGrid()
	s := cfg.SAM.ImageEncoder.ImgSize
	emb := make([]float32, c*g*g)
	for i := range emb {
		emb[i] = float32(math.Sin(float64(i)))
	}
	in := sam.DecoderInputs{
		Embedding: tensors.FromFlatDataAndDimensions(emb, 1, c, g, g),
		Coords:    tensors.FromFlatDataAndDimensions([]float32{20, 30, 90, 100, 50, 50, 0, 0}, 2, 2, 2),
		Labels:    tensors.FromFlatDataAndDimensions([]int32{sam.LabelBoxTopLeft, sam.LabelBoxBotRight, sam.LabelPositive, sam.LabelPadding}, 2, 2),
	}
	a, err := plain.Infer(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := withPrior.Infer(in)
	if err != nil {
		t.Fatal(err)
	}
	backend, _ := engine.Backend()
	r := 4 * g
	priorT, err := ExecOnce(backend, func(co, l *Node) *Node { return BoxPriorMap(co, l, s, r) }, in.Coords, in.Labels)
	if err != nil {
		t.Fatal(err)
	}
	prior, _ := tensors.CopyFlatData[float32](priorT)
	check := func(name string, x, y *tensors.Tensor, perObject int) {
		xa, _ := tensors.CopyFlatData[float32](x)
		ya, _ := tensors.CopyFlatData[float32](y)
		for i := range xa {
			obj := i / perObject
			cell := i % (r * r)
			want := boxPriorInit * prior[obj*r*r+cell]
			if d := ya[i] - xa[i]; math.Abs(float64(d-want)) > 1e-4 {
				t.Fatalf("%s[%d]: with prior − without = %v, want %v", name, i, d, want)
			}
		}
	}
	check("Dec_sag masks", a.Binary, b.Binary, a.Binary.Shape().Dim(1)*r*r)
	check("Dec_saw mask", a.Semantic, b.Semantic, r*r)
}

// TestEveryIoUOutputIsTrained checks that the loss gives a gradient to the
// predicted IoU of every mask token, for a box (token 0 chosen) and for a
// point (the best multimask token chosen) alike: inference ranks all of them.
// With the ablation switch IoUChosenOnly only the chosen token's gets one.
func TestEveryIoUOutputIsTrained(t *testing.T) {
	backend, err := engine.Backend()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := NewConfig(tinyBase(t), "sam", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.SAM.ImageEncoder.ImgSize
	m := cfg.SAM.NumMaskTokens()
	r := 4 * cfg.SAM.TokenGrid()
	const b = 2
	logits := make([]float32, b*m*r*r)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i) * 0.37))
	}
	target := make([]float32, b*s*s)
	for i := range target {
		if (i/s)%3 == 0 {
			target[i] = 1
		}
	}
	for _, chosenOnly := range []bool{false, true} {
		cfg.Loss.IoUChosenOnly = chosenOnly
		grad, err := ExecOnce(backend, func(bin, iou, mask, multi *Node) *Node {
			l := Loss(cfg, Outputs{Binary: bin, IoU: iou}, Targets{Mask: mask, Multimask: multi})
			return Gradient(l.Total, iou)[0]
		}, tensors.FromFlatDataAndDimensions(logits, b, m, r, r),
			tensors.FromFlatDataAndDimensions(make([]float32, b*m), b, m), // predicted IoU 0: every token's error is its true IoU
			tensors.FromFlatDataAndDimensions(target, b, s, s),
			tensors.FromFlatDataAndDimensions([]float32{0, 1}, b))
		if err != nil {
			t.Fatal(err)
		}
		g, _ := tensors.CopyFlatData[float32](grad)
		trained := 0
		for i, v := range g {
			if v != 0 {
				trained++
			} else if !chosenOnly {
				t.Errorf("IoU output [object %d, token %d] gets no gradient", i/m, i%m)
			}
		}
		if chosenOnly && trained != b {
			t.Errorf("IoUChosenOnly: %d IoU outputs trained, want %d (one per object)", trained, b)
		}
		if g[0] == 0 {
			t.Errorf("chosen only %v: the box's token 0 gets no gradient", chosenOnly)
		}
	}
}

// TestTextEnhancerSeesThePrompt: T2VSE's output token differs between a
// point and a box on the same image, except in the literal reading of eq. 9
// where the prompt never reaches the summary token.
func TestTextEnhancerSeesThePrompt(t *testing.T) {
	for _, aware := range []bool{true, false} {
		m := tinyModel(t, "seg_sam")
		cfg := m.Config
		cfg.Parts.PromptAwareText = aware
		exec, err := model.NewExec(m.SAM.Backend, m.SAM.Store, func(scope *model.Scope, emb, coords, labels *Node) *Node {
			pe := scope.At("prompt_encoder")
			sparse := sam.SparsePromptEmbeddings(pe, cfg.SAM, coords, labels)
			imagePE := sam.DensePositionalEncoding(pe, cfg.SAM, emb.Graph())
			image := BroadcastToDims(emb, 2, emb.Shape().Dim(1), emb.Shape().Dim(2), emb.Shape().Dim(3))
			return TextEnhancer(scope.At("text_enhancer"), cfg, image, imagePE, sparse) // [2, 1, C]
		})
		if err != nil {
			t.Fatal(err)
		}
		c, g := cfg.SAM.PromptEncoder.EmbedDim, cfg.SAM.TokenGrid()
		emb := make([]float32, c*g*g)
		for i := range emb {
			emb[i] = float32(math.Cos(float64(i) * 0.1))
		}
		out, err := exec.Call(tensors.FromFlatDataAndDimensions(emb, 1, c, g, g),
			tensors.FromFlatDataAndDimensions([]float32{20, 30, 90, 100, 50, 50, 0, 0}, 2, 2, 2),
			tensors.FromFlatDataAndDimensions([]int32{sam.LabelBoxTopLeft, sam.LabelBoxBotRight, sam.LabelPositive, sam.LabelPadding}, 2, 2))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := tensors.CopyFlatData[float32](out[0])
		diff := 0.0
		for i := range c {
			diff = math.Max(diff, math.Abs(float64(v[i]-v[c+i])))
		}
		if aware && diff < 1e-4 {
			t.Errorf("prompt-aware T2VSE: box and point give the same token (max |diff| %g)", diff)
		}
		if !aware && diff != 0 {
			t.Errorf("literal T2VSE: box and point differ by %g, want 0", diff)
		}
	}
}

// TestInitSemanticFromBinary: Dec_saw's transformer, upscaling and
// hypernetwork start as copies of Dec_sag's.
func TestInitSemanticFromBinary(t *testing.T) {
	m := tinyModel(t, "seg_sam")
	n, err := m.InitSemanticFromBinary()
	if err != nil || n == 0 {
		t.Fatalf("copied %d tensors: %v", n, err)
	}
	for _, p := range [][2]string{
		{"/mask_decoder/transformer/layers/0/self_attn/q_proj/weight", "/semantic_decoder/transformer/layers/0/self_attn/q_proj/weight"},
		{"/mask_decoder/output_hypernetworks_mlps/0/layers/0/weight", "/semantic_decoder/so_hypernetwork/layers/0/weight"},
	} {
		a, err := m.SAM.Store.GetVariable(p[0]).Value()
		if err != nil {
			t.Fatal(p[0], err)
		}
		b, err := m.SAM.Store.GetVariable(p[1]).Value()
		if err != nil {
			t.Fatal(p[1], err)
		}
		av, _ := tensors.CopyFlatData[float32](a)
		bv, _ := tensors.CopyFlatData[float32](b)
		for i := range av {
			if av[i] != bv[i] {
				t.Fatalf("%s[%d] = %v, %s = %v", p[1], i, bv[i], p[0], av[i])
			}
		}
	}
	if _, err := tinyModel(t, "sam").InitSemanticFromBinary(); err == nil {
		t.Error("a model without Dec_saw accepted the copy")
	}
}
