package segsam

import (
	"fmt"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
)

// Pixel skip (segsam's addition, not in the paper; Parts.PixelSkip).
//
// SAM's decoders predict masks at 4g×4g (64×64 for a 256 input) by dotting
// each mask token's hypernetwork vector with image features up-scaled from
// the g×g embedding by two non-overlapping 2×2 transposed convolutions:
// every 4×4 block of the mask is a function of one token alone. A small
// model trained from scratch packs little sub-token detail into a token, so
// its mask edges are blocky at the scale of a patch (16 pixels). The pixel
// skip gives both decoders the image's own edges at the mask's resolution,
// in the manner of HQ-SAM's early-feature fusion: a small convolutional stem
// on the encoder's input (3×3 stride 2 → 3×3 stride 2 → 3×3, GELU after
// each; scope image_encoder/pixel_skip) gives features [I, 4g, 4g, P], and
// each decoder adds a 1×1 projection of them (scope <decoder>/pixel_skip,
// zero-initialised: a trained model that gains the skip predicts exactly as
// before until it trains) to its up-scaled features, i.e. adds
// hyper · proj(f) to its mask logits.
//
// The stem is part of the image encoder (it trains with it and is frozen
// with it). Its output travels inside the image embedding, space-to-depth:
// [I, 4g, 4g, P] becomes 16·P more channels of [I, C + 16·P, g, g], so that
// every holder of embeddings (the predictor's cache, frozen-encoder
// training's cache, click rounds, the server) carries it unchanged;
// splitEmbedding takes it back out.

// pixelSkipChannels is P, the stem's output width.
const pixelSkipChannels = 16

// pixelSkipStride is the stem's total stride: the input is 16× the token
// grid (patch 16) and the masks 4× the grid.
const pixelSkipStride = 4

// EmbeddingChannels is the channel count of the model's image embedding:
// the prompt encoder's width C, plus the pixel skip's packed features.
func (c Config) EmbeddingChannels() int {
	ch := c.SAM.PromptEncoder.EmbedDim
	if c.Parts.PixelSkip {
		ch += pixelSkipStride * pixelSkipStride * pixelSkipChannels
	}
	return ch
}

// validatePixelSkip checks that the configuration's geometry allows the
// stem: input = 4 × (4g).
func (c Config) validatePixelSkip() error {
	s, grid := c.SAM.ImageEncoder.ImgSize, c.SAM.TokenGrid()
	if s != pixelSkipStride*4*grid {
		return fmt.Errorf("pixel_skip needs an input 16× the token grid (patch 16), got input %d and grid %d", s, grid)
	}
	return nil
}

// EncodeImage is the image encoder of a SEG-SAM model: SAM's (scope
// image_encoder), with the pixel skip's features packed into the embedding
// when the model has it.
//
//	image: [I, 3, S, S] -> [I, EmbeddingChannels, g, g]
func EncodeImage(scope *model.Scope, cfg Config, image *Node) *Node {
	emb := sam.ImageEncoder(scope.At("image_encoder"), cfg.SAM, image) // [I, C, g, g]
	if !cfg.Parts.PixelSkip {
		return emb
	}
	f := PixelFeatures(scope.At("image_encoder").At("pixel_skip"), image) // [I, 4g, 4g, P]
	return Concatenate([]*Node{emb, packPixels(f)}, 1)                    // [I, C + 16P, g, g]
}

// PixelFeatures is the pixel skip's stem.
//
//	image: [I, 3, S, S] -> [I, S/4, S/4, P]
func PixelFeatures(scope *model.Scope, image *Node) *Node {
	x := TransposeAllDims(image, 0, 2, 3, 1)                                        // [I, S, S, 3]
	x = sam.GELU(sam.Conv2d(scope.At("0"), x, pixelSkipChannels, 3, 2, 1, true))    // [I, S/2, S/2, P]
	x = sam.GELU(sam.Conv2d(scope.At("1"), x, 2*pixelSkipChannels, 3, 2, 1, true))  // [I, S/4, S/4, 2P]
	return sam.GELU(sam.Conv2d(scope.At("2"), x, pixelSkipChannels, 3, 1, 1, true)) // [I, S/4, S/4, P]
}

// packPixels is space-to-depth: [I, 4g, 4g, P] -> [I, 16P, g, g].
func packPixels(f *Node) *Node {
	d := f.Shape().Dimensions
	i, grid, p := d[0], d[1]/pixelSkipStride, d[3]
	const r = pixelSkipStride
	x := Reshape(f, i, grid, r, grid, r, p)   // [I, gy, ry, gx, rx, P]
	x = TransposeAllDims(x, 0, 2, 4, 5, 1, 3) // [I, ry, rx, P, gy, gx]
	return Reshape(x, i, r*r*p, grid, grid)
}

// unpackPixels is packPixels' inverse: [I, 16P, g, g] -> [I, 4g, 4g, P].
func unpackPixels(x *Node) *Node {
	d := x.Shape().Dimensions
	i, grid := d[0], d[2]
	const r = pixelSkipStride
	p := d[1] / (r * r)
	x = Reshape(x, i, r, r, p, grid, grid)    // [I, ry, rx, P, gy, gx]
	x = TransposeAllDims(x, 0, 4, 1, 5, 2, 3) // [I, gy, ry, gx, rx, P]
	return Reshape(x, i, grid*r, grid*r, p)
}

// splitEmbedding separates a SEG-SAM embedding into SAM's part and the
// pixel skip's features (nil without the skip).
//
//	emb: [I, EmbeddingChannels, g, g] -> [I, C, g, g], [I, 4g, 4g, P]
func splitEmbedding(cfg Config, emb *Node) (image, pixels *Node) {
	if !cfg.Parts.PixelSkip {
		return emb, nil
	}
	c := cfg.SAM.PromptEncoder.EmbedDim
	image = Slice(emb, AxisRange(), AxisRange(0, c))
	return image, unpackPixels(Slice(emb, AxisRange(), AxisRange(c, emb.Shape().Dim(1))))
}

// pixelSkipLogits is one decoder's share of the skip: its hypernetwork
// vectors dotted with its projection of the stem's features.
//
//	hyper: [B, M, C/8] or [B, C/8], pixels: [I, 4g, 4g, P] (I = B or 1)
//	-> [B, M, 4g, 4g] or [B, 4g, 4g]
func pixelSkipLogits(scope *model.Scope, hyper, pixels *Node) *Node {
	g := hyper.Graph()
	c8, p := hyper.Shape().Dim(-1), pixels.Shape().Dim(-1)
	w := sam.ZeroParam(scope.At("pixel_skip"), g, "weight", c8, p) // [C/8, P], starts at 0
	bias := sam.Param(scope.At("pixel_skip"), g, "bias", c8)       // [C/8], starts at 0
	proj := Add(Einsum("ihwp,cp->ihwc", pixels, w), ExpandLeftToRank(bias, 4))
	proj = sam.ToBatch(proj, hyper.Shape().Dim(0)) // [B, 4g, 4g, C/8]
	if hyper.Rank() == 2 {
		return Einsum("bc,bhwc->bhw", hyper, proj)
	}
	return Einsum("bmc,bhwc->bmhw", hyper, proj)
}
