package sam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// mbConv is TinyViT's MBConv block (stage 0): 1x1 expand -> GELU ->
// depthwise 3x3 -> GELU -> 1x1 project, plus the shortcut, then GELU.
//
//	x: [B, H, W, C] -> [B, H, W, C]
func mbConv(scope *model.Scope, t *TinyViTConfig, x *Node) *Node {
	c := x.Shape().Dim(3)
	hidden := t.mbConvHidden()
	y := conv2dBN(scope.At("conv1"), x, hidden, 1, 1, 0, false, true) // [B, H, W, hidden]
	y = conv2dBN(scope.At("conv2"), y, hidden, 3, 1, 1, true, true)   // depthwise
	y = conv2dBN(scope.At("conv3"), y, c, 1, 1, 0, false, false)      // [B, H, W, C]
	return geluFused(Add(y, x))
}
