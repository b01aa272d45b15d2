package sam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// MaskDecoderOutput holds what MaskDecoder computes for every mask token;
// the predictor picks the multimask subset.
type MaskDecoderOutput struct {
	Masks   *Node // [B, M, 4g, 4g] low-resolution mask logits, M = mask tokens
	IoUPred *Node // [B, M] predicted IoU of each mask
	// Tokens is the transformer's token output [B, 1+M+E+N, C] and Image its
	// image output [B, g*g, C] (kept for inspection and for SEG-SAM).
	Tokens, Image *Node
	// Extra is the output of the extra tokens [B, E, C] (nil without them).
	Extra *Node
	// Hyper are the mask tokens' hypernetwork outputs [B, M, C/8], the
	// vectors dotted with the up-scaled image features to give Masks.
	Hyper *Node
}

// MaskDecoder is SAM's MaskDecoder, the paper's semantic-agnostic decoder
// Dec_sag: output tokens (IoU token, mask tokens) plus prompt tokens go
// through the two-way transformer with the image embedding (+ dense prompt
// embedding); the mask tokens drive hypernetwork MLPs whose outputs multiply
// the up-scaled image features. Variables live under scope "mask_decoder".
//
//	image: [1 or B, C, g, g], imagePE: [1, C, g, g], sparse: [B, N, C] or nil,
//	dense: [B, C, g, g]
func MaskDecoder(scope *model.Scope, cfg Config, image, imagePE, sparse, dense *Node) MaskDecoderOutput {
	return MaskDecoderWithTokens(scope, cfg, image, imagePE, sparse, dense, nil)
}

// MaskDecoderWithTokens is MaskDecoder with extra learned tokens [B, E, C]
// placed after the mask tokens (SEG-SAM's Baseline_sem class token); their
// transformer outputs are returned in Extra.
func MaskDecoderWithTokens(scope *model.Scope, cfg Config, image, imagePE, sparse, dense, extra *Node) MaskDecoderOutput {
	g := image.Graph()
	d := cfg.MaskDecoder
	c := d.TransformerDim
	m := cfg.NumMaskTokens()
	// Objects: the prompts' batch, the mask prompt's or the image's.
	b := max(dense.Shape().Dim(0), image.Shape().Dim(0))
	if sparse != nil {
		b = max(b, sparse.Shape().Dim(0))
	}

	iouToken := Embedding(scope.At("iou_token"), g, 1, c)     // [1, C]
	maskTokens := Embedding(scope.At("mask_tokens"), g, m, c) // [M, C]
	out := Concatenate([]*Node{iouToken, maskTokens}, 0)      // [1+M, C]
	tokens := BroadcastToDims(InsertAxes(out, 0), b, 1+m, c)  // [B, 1+M, C]
	e := 0
	if extra != nil {
		e = extra.Shape().Dim(1)
		tokens = Concatenate([]*Node{tokens, extra}, 1) // [B, 1+M+E, C]
	}
	if sparse != nil {
		tokens = Concatenate([]*Node{tokens, sparse}, 1) // [B, 1+M+N, C]
	}
	// image + dense: batch 1 while both are the same for every object (no
	// mask prompt), so the first block projects it once.
	n := max(image.Shape().Dim(0), dense.Shape().Dim(0))
	src := Add(ToBatch(image, n), ToBatch(dense, n)) // [B|1, C, g, g]
	hs, keys := TwoWayTransformer(scope.At("transformer"), d.Transformer, src, imagePE, tokens)
	out2 := decodeMasks(scope, cfg, hs, keys, 1, m)
	if e > 0 {
		out2.Extra = Slice(hs, AxisRange(), AxisRange(1+m, 1+m+e), AxisRange())
	}
	return out2
}

// decodeMasks turns transformer outputs into masks: the image tokens are
// up-scaled 4× and each mask token's hypernetwork MLP output is dotted with
// them; the token at iouIndex feeds the IoU head. maskStart..maskStart+m are
// the mask tokens.
func decodeMasks(scope *model.Scope, cfg Config, hs, keys *Node, maskStart, m int) MaskDecoderOutput {
	d := cfg.MaskDecoder
	c := d.TransformerDim
	grid := cfg.TokenGrid()
	b := hs.Shape().Dim(0)

	iouTokenOut := Squeeze(Slice(hs, AxisRange(), AxisElem(0), AxisRange()), 1)             // [B, C]
	maskTokensOut := Slice(hs, AxisRange(), AxisRange(maskStart, maskStart+m), AxisRange()) // [B, M, C]

	img := Reshape(keys, b, grid, grid, c)              // [B, g, g, C]
	up := Upscale(scope.At("output_upscaling"), img, c) // [B, 4g, 4g, C/8]

	hyper := make([]*Node, m)
	for i := 0; i < m; i++ {
		tok := Squeeze(Slice(maskTokensOut, AxisRange(), AxisElem(i), AxisRange()), 1) // [B, C]
		hyper[i] = MLP(scope.At("output_hypernetworks_mlps").At("%d", i), tok, c, c/8, 3, false)
	}
	hyperIn := Stack(hyper, 1)                                                                             // [B, M, C/8]
	masks := Einsum("bmc,bhwc->bmhw", hyperIn, up)                                                         // [B, M, 4g, 4g]
	iou := MLP(scope.At("iou_prediction_head"), iouTokenOut, d.IoUHeadHiddenDim, m, d.IoUHeadDepth, false) // [B, M]
	return MaskDecoderOutput{Masks: masks, IoUPred: iou, Tokens: hs, Image: keys, Hyper: hyperIn}
}

// Upscale is output_upscaling: ConvTranspose2x2 s2 -> LayerNorm2d -> GELU ->
// ConvTranspose2x2 s2 -> GELU.
//
//	x: [B, g, g, C] -> [B, 4g, 4g, C/8]
func Upscale(scope *model.Scope, x *Node, c int) *Node {
	x = convTranspose2d(scope.At("0"), x, c/4, 2, 2, 0, true)
	x = GELU(LayerNorm(scope.At("1"), x, layerNorm2dEps))
	return GELU(convTranspose2d(scope.At("3"), x, c/8, 2, 2, 0, true))
}
