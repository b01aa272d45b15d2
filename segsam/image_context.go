package segsam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
)

// ImageContext is what the decoders compute from the image embedding alone,
// the same for every prompt on that image: the dense positional encoding
// (the same for every image, even), Dec_saw's classification branch (the
// CO tokens attend to the image, never to a prompt: eqs. 7-8) and T2VSE's
// keys and values (TextContext). Inference computes it once per image and
// feeds it to every prompt's decoder pass (Model.Infer); training computes
// it inline (Forward).
type ImageContext struct {
	// PE is the dense positional encoding of the image grid [1, C, g, g].
	PE *Node
	// Presence are the CO tokens' class-presence logits [I, K], one row per
	// image of the embedding (nil without CO tokens).
	Presence *Node
	// Text is T2VSE's prompt-independent part (nil without T2VSE).
	Text *TextContext
}

// NewImageContext computes the image context of embeddings.
//
//	emb: [I, E, g, g] (E = cfg.EmbeddingChannels())
func NewImageContext(scope *model.Scope, cfg Config, emb *Node) ImageContext {
	return newImageContext(scope, cfg, emb, true)
}

// newImageContext is NewImageContext, without T2VSE's part unless withText
// (Forward leaves it to ForwardInContext, where a new model's T2VSE
// variables are created after the prompt encoder's).
func newImageContext(scope *model.Scope, cfg Config, emb *Node, withText bool) ImageContext {
	emb, _ = splitEmbedding(cfg, emb)                                                                      // [I, C, g, g]
	ctx := ImageContext{PE: sam.DensePositionalEncoding(scope.At("prompt_encoder"), cfg.SAM, emb.Graph())} // [1, C, g, g]
	if cfg.Parts.SemanticDecoder && cfg.Parts.COTokens {
		ctx.Presence = ClassPresence(scope.At("semantic_decoder"), cfg, emb, ctx.PE) // [I, K]
	}
	if cfg.Parts.TextEnhancer && withText {
		tc := NewTextContext(scope.At("text_enhancer"), cfg, emb, ctx.PE)
		ctx.Text = &tc
	}
	return ctx
}

// Nodes lists the context's tensors in a fixed order (the outputs of the
// graph that computes it, the inputs of the decoders' graph);
// ImageContextFromNodes takes them back.
func (c ImageContext) Nodes() []*Node {
	out := []*Node{c.PE}
	if c.Presence != nil {
		out = append(out, c.Presence)
	}
	if c.Text != nil {
		out = append(out, c.Text.Nodes()...)
	}
	return out
}

// ImageContextFromNodes rebuilds the ImageContext of a configuration from
// its Nodes, and returns how many it took.
func ImageContextFromNodes(cfg Config, nodes []*Node) (ImageContext, int) {
	ctx := ImageContext{PE: nodes[0]}
	n := 1
	if cfg.Parts.SemanticDecoder && cfg.Parts.COTokens {
		ctx.Presence, n = nodes[n], n+1
	}
	if cfg.Parts.TextEnhancer {
		tc, used := TextContextFromNodes(cfg, nodes[n:])
		ctx.Text, n = &tc, n+used
	}
	return ctx, n
}

// ClassPresence is Dec_saw's classification branch (eqs. 7-8): K
// classification-oriented tokens t_co, one per class, self-attend,
// cross-attend to the image embedding (no prompts), and a linear layer each
// gives the presence logit of its class (Ĉ_s before the sigmoid). Variables
// live under Dec_saw's scope.
//
//	image: [I, C, g, g], imagePE: [1, C, g, g] -> [I, K]
func ClassPresence(scope *model.Scope, cfg Config, image, imagePE *Node) *Node {
	g := image.Graph()
	t := cfg.SAM.MaskDecoder.Transformer
	c := cfg.SAM.PromptEncoder.EmbedDim
	k := cfg.NumClasses()
	n := image.Shape().Dim(0)
	co := InsertAxes(sam.Embedding(scope.At("co_tokens"), g, k, c), 0) // [1, K, C]
	co = sam.LayerNorm(scope.At("co_norm1"), Add(co, sam.Attention(scope.At("co_self_attn"), co, co, co, t.NumHeads, 1)), sam.DecoderNormEps)
	co = BroadcastToDims(co, n, k, c) // [I, K, C]
	keys, keyPE := flatten(image), flatten(imagePE)
	keyPE = BroadcastToDims(keyPE, n, keyPE.Shape().Dim(1), c)
	attn := sam.Attention(scope.At("co_cross_attn"), co, Add(keys, keyPE), keys, t.NumHeads, t.AttentionDownsampleRate)
	co = sam.LayerNorm(scope.At("co_norm2"), Add(co, attn), sam.DecoderNormEps) // t'_co [I, K, C]
	w := sam.Param(scope.At("co_heads"), g, "weight", k, c)                     // one linear layer per token
	bias := sam.Param(scope.At("co_heads"), g, "bias", k)
	return Add(Einsum("bkc,kc->bk", co, w), ExpandLeftToRank(bias, 2)) // [I, K]
}
