package sam

import (
	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/nn"
)

// TinyViTEncoder is MobileSAM's / LiteMedSAM's TinyViT image encoder: patch
// embedding, a stage of MBConv blocks, stages of TinyViT blocks, a
// PatchMerging after every stage but the last, and SAM's neck. Variables
// live under scope "image_encoder" at the official state_dict paths
// (layers.{i}.blocks.{j}, layers.{i}.downsample, neck). The ImageNet head
// of MobileSAM's checkpoint (norm_head, head) is not part of it.
//
//	image: [B, 3, S, S] -> embedding [B, out_chans, g, g]
func TinyViTEncoder(scope *model.Scope, cfg Config, image *Node) *Node {
	t := cfg.TinyViT
	x := TransposeAllAxes(image, 0, 2, 3, 1)             // [B, S, S, 3]
	x = tinyViTPatchEmbed(scope.At("patch_embed"), t, x) // [B, P, P, E0]
	layers := scope.At("layers")
	for i := range t.EmbedDims {
		layer := layers.At("%d", i)
		blocks := layer.At("blocks")
		for j := range t.Depths[i] {
			if i == 0 {
				x = mbConv(blocks.At("%d", j), t, x)
			} else {
				x = tinyViTBlock(blocks.At("%d", j), t, x, t.NumHeads[i], t.WindowSizes[i], t.mlpHidden(i))
			}
		}
		if i < len(t.EmbedDims)-1 {
			x = patchMerging(layer.At("downsample"), x, t.EmbedDims[i+1]) // [B, H', W', E_{i+1}]
		}
	}
	return tinyViTNeck(scope.At("neck"), cfg, x) // [B, out, g, g]
}

// tinyViTNeck is SAM's neck (Conv1x1 -> LayerNorm2d -> Conv3x3 -> LayerNorm2d,
// no biases, eps 1e-6) as in TinyViT: the 3x3 convolution gathers its taps
// with shiftedViews (block copies) and runs as one matrix product.
//
//	x: [B, g, g, C] -> [B, out, g, g]
func tinyViTNeck(scope *model.Scope, cfg Config, x *Node) *Node {
	g := x.Graph()
	out := cfg.ImageEncoder.OutChans
	dims := x.Shape().Dimensions
	b, h, w := dims[0], dims[1], dims[2]
	w0 := Param(scope.At("0"), g, "weight", out, dims[3], 1, 1)
	x = nn.Dense(x, Reshape(w0, out, dims[3]), nil, compute.DenseLayoutOutputsInput) // [B, g, g, out]
	x = LayerNorm(scope.At("1"), x, layerNorm2dEps)
	w2 := Param(scope.At("2"), g, "weight", out, out, 3, 3)                                 // [out, in, kh, kw]
	cols := Stack(shiftedViews(x, 3, 1, 1, scope.IsTraining(g)), 3)                         // [B, g, g, 9, in]
	kern := Reshape(TransposeAllAxes(w2, 0, 2, 3, 1), out, 9*out)                           // [out, kh*kw*in]
	x = nn.Dense(Reshape(cols, b, h, w, 9*out), kern, nil, compute.DenseLayoutOutputsInput) // [B, g, g, out]
	x = LayerNorm(scope.At("3"), x, layerNorm2dEps)
	return TransposeAllAxes(x, 0, 3, 1, 2)
}
