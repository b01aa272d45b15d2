package sam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// tinyViTPatchEmbed is TinyViT's PatchEmbed: Conv2d_BN(3, E/2) -> GELU ->
// Conv2d_BN(E/2, E). MobileSAM uses 3x3 stride-2 convolutions (input/4),
// LiteMedSAM 1x1 stride-1 (input size kept). Weights at scope/seq/{0,2}.
//
//	x: [B, S, S, 3] -> [B, P, P, E]
func tinyViTPatchEmbed(scope *model.Scope, t *TinyViTConfig, x *Node) *Node {
	k, stride, pad := 1, 1, 0
	if t.PatchKernel == 3 {
		k, stride, pad = 3, 2, 1
	}
	e := t.EmbedDims[0]
	seq := scope.At("seq")
	x = conv2dBN(seq.At("0"), x, e/2, k, stride, pad, false, true)   // [B, S', S', E/2], GELU
	return conv2dBN(seq.At("2"), x, e, k, stride, pad, false, false) // [B, P, P, E]
}
