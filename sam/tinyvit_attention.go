package sam

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/nn"
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

	x = tinyViTLayerNorm(scope.At("norm"), x)
	// qkv's output is per head (key_dim, key_dim, d): q, k and v are read
	// through row blocks of its weight [heads*3*kd, C] (cheap) instead of
	// slicing the [Bw, N, 3C] activations.
	w := Param(scope.At("qkv"), g, "weight", 3*c, c) // [3C, C]
	bias := Param(scope.At("qkv"), g, "bias", 3*c)   // [3C]
	w = Reshape(w, heads, 3, kd, c)
	bias = Reshape(bias, heads, 3, kd)
	part := func(i int) *Node {
		wi := Reshape(Slice(w, AxisRange(), AxisElem(i), AxisRange(), AxisRange()), heads*kd, c) // [heads*kd, C]
		bi := Reshape(Slice(bias, AxisRange(), AxisElem(i), AxisRange()), heads*kd)
		return Reshape(nn.Dense(x, wi, bi, compute.DenseLayoutOutputsInput), bw, n, heads, kd) // [Bw, N, heads, kd]
	}
	q, k, v := part(0), part(1), part(2)

	attn := Einsum("bqhd,bkhd->bhqk", q, k) // [Bw, heads, N, N]
	attn = MulScalar(attn, 1/math.Sqrt(float64(kd)))
	attn = Add(attn, InsertAxes(attentionBiases(scope, g, heads, window), 0))
	attn = Softmax(attn, -1)
	out := Einsum("bhqk,bkhd->bqhd", attn, v) // [Bw, N, heads, d]
	out = Reshape(out, bw, n, c)
	return tinyViTLinear(scope.At("proj"), out, c, false)
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
