package sam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// tinyViTBlock is TinyViTBlock: windowed attention with a residual (the
// grid is zero padded bottom/right to a multiple of the window before the
// attention's own LayerNorm, so padded tokens take part as LayerNorm
// biases; no windowing when the grid is the window), then a depthwise
// Conv2d_BN (local_conv) on the grid, then x + MLP(x) (LayerNorm inside
// the MLP).
//
//	x: [B, H, W, C] -> [B, H, W, C]
func tinyViTBlock(scope *model.Scope, t *TinyViTConfig, x *Node, heads, window, hidden int) *Node {
	g := x.Graph()
	dims := x.Shape().Dimensions
	b, h, w, c := dims[0], dims[1], dims[2], dims[3]

	padH, padW := (window-h%window)%window, (window-w%window)%window
	y := x
	if padH > 0 || padW > 0 {
		y = Pad(y, ScalarZero(g, y.DType()), PadAxis{}, PadAxis{End: padH}, PadAxis{End: padW}, PadAxis{})
	}
	hp, wp := h+padH, w+padW
	nh, nw := hp/window, wp/window
	y = Reshape(y, b, nh, window, nw, window, c) // [B, nh, ws, nw, ws, C]
	y = TransposeAllAxes(y, 0, 1, 3, 2, 4, 5)    // [B, nh, nw, ws, ws, C]
	y = Reshape(y, b*nh*nw, window*window, c)    // [B*nW, N, C]
	y = tinyViTAttention(scope.At("attn"), y, heads, window)
	y = Reshape(y, b, nh, nw, window, window, c) // [B, nh, nw, ws, ws, C]
	y = TransposeAllAxes(y, 0, 1, 3, 2, 4, 5)    // [B, nh, ws, nw, ws, C]
	y = Reshape(y, b, hp, wp, c)
	if padH > 0 || padW > 0 {
		y = Slice(y, AxisRange(), AxisRange(0, h), AxisRange(0, w), AxisRange())
	}
	x = Add(x, y)

	k := t.LocalConvSize
	x = conv2dBN(scope.At("local_conv"), x, c, k, 1, k/2, true, false) // [B, H, W, C]

	return Add(x, tinyViTMLP(scope.At("mlp"), x, hidden))
}

// tinyViTMLP is TinyViT's Mlp: LayerNorm -> fc1 -> GELU -> fc2.
//
//	x: [..., C] -> [..., C]
func tinyViTMLP(scope *model.Scope, x *Node, hidden int) *Node {
	c := x.Shape().Dim(-1)
	x = tinyViTLayerNorm(scope.At("norm"), x)
	x = tinyViTLinear(scope.At("fc1"), x, hidden, true)
	return tinyViTLinear(scope.At("fc2"), x, c, false)
}
