package segsam

import (
	"math"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
)

// textEnhancerAllRows is eq. 9 as written: every token (the K text
// embeddings, the summary token and, prompt-aware, the prompt tokens) goes
// through the self-attention and the cross-attention, and the summary
// token's row is taken at the end. TextEnhancer computes that row alone.
func textEnhancerAllRows(scope *model.Scope, cfg Config, image, imagePE, sparse *Node) *Node {
	g := image.Graph()
	t := cfg.SAM.MaskDecoder.Transformer
	c := cfg.SAM.PromptEncoder.EmbedDim
	k := cfg.NumClasses()
	b := max(image.Shape().Dim(0), sparse.Shape().Dim(0))
	ft := sam.Linear(scope.At("text_proj"), sam.Param(scope, g, "text_embeddings", k, cfg.TextDim), c, true)
	x := InsertAxes(Concatenate([]*Node{ft, sam.Embedding(scope.At("summary_token"), g, 1, c)}, 0), 0) // [1, K+1, C]
	var q *Node
	if cfg.Parts.PromptAwareText {
		q = Concatenate([]*Node{BroadcastToDims(x, b, k+1, c), sparse}, 1) // [B, K+1+N, C]
		q = sam.LayerNorm(scope.At("norm1"), Add(q, sam.Attention(scope.At("self_attn"), q, q, q, t.NumHeads, 1)), sam.DecoderNormEps)
	} else {
		x = sam.LayerNorm(scope.At("norm1"), Add(x, sam.Attention(scope.At("self_attn"), x, x, x, t.NumHeads, 1)), sam.DecoderNormEps)
		q = Concatenate([]*Node{BroadcastToDims(x, b, k+1, c), sparse}, 1)
	}
	keys, keyPE := flatten(image), flatten(imagePE)
	keyPE = sam.ToBatch(keyPE, keys.Shape().Dim(0))
	q = sam.LayerNorm(scope.At("norm2"), Add(q, sam.Attention(scope.At("cross_attn"), q, Add(keys, keyPE), keys, t.NumHeads, t.AttentionDownsampleRate)), sam.DecoderNormEps)
	return sam.MLP(scope.At("mlp"), Slice(q, AxisRange(), AxisElem(k), AxisRange()), c, c, 2, false) // [B, 1, C]
}

// TestTextEnhancerSummaryRow: TextEnhancer, which computes only the
// summary token's row, gives what the full eq. 9 gives, in both readings,
// with the image shared by the prompts (inference) or one per prompt
// (training).
func TestTextEnhancerSummaryRow(t *testing.T) {
	for _, aware := range []bool{true, false} {
		for _, shared := range []bool{true, false} {
			m := tinyModel(t, "seg_sam")
			cfg := m.Config
			cfg.Parts.PromptAwareText = aware
			build := func(enhancer func(*model.Scope, Config, *Node, *Node, *Node) *Node) func(*model.Scope, *Node, *Node, *Node) *Node {
				return func(scope *model.Scope, emb, coords, labels *Node) *Node {
					pe := scope.At("prompt_encoder")
					sparse := sam.SparsePromptEmbeddings(pe, cfg.SAM, coords, labels) // [3, N, C]
					imagePE := sam.DensePositionalEncoding(pe, cfg.SAM, emb.Graph())
					image := emb
					if !shared {
						image = sam.ToBatch(emb, 3)
					}
					return enhancer(scope.At("text_enhancer"), cfg, image, imagePE, sparse)
				}
			}
			c, g := cfg.SAM.PromptEncoder.EmbedDim, cfg.SAM.TokenGrid()
			emb := make([]float32, c*g*g)
			for i := range emb {
				emb[i] = float32(math.Sin(float64(i)*0.37) * 2)
			}
			args := []any{tensors.FromFlatDataAndDimensions(emb, 1, c, g, g),
				tensors.FromFlatDataAndDimensions([]float32{20, 30, 90, 100, 50, 50, 0, 0, 10, 70, 40, 12}, 3, 2, 2),
				tensors.FromFlatDataAndDimensions([]int32{sam.LabelBoxTopLeft, sam.LabelBoxBotRight, sam.LabelPositive, sam.LabelPadding, sam.LabelPositive, sam.LabelNegative}, 3, 2)}
			var outs [2][]float32
			for i, f := range []func(*model.Scope, Config, *Node, *Node, *Node) *Node{TextEnhancer, textEnhancerAllRows} {
				exec, err := model.NewExec(m.SAM.Backend, m.SAM.Store, build(f))
				if err != nil {
					t.Fatal(err)
				}
				out, err := exec.Call(args...)
				if err != nil {
					t.Fatal(err)
				}
				if d := out[0].Shape().Dimensions; len(d) != 3 || d[0] != 3 || d[1] != 1 || d[2] != c {
					t.Fatalf("output shape %v, want [3 1 %d]", d, c)
				}
				outs[i], _ = tensors.CopyFlatData[float32](out[0])
			}
			worst := 0.0
			for i := range outs[0] {
				worst = math.Max(worst, math.Abs(float64(outs[0][i]-outs[1][i])))
			}
			if worst > 1e-5 {
				t.Errorf("prompt-aware %v, shared image %v: summary row differs from eq. 9 by %g", aware, shared, worst)
			}
		}
	}
}
