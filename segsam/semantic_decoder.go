package segsam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
)

// SemanticOutput is what the semantic-aware decoder predicts.
type SemanticOutput struct {
	Mask        *Node // [B, 4g, 4g] semantic mask logits of the prompted object (M̂_s)
	ClassLogits *Node // [B, K] class logits of the prompted object
	Presence    *Node // [B, K] presence logits of every class (Ĉ_s before the sigmoid), or nil
	ClassMasks  *Node // [B, K, 4g, 4g] full-image class masks (SAWD_sem only), or nil
	Hyper       *Node // [B, C/8] t'_so's hypernetwork vector, dotted with the up-scaled features to give Mask
}

// SemanticDecoder is Dec_saw, the semantic-aware decoder of §3.2.1, with its
// own weights in SAM's decoder design (scope "semantic_decoder").
//
// Classification branch (eqs. 7-8): the CO tokens' presence logits
// (ClassPresence, computed once per image: presence); an MLP of the K
// sigmoid scores is added to the segmentation token.
//
// Mask branch (eqs. 5-6): the segmentation-oriented token t_so and the prompt
// tokens t_p (not Dec_sag's T2VSE-enhanced ones) go through a two-way
// transformer with the image embedding; t'_so gives the mask through a
// hypernetwork MLP dotted with the up-scaled image features, and the class
// logits through a linear head.
//
//	image: [B, C, g, g], imagePE: [1, C, g, g], sparse: [B, N, C] or nil, dense: [B, C, g, g],
//	presence: [B, K] (nil without CO tokens)
func SemanticDecoder(scope *model.Scope, cfg Config, image, imagePE, sparse, dense, presence *Node) SemanticOutput {
	g := image.Graph()
	t := cfg.SAM.MaskDecoder.Transformer
	c := cfg.SAM.PromptEncoder.EmbedDim
	k := cfg.NumClasses()
	grid := cfg.SAM.TokenGrid()
	b := max(dense.Shape().Dim(0), image.Shape().Dim(0)) // objects (image and dense may be shared: batch 1)
	if sparse != nil {
		b = max(b, sparse.Shape().Dim(0))
	}
	var out SemanticOutput

	so := sam.Embedding(scope.At("so_token"), g, 1, c) // [1, C]
	so = BroadcastToDims(InsertAxes(so, 0), b, 1, c)   // [B, 1, C]
	if cfg.Parts.COTokens {
		if presence == nil {
			presence = sam.ToBatch(ClassPresence(scope, cfg, image, imagePE), b)
		}
		out.Presence = presence // [B, K]
		prior := sam.MLP(scope.At("presence_mlp"), Sigmoid(out.Presence), c, c, 2, false)
		so = Add(so, InsertAxes(prior, 1))
	}
	tokens := []*Node{so}
	if cfg.Parts.FullImageSemantic {
		cls := sam.Embedding(scope.At("class_mask_tokens"), g, k, c)
		tokens = append(tokens, BroadcastToDims(InsertAxes(cls, 0), b, k, c))
	}
	if sparse != nil {
		tokens = append(tokens, sparse)
	}
	n := max(image.Shape().Dim(0), dense.Shape().Dim(0))
	src := Add(sam.ToBatch(image, n), sam.ToBatch(dense, n)) // [B|1, C, g, g]
	hs, keys := sam.TwoWayTransformer(scope.At("transformer"), t, src, imagePE, Concatenate(tokens, 1))
	up := sam.Upscale(scope.At("output_upscaling"), Reshape(keys, b, grid, grid, c), c) // [B, 4g, 4g, C/8]
	soOut := Squeeze(Slice(hs, AxisRange(), AxisElem(0), AxisRange()), 1)               // t'_so [B, C]
	hyper := sam.MLP(scope.At("so_hypernetwork"), soOut, c, c/8, 3, false)              // [B, C/8]
	out.Mask = Einsum("bc,bhwc->bhw", hyper, up)
	out.Hyper = hyper
	out.ClassLogits = sam.Linear(scope.At("class_head"), soOut, k, true)
	if cfg.Parts.FullImageSemantic {
		clsOut := Slice(hs, AxisRange(), AxisRange(1, 1+k), AxisRange())            // [B, K, C]
		hyperK := sam.MLP(scope.At("class_hypernetwork"), clsOut, c, c/8, 3, false) // [B, K, C/8]
		out.ClassMasks = Einsum("bkc,bhwc->bkhw", hyperK, up)
	}
	return out
}
