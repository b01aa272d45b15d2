package segsam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
)

// ImageContext is what the decoders compute from the image embedding alone,
// the same for every prompt on that image: the dense positional encoding
// (the same for every image, even) and Dec_saw's classification branch (the
// CO tokens attend to the image, never to a prompt: eqs. 7-8). Inference
// computes it once per image and feeds it to every prompt's decoder pass
// (Model.Infer); training computes it inline (Forward).
type ImageContext struct {
	// PE is the dense positional encoding of the image grid [1, C, g, g].
	PE *Node
	// Presence are the CO tokens' class-presence logits [I, K], one row per
	// image of the embedding (nil without CO tokens).
	Presence *Node
}

// NewImageContext computes the image context of embeddings.
//
//	emb: [I, C, g, g]
func NewImageContext(scope *model.Scope, cfg Config, emb *Node) ImageContext {
	ctx := ImageContext{PE: sam.DensePositionalEncoding(scope.At("prompt_encoder"), cfg.SAM, emb.Graph())} // [1, C, g, g]
	if cfg.Parts.SemanticDecoder && cfg.Parts.COTokens {
		ctx.Presence = ClassPresence(scope.At("semantic_decoder"), cfg, emb, ctx.PE) // [I, K]
	}
	return ctx
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
