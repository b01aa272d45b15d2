package sam

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// Attention is the mask decoder's Attention: q/k/v projections to
// dim/downsample, multi-head scaled dot product, output projection.
//
//	q: [B, Nq, C], k, v: [B, Nk, C] -> [B, Nq, C]
func Attention(scope *model.Scope, q, k, v *Node, heads, downsample int) *Node {
	c := q.Shape().Dim(-1)
	internal := c / downsample
	q = Linear(scope.At("q_proj"), q, internal, true)
	k = Linear(scope.At("k_proj"), k, internal, true)
	v = Linear(scope.At("v_proj"), v, internal, true)
	split := func(x *Node) *Node { // [B, N, I] -> [B, heads, N, I/heads]
		d := x.Shape().Dimensions
		return TransposeAllAxes(Reshape(x, d[0], d[1], heads, internal/heads), 0, 2, 1, 3)
	}
	qh, kh, vh := split(q), split(k), split(v)
	attn := Einsum("bhqd,bhkd->bhqk", qh, kh)
	attn = Softmax(MulScalar(attn, 1/math.Sqrt(float64(internal/heads))), -1)
	out := Einsum("bhqk,bhkd->bhqd", attn, vh) // [B, heads, Nq, I/heads]
	out = TransposeAllAxes(out, 0, 2, 1, 3)    // [B, Nq, heads, I/heads]
	out = Reshape(out, out.Shape().Dim(0), out.Shape().Dim(1), internal)
	return Linear(scope.At("out_proj"), out, c, true)
}

// TwoWayTransformer is SAM's two-way transformer: tokens and image
// embedding attend to each other in Depth blocks, then a final
// token-to-image attention.
//
//	image, imagePE: [B, C, g, g], tokens: [B, N, C] -> tokens [B, N, C], image [B, g*g, C]
func TwoWayTransformer(scope *model.Scope, t TransformerConfig, image, imagePE, tokens *Node) (queries, keys *Node) {
	d := image.Shape().Dimensions
	b, c := d[0], d[1]
	flat := func(x *Node) *Node { // [B, C, g, g] -> [B, g*g, C]
		return TransposeAllAxes(Reshape(x, x.Shape().Dim(0), c, -1), 0, 2, 1)
	}
	keys = flat(image)
	keyPE := flat(imagePE)
	if keyPE.Shape().Dim(0) != b {
		keyPE = BroadcastToDims(keyPE, b, keyPE.Shape().Dim(1), c)
	}
	queries = tokens
	layers := scope.At("layers")
	for i := 0; i < t.Depth; i++ {
		queries, keys = twoWayBlock(layers.At("%d", i), t, queries, keys, tokens, keyPE, i == 0)
	}
	q := Add(queries, tokens)
	k := Add(keys, keyPE)
	attnOut := Attention(scope.At("final_attn_token_to_image"), q, k, keys, t.NumHeads, t.AttentionDownsampleRate)
	queries = LayerNorm(scope.At("norm_final_attn"), Add(queries, attnOut), DecoderNormEps)
	return queries, keys
}

// twoWayBlock is TwoWayAttentionBlock: token self-attention, token-to-image
// cross-attention, MLP (ReLU), image-to-token cross-attention, each followed by
// a LayerNorm. In the first block the self-attention replaces the queries (no
// positional encoding, no residual).
func twoWayBlock(scope *model.Scope, t TransformerConfig, queries, keys, queryPE, keyPE *Node, skipFirstPE bool) (*Node, *Node) {
	if skipFirstPE {
		queries = Attention(scope.At("self_attn"), queries, queries, queries, t.NumHeads, 1)
	} else {
		q := Add(queries, queryPE)
		queries = Add(queries, Attention(scope.At("self_attn"), q, q, queries, t.NumHeads, 1))
	}
	queries = LayerNorm(scope.At("norm1"), queries, DecoderNormEps)

	q := Add(queries, queryPE)
	k := Add(keys, keyPE)
	queries = Add(queries, Attention(scope.At("cross_attn_token_to_image"), q, k, keys, t.NumHeads, t.AttentionDownsampleRate))
	queries = LayerNorm(scope.At("norm2"), queries, DecoderNormEps)

	queries = Add(queries, mlpBlock(scope.At("mlp"), queries, t.MLPDim, ReLU))
	queries = LayerNorm(scope.At("norm3"), queries, DecoderNormEps)

	q = Add(queries, queryPE)
	k = Add(keys, keyPE)
	keys = Add(keys, Attention(scope.At("cross_attn_image_to_token"), k, q, queries, t.NumHeads, t.AttentionDownsampleRate))
	keys = LayerNorm(scope.At("norm4"), keys, DecoderNormEps)
	return queries, keys
}
