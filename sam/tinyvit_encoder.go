package sam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
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
				x = tinyViTBlock(blocks.At("%d", j), t, x, t.NumHeads[i], t.WindowSizes[i])
			}
		}
		if i < len(t.EmbedDims)-1 {
			x = patchMerging(layer.At("downsample"), x, t.EmbedDims[i+1]) // [B, H', W', E_{i+1}]
		}
	}
	return neck(scope.At("neck"), cfg, x) // [B, out, g, g]
}
