package sam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// patchMerging is TinyViT's PatchMerging between stages: 1x1 -> GELU ->
// depthwise 3x3 (stride 2, or 1 when out_dim is 320, 448 or 576) -> GELU ->
// 1x1, no activation after.
//
//	x: [B, H, W, C] -> [B, H', W', out]
func patchMerging(scope *model.Scope, x *Node, out int) *Node {
	y := conv2dBN(scope.At("conv1"), x, out, 1, 1, 0, false, true)              // [B, H, W, out]
	y = conv2dBN(scope.At("conv2"), y, out, 3, mergeStride(out), 1, true, true) // [B, H', W', out]
	return conv2dBN(scope.At("conv3"), y, out, 1, 1, 0, false, false)
}
