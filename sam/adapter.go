package sam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// adapter is SAM-Med2D's Adapter_Layer: a channel gate (global average pool,
// Linear C→C/4, ReLU, Linear C/4→C, Sigmoid) multiplied into the input, a
// spatial branch (Conv3x3 s2 p1, ReLU, ConvTranspose4x4 s2 p1, ReLU) on the
// gated input added to the un-gated input, then LayerNorm (eps 1e-5).
//
//	x: [B, H, W, C] -> [B, H, W, C]
func adapter(scope *model.Scope, cfg Config, x *Node) *Node {
	c := x.Shape().Dim(-1)
	hidden := int(float64(c) * cfg.ImageEncoder.Adapter.MLPRatio)
	pooled := ReduceMean(x, 1, 2)                                                // [B, C]
	gate := ReLU(Linear(scope.At("channel").At("0"), pooled, hidden, false))     // [B, C/4]
	gate = Sigmoid(Linear(scope.At("channel").At("2"), gate, c, false))          // [B, C]
	gated := Mul(x, InsertAxes(gate, 1, 1))                                      // [B, H, W, C]
	s := ReLU(Conv2d(scope.At("spatial").At("0"), gated, c, 3, 2, 1, false))     // [B, H/2, W/2, C]
	s = ReLU(convTranspose2d(scope.At("spatial").At("2"), s, c, 4, 2, 1, false)) // [B, H, W, C]
	return LayerNorm(scope.At("norm"), Add(x, s), adapterNormEps)
}
