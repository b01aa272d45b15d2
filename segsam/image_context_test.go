package segsam

import (
	"math"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/checkpoint"
	"github.com/segsam/segsam/sam"
)

// Infer computes the image context (positional encoding, CO tokens'
// presence) once per embedding and feeds it to the prompts' pass: its
// outputs must equal Forward's, which computes everything per object from
// the embedding broadcast to every prompt; a second call on the same
// embedding (from the cache) must give the same; new weights must not be
// answered from a context of the old ones.
func TestInferImageContext(t *testing.T) {
	m := tinyModel(t, "seg_sam")
	cfg := m.Config
	c, g := cfg.SAM.PromptEncoder.EmbedDim, cfg.SAM.TokenGrid()
	emb := make([]float32, c*g*g)
	for i := range emb {
		emb[i] = float32(math.Sin(float64(i) / 3))
	}
	in := sam.DecoderInputs{
		Embedding: tensors.FromFlatDataAndDimensions(emb, 1, c, g, g),
		Coords:    tensors.FromFlatDataAndDimensions([]float32{20, 30, 90, 100, 50, 50, 0, 0}, 2, 2, 2),
		Labels:    tensors.FromFlatDataAndDimensions([]int32{sam.LabelBoxTopLeft, sam.LabelBoxBotRight, sam.LabelPositive, sam.LabelPadding}, 2, 2),
	}
	// The reference: Forward on the embedding repeated per object [2, C, g, g].
	perObj := append(append([]float32{}, emb...), emb...)
	ref, err := model.NewExec(m.SAM.Backend, m.SAM.Store, func(scope *model.Scope, e, co, l *Node) []*Node {
		out := Forward(scope, cfg, e, co, l, nil)
		return []*Node{out.Binary, out.IoU, out.Semantic.Mask, out.ClassLogits, out.Semantic.Presence}
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Call(tensors.FromFlatDataAndDimensions(perObj, 2, c, g, g), in.Coords, in.Labels)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"binary", "iou", "semantic", "class logits", "presence"}
	check := func(label string, got InferOutputs) {
		t.Helper()
		for i, x := range []*tensors.Tensor{got.Binary, got.IoU, got.Semantic, got.ClassLogits, got.Presence} {
			if x == nil {
				t.Fatalf("%s: no %s", label, names[i])
			}
			a, _ := tensors.CopyFlatData[float32](x)
			b, _ := tensors.CopyFlatData[float32](want[i])
			if len(a) != len(b) {
				t.Fatalf("%s: %s has %d values, Forward %d", label, names[i], len(a), len(b))
			}
			for j := range a {
				if d := math.Abs(float64(a[j] - b[j])); d > 1e-5+1e-5*math.Abs(float64(b[j])) {
					t.Fatalf("%s: %s[%d] = %g, Forward %g", label, names[i], j, a[j], b[j])
				}
			}
		}
	}
	first, err := m.Infer(in)
	if err != nil {
		t.Fatal(err)
	}
	check("first call", first)
	again, err := m.Infer(in)
	if err != nil {
		t.Fatal(err)
	}
	check("cached context", again)
	if len(m.contexts) != 1 {
		t.Fatalf("%d cached contexts after two calls on one embedding, want 1", len(m.contexts))
	}

	// New presence-head biases: the same embedding tensor must now give
	// presence logits shifted by exactly the change.
	ts, err := m.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	var biasKey string
	for _, x := range ts {
		if x.Name == "semantic_decoder.co_heads.bias" {
			biasKey = x.Name
			for i := range x.Data {
				x.Data[i] += 1.5
			}
		}
	}
	if biasKey == "" {
		t.Fatal("no semantic_decoder.co_heads.bias among the weights")
	}
	if err := m.SetWeights(&checkpoint.StateDict{Tensors: ts}, false); err != nil {
		t.Fatal(err)
	}
	after, err := m.Infer(in)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := tensors.CopyFlatData[float32](after.Presence)
	b, _ := tensors.CopyFlatData[float32](first.Presence)
	for i := range a {
		if d := a[i] - b[i]; math.Abs(float64(d)-1.5) > 1e-4 {
			t.Fatalf("presence[%d] moved by %g after the bias moved by 1.5 (stale image context?)", i, d)
		}
	}
}
