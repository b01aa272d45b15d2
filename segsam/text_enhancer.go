package segsam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
)

// TextEnhancer is T2VSE, the text-to-vision semantic enhancement of eq. 9:
// the class-description embeddings f_t (projected to the decoder width) and a
// learnable text summary token t_text attend to each other (with
// Parts.PromptAwareText, together with the prompt tokens t_p); joined with
// t_p they cross-attend to the image embedding; the summary
// token's output, through an MLP, becomes one more prompt token for Dec_sag.
// Variables live under scope "text_enhancer"; the embeddings themselves are
// the non-trainable variable text_enhancer.text_embeddings [K, D_text].
//
//	image: [B, C, g, g], imagePE: [1, C, g, g], sparse: [B, N, C] -> [B, 1, C]
func TextEnhancer(scope *model.Scope, cfg Config, image, imagePE, sparse *Node) *Node {
	g := image.Graph()
	t := cfg.SAM.MaskDecoder.Transformer
	c := cfg.SAM.PromptEncoder.EmbedDim
	k := cfg.NumClasses()
	b := image.Shape().Dim(0)
	if sparse != nil {
		b = max(b, sparse.Shape().Dim(0)) // the image may be shared: [1, C, g, g]
	}

	ft := sam.Param(scope, g, "text_embeddings", k, cfg.TextDim) // [K, D_text]
	ft = sam.Linear(scope.At("text_proj"), ft, c, true)          // [K, C]
	summary := sam.Embedding(scope.At("summary_token"), g, 1, c) // [1, C]
	x := InsertAxes(Concatenate([]*Node{ft, summary}, 0), 0)     // [1, K+1, C]
	var q *Node
	if cfg.Parts.PromptAwareText && sparse != nil {
		// SelfAttn([f_t, t_text, t_p]): the summary token sees the prompt.
		q = Concatenate([]*Node{BroadcastToDims(x, b, k+1, c), sparse}, 1) // [B, K+1+N, C]
		q = sam.LayerNorm(scope.At("norm1"), Add(q, sam.Attention(scope.At("self_attn"), q, q, q, t.NumHeads, 1)), sam.DecoderNormEps)
	} else {
		// Literal eq. 9: SelfAttn([f_t, t_text]), the same for every prompt,
		// then t_p join the cross-attention queries.
		x = sam.LayerNorm(scope.At("norm1"), Add(x, sam.Attention(scope.At("self_attn"), x, x, x, t.NumHeads, 1)), sam.DecoderNormEps)
		q = BroadcastToDims(x, b, k+1, c) // [B, K+1, C]
		if sparse != nil {
			q = Concatenate([]*Node{q, sparse}, 1) // [B, K+1+N, C]
		}
	}
	keys, keyPE := flatten(image), flatten(imagePE) // [B|1, g*g, C], [1, g*g, C]
	keyPE = sam.ToBatch(keyPE, keys.Shape().Dim(0))
	attn := sam.Attention(scope.At("cross_attn"), q, Add(keys, keyPE), keys, t.NumHeads, t.AttentionDownsampleRate) // [B, K+1+N, C]
	q = sam.LayerNorm(scope.At("norm2"), Add(q, attn), sam.DecoderNormEps)
	summaryOut := Slice(q, AxisRange(), AxisElem(k), AxisRange()) // [B, 1, C]
	return sam.MLP(scope.At("mlp"), summaryOut, c, c, 2, false)   // [B, 1, C]
}

// flatten turns a BCHW map into tokens.
//
//	[B, C, h, w] -> [B, h*w, C]
func flatten(x *Node) *Node {
	d := x.Shape().Dimensions
	return sam.SwapLastAxes(Reshape(x, d[0], d[1], d[2]*d[3]))
}
