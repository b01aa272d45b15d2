package sam

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// tinyViTAttention is TinyViT's Attention on windows of w x w tokens:
// LayerNorm (inside the attention), qkv viewed per head as
// (key_dim, key_dim, d) with key_dim = d = C/heads, attn = (q kᵀ) *
// key_dim^-0.5 + attention_biases[:, idx], softmax, output projection.
//
//	x: [Bw, N, C] with N = w*w -> [Bw, N, C]
func tinyViTAttention(scope *model.Scope, x *Node, heads, window int) *Node {
	g := x.Graph()
	dims := x.Shape().Dimensions
	bw, n, c := dims[0], dims[1], dims[2]
	kd := c / heads

	x = LayerNorm(scope.At("norm"), x, tinyViTNormEps)
	qkv := Linear(scope.At("qkv"), x, 3*c, true) // [Bw, N, 3C]
	qkv = Reshape(qkv, bw, n, heads, 3*kd)       // per head (key_dim, key_dim, d)
	q := Slice(qkv, AxisRange(), AxisRange(), AxisRange(), AxisRange(0, kd))
	k := Slice(qkv, AxisRange(), AxisRange(), AxisRange(), AxisRange(kd, 2*kd))
	v := Slice(qkv, AxisRange(), AxisRange(), AxisRange(), AxisRange(2*kd, 3*kd))

	attn := Einsum("bqhd,bkhd->bhqk", q, k) // [Bw, heads, N, N]
	attn = MulScalar(attn, 1/math.Sqrt(float64(kd)))
	attn = Add(attn, InsertAxes(attentionBiases(scope, g, heads, window), 0))
	attn = Softmax(attn, -1)
	out := Einsum("bhqk,bkhd->bqhd", attn, v) // [Bw, N, heads, d]
	out = Reshape(out, bw, n, c)
	return Linear(scope.At("proj"), out, c, true)
}

// attentionBiases expands the learned table attention_biases [heads, w*w]
// to the per-pair biases [heads, N, N] (attention_biases[:, idx]).
func attentionBiases(scope *model.Scope, g *Graph, heads, window int) *Node {
	n := window * window
	table := Param(scope, g, "attention_biases", heads, n) // [heads, w*w]
	idx := tensors.FromFlatDataAndDimensions(attentionBiasIndex(window), n*n, 1)
	ab := Gather(TransposeAllAxes(table, 1, 0), ConstTensor(g, idx)) // [N*N, heads]
	ab = Reshape(ab, n, n, heads)
	return TransposeAllAxes(ab, 2, 0, 1) // [heads, N, N]
}
