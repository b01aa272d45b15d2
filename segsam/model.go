package segsam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
)

// Outputs are the forward pass's predictions for B prompted objects.
type Outputs struct {
	// Binary is Dec_sag's output: low-res mask logits [B, M, 4g, 4g] and
	// predicted IoU [B, M] for its M mask tokens.
	Binary, IoU *Node
	// Semantic is Dec_saw's output (zero without the semantic decoder).
	Semantic SemanticOutput
	// ClassLogits [B, K]: from Dec_saw's t'_so, or from Baseline_sem's class
	// token in Dec_sag; nil for vanilla SAM.
	ClassLogits *Node
}

// Forward runs SEG-SAM's decoders on image embeddings and prompts: the prompt
// encoder (Enc_pmt), T2VSE (its token appended to Dec_sag's prompts only),
// Dec_sag and Dec_saw. The image encoder is not part of it: embeddings are
// computed (and, when it is frozen, cached) separately.
//
//	emb: [B, E, g, g] (or [1, E, g, g] shared; E = cfg.EmbeddingChannels(),
//	C without the pixel skip), coords: [B, N, 2], labels: [B, N],
//	mask: optional low-res mask prompt [B, 1, 4g, 4g] (nil: none)
func Forward(scope *model.Scope, cfg Config, emb, coords, labels, mask *Node) Outputs {
	return ForwardInContext(scope, cfg, emb, newImageContext(scope, cfg, emb, false), coords, labels, mask)
}

// ForwardInContext is Forward with the image context already computed
// (NewImageContext of emb: one per image, shared by all its prompts; a
// context without T2VSE's part has it computed here).
//
//	emb: [B, E, g, g] or [1, E, g, g]; ctx.Presence: [B, K] or [1, K]
func ForwardInContext(scope *model.Scope, cfg Config, emb *Node, ctx ImageContext, coords, labels, mask *Node) Outputs {
	g := emb.Graph()
	emb, pixels := splitEmbedding(cfg, emb) // [B|1, C, g, g], [B|1, 4g, 4g, P] or nil
	b := coords.Shape().Dim(0)
	pe := scope.At("prompt_encoder")
	sparse := sam.SparsePromptEmbeddings(pe, cfg.SAM, coords, labels) // t_p [B, N, C]
	// The image side stays batch 1 for the prompts of one image (emb [1,
	// C, g, g], no mask prompt) until it meets the prompts: the decoders
	// broadcast it there, so what depends on the image alone is computed
	// once.
	denseBatch := 1
	if mask != nil {
		denseBatch = b
	}
	dense := sam.DensePromptEmbeddings(pe, cfg.SAM, g, mask, denseBatch) // [B|1, C, g, g]
	imagePE := ctx.PE                                                    // [1, C, g, g]
	image := emb                                                         // [B|1, C, g, g]
	sagSparse := sparse
	if cfg.Parts.TextEnhancer {
		tc := ctx.Text
		if tc == nil {
			c := NewTextContext(scope.At("text_enhancer"), cfg, image, imagePE)
			tc = &c
		}
		text := TextEnhancerInContext(scope.At("text_enhancer"), cfg, *tc, sparse) // MLP(t'_text) [B, 1, C]
		sagSparse = Concatenate([]*Node{sparse, text}, 1)                          // t'_p
	}
	var extra *Node
	if cfg.Parts.ClassToken {
		c := cfg.SAM.PromptEncoder.EmbedDim
		tok := sam.Embedding(scope.At("mask_decoder").At("class_token"), g, 1, c)
		extra = BroadcastToDims(InsertAxes(tok, 0), b, 1, c)
	}
	dec := sam.MaskDecoderWithTokens(scope.At("mask_decoder"), cfg.SAM, image, imagePE, sagSparse, dense, extra)
	out := Outputs{Binary: dec.Masks, IoU: dec.IoUPred}
	if pixels != nil {
		out.Binary = Add(out.Binary, pixelSkipLogits(scope.At("mask_decoder"), dec.Hyper, pixels)) // [B, M, 4g, 4g]
	}
	var prior *Node
	if cfg.Parts.BoxPrior {
		r := dec.Masks.Shape().Dim(-1)
		prior = BoxPriorMap(coords, labels, cfg.SAM.ImageEncoder.ImgSize, r) // [B, 4g, 4g]
		out.Binary = addBoxPrior(scope.At("mask_decoder"), out.Binary, prior)
	}
	if cfg.Parts.ClassToken {
		tok := Squeeze(dec.Extra, 1) // [B, C]
		out.ClassLogits = sam.Linear(scope.At("mask_decoder").At("class_head"), tok, cfg.NumClasses(), true)
	}
	if cfg.Parts.SemanticDecoder {
		var presence *Node
		if ctx.Presence != nil {
			presence = sam.ToBatch(ctx.Presence, b) // [B, K]
		}
		out.Semantic = SemanticDecoder(scope.At("semantic_decoder"), cfg, image, imagePE, sparse, dense, presence)
		if pixels != nil {
			out.Semantic.Mask = Add(out.Semantic.Mask, pixelSkipLogits(scope.At("semantic_decoder"), out.Semantic.Hyper, pixels)) // [B, 4g, 4g]
		}
		if prior != nil {
			out.Semantic.Mask = addBoxPrior(scope.At("semantic_decoder"), out.Semantic.Mask, prior)
		}
		out.ClassLogits = out.Semantic.ClassLogits
	}
	return out
}
