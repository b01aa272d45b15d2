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
// Only the summary token's output is used, and attention treats each query
// on its own, so only the summary token's row is computed: the text tokens
// serve as keys and values, never as queries. What does not depend on the
// prompt (TextContext) may be computed once per image.
//
//	image: [B, C, g, g], imagePE: [1, C, g, g], sparse: [B, N, C] -> [B, 1, C]
func TextEnhancer(scope *model.Scope, cfg Config, image, imagePE, sparse *Node) *Node {
	return TextEnhancerInContext(scope, cfg, NewTextContext(scope, cfg, image, imagePE), sparse)
}

// TextContext is the part of T2VSE that does not depend on the prompt.
type TextContext struct {
	// Text are the self-attention's keys and values of [f_t, t_text]
	// [1, K+1, C] (the same for every image); nil in the literal reading.
	Text *sam.KV
	// Image are the cross-attention's keys and values of the image
	// [I, g*g, C/r]; nil in the literal reading.
	Image *sam.KV
	// Out is T2VSE's output in the literal reading of eq. 9, where the
	// prompt never reaches the summary token [I, 1, C]; nil otherwise.
	Out *Node
}

// Nodes lists the context's tensors (for feeding a compiled graph);
// TextContextFromNodes takes them back.
func (t TextContext) Nodes() []*Node {
	if t.Out != nil {
		return []*Node{t.Out}
	}
	return []*Node{t.Text.K, t.Text.V, t.Image.K, t.Image.V}
}

// TextContextFromNodes rebuilds a TextContext from its Nodes, and returns
// how many it took.
func TextContextFromNodes(cfg Config, nodes []*Node) (TextContext, int) {
	if !cfg.Parts.PromptAwareText {
		return TextContext{Out: nodes[0]}, 1
	}
	return TextContext{Text: &sam.KV{K: nodes[0], V: nodes[1]}, Image: &sam.KV{K: nodes[2], V: nodes[3]}}, 4
}

// NewTextContext computes T2VSE's prompt-independent part for image
// embeddings.
//
//	image: [I, C, g, g], imagePE: [1, C, g, g]
func NewTextContext(scope *model.Scope, cfg Config, image, imagePE *Node) TextContext {
	g := image.Graph()
	t := cfg.SAM.MaskDecoder.Transformer
	c := cfg.SAM.PromptEncoder.EmbedDim
	k := cfg.NumClasses()
	ft := sam.Param(scope, g, "text_embeddings", k, cfg.TextDim) // [K, D_text]
	ft = sam.Linear(scope.At("text_proj"), ft, c, true)          // [K, C]
	summary := sam.Embedding(scope.At("summary_token"), g, 1, c) // [1, C]
	x := InsertAxes(Concatenate([]*Node{ft, summary}, 0), 0)     // [1, K+1, C]
	s := InsertAxes(summary, 0)                                  // t_text [1, 1, C]
	keys, keyPE := flatten(image), flatten(imagePE)              // [I, g*g, C], [1, g*g, C]
	keyPE = sam.ToBatch(keyPE, keys.Shape().Dim(0))
	if cfg.Parts.PromptAwareText {
		// The Declare calls keep a new model's variables in the order of
		// eq. 9 computed whole (so its initial weights do not depend on
		// this split).
		r := t.AttentionDownsampleRate
		sa, ca := scope.At("self_attn"), scope.At("cross_attn")
		sam.DeclareLinear(sa.At("q_proj"), g, c, c, true)
		text := sam.ProjectKV(sa, x, x, c) // [1, K+1, C]
		sam.DeclareLinear(sa.At("out_proj"), g, c, c, true)
		sam.DeclareLayerNorm(scope.At("norm1"), g, c)
		sam.DeclareLinear(ca.At("q_proj"), g, c, c/r, true)
		img := sam.ProjectKV(ca, Add(keys, keyPE), keys, c/r) // [I, g*g, C/r]
		return TextContext{Text: &text, Image: &img}
	}
	// Literal eq. 9: SelfAttn([f_t, t_text]), then the cross-attention; t_p
	// would join the cross-attention's queries, which leaves the summary
	// token's row as it is.
	s = sam.LayerNorm(scope.At("norm1"), Add(s, sam.Attention(scope.At("self_attn"), s, x, x, t.NumHeads, 1)), sam.DecoderNormEps) // [1, 1, C]
	attn := sam.Attention(scope.At("cross_attn"), s, Add(keys, keyPE), keys, t.NumHeads, t.AttentionDownsampleRate)                // [I, 1, C]
	s = sam.LayerNorm(scope.At("norm2"), Add(sam.ToBatch(s, attn.Shape().Dim(0)), attn), sam.DecoderNormEps)
	return TextContext{Out: sam.MLP(scope.At("mlp"), s, c, c, 2, false)} // [I, 1, C]
}

// TextEnhancerInContext is TextEnhancer with its prompt-independent part
// already computed (NewTextContext).
//
//	sparse: [B, N, C] -> [B, 1, C]
func TextEnhancerInContext(scope *model.Scope, cfg Config, tc TextContext, sparse *Node) *Node {
	b := 1
	if sparse != nil {
		b = sparse.Shape().Dim(0)
	}
	if tc.Out != nil {
		return sam.ToBatch(tc.Out, max(b, tc.Out.Shape().Dim(0)))
	}
	g := tc.Text.K.Graph()
	t := cfg.SAM.MaskDecoder.Transformer
	c := cfg.SAM.PromptEncoder.EmbedDim
	s := InsertAxes(sam.Embedding(scope.At("summary_token"), g, 1, c), 0) // t_text [1, 1, C]
	// SelfAttn([f_t, t_text, t_p]), the summary token's row: it sees the prompt.
	parts := []sam.KV{*tc.Text}
	if sparse != nil {
		parts = append(parts, sam.ProjectKV(scope.At("self_attn"), sparse, sparse, c)) // [B, N, C]
	}
	attn := sam.AttentionKV(scope.At("self_attn"), s, parts, t.NumHeads) // [B, 1, C]
	s = sam.LayerNorm(scope.At("norm1"), Add(sam.ToBatch(s, attn.Shape().Dim(0)), attn), sam.DecoderNormEps)
	attn = sam.AttentionKV(scope.At("cross_attn"), s, []sam.KV{*tc.Image}, t.NumHeads) // [B, 1, C]
	s = sam.LayerNorm(scope.At("norm2"), Add(sam.ToBatch(s, attn.Shape().Dim(0)), attn), sam.DecoderNormEps)
	return sam.ToBatch(sam.MLP(scope.At("mlp"), s, c, c, 2, false), max(b, s.Shape().Dim(0))) // [B, 1, C]
}

// flatten turns a BCHW map into tokens.
//
//	[B, C, h, w] -> [B, h*w, C]
func flatten(x *Node) *Node {
	d := x.Shape().Dimensions
	return sam.SwapLastAxes(Reshape(x, d[0], d[1], d[2]*d[3]))
}
