package sam

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// Attention is the mask decoder's Attention: q/k/v projections to
// dim/downsample, multi-head scaled dot product, output projection. Each of
// q, k, v may have batch 1 where it is the same for every object (the image
// side before it meets the prompts): it is projected once, then broadcast.
//
//	q: [B|1, Nq, C], k, v: [B|1, Nk, C] -> [B, Nq, C]
func Attention(scope *model.Scope, q, k, v *Node, heads, downsample int) *Node {
	c := q.Shape().Dim(-1)
	internal := c / downsample
	qp := Linear(scope.At("q_proj"), q, internal, true) // [B|1, Nq, I] (created first, as ever: a new model's initial weights stay what they were)
	return attentionKV(scope, qp, []KV{ProjectKV(scope, k, v, internal)}, c, heads)
}

// KV are an attention's keys and values after its k_proj and v_proj: what
// Attention computes from k and v alone, so that a caller can compute it
// once (per image, per model) and reuse it for every query.
type KV struct {
	K, V *Node // [B|1, N, I]
}

// ProjectKV projects keys k and values v with scope's k_proj and v_proj to
// the attention's internal width.
//
//	k, v: [B|1, N, C] -> [B|1, N, internal] each
func ProjectKV(scope *model.Scope, k, v *Node, internal int) KV {
	return KV{K: Linear(scope.At("k_proj"), k, internal, true), V: Linear(scope.At("v_proj"), v, internal, true)}
}

// AttentionKV is Attention on keys and values already projected
// (ProjectKV), given in parts along the token axis: the result equals
// Attention with keys and values the concatenation of the parts. A part
// with batch 1 is broadcast to the others' batch after its projection.
//
//	q: [B|1, Nq, C], kv[i]: [B|1, N_i, I] -> [B, Nq, C]
func AttentionKV(scope *model.Scope, q *Node, kv []KV, heads int) *Node {
	c := q.Shape().Dim(-1)
	return attentionKV(scope, Linear(scope.At("q_proj"), q, kv[0].K.Shape().Dim(-1), true), kv, c, heads)
}

// attentionKV is AttentionKV with q projected: qp [B|1, Nq, I].
func attentionKV(scope *model.Scope, qp *Node, kv []KV, c, heads int) *Node {
	b := qp.Shape().Dim(0)
	for _, p := range kv {
		b = max(b, p.K.Shape().Dim(0), p.V.Shape().Dim(0))
	}
	q := ToBatch(qp, b) // [B, Nq, I]
	ks := make([]*Node, len(kv))
	vs := make([]*Node, len(kv))
	for i, p := range kv {
		ks[i], vs[i] = ToBatch(p.K, b), ToBatch(p.V, b) // [B, N_i, I]
	}
	k, v := ks[0], vs[0]
	if len(kv) > 1 {
		k, v = Concatenate(ks, 1), Concatenate(vs, 1) // [B, ΣN_i, I]
	}
	return attentionCore(scope, q, k, v, c, heads)
}

// attentionCore is the multi-head scaled dot product and the output
// projection of projected q, k, v.
//
//	q: [B, Nq, I], k, v: [B, Nk, I] -> [B, Nq, C]
func attentionCore(scope *model.Scope, q, k, v *Node, c, heads int) *Node {
	internal := q.Shape().Dim(-1)
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
// token-to-image attention. The image may have batch 1 for B objects of one
// image: what is computed from it alone (its projections in the first
// block) is computed once.
//
//	image: [B|1, C, g, g], imagePE: [1, C, g, g], tokens: [B, N, C] -> tokens [B, N, C], image [B, g*g, C]
func TwoWayTransformer(scope *model.Scope, t TransformerConfig, image, imagePE, tokens *Node) (queries, keys *Node) {
	c := image.Shape().Dim(1)
	flat := func(x *Node) *Node { // [B, C, g, g] -> [B, g*g, C]
		return SwapLastAxes(Reshape(x, x.Shape().Dim(0), c, -1))
	}
	keys = flat(image)     // [B|1, g*g, C]
	keyPE := flat(imagePE) // [1, g*g, C]
	queries = tokens
	layers := scope.At("layers")
	for i := 0; i < t.Depth; i++ {
		queries, keys = twoWayBlock(layers.At("%d", i), t, queries, keys, tokens, keyPE, i == 0)
	}
	keys = ToBatch(keys, tokens.Shape().Dim(0)) // [B, g*g, C]
	q := Add(queries, tokens)
	k := addPE(keys, keyPE)
	attnOut := Attention(scope.At("final_attn_token_to_image"), q, k, keys, t.NumHeads, t.AttentionDownsampleRate)
	queries = LayerNorm(scope.At("norm_final_attn"), Add(queries, attnOut), DecoderNormEps)
	return queries, keys
}

// ToBatch broadcasts x [1, ...] to [b, ...]; x with b rows already is
// returned as it is.
func ToBatch(x *Node, b int) *Node {
	d := x.Shape().Dimensions
	if d[0] == b {
		return x
	}
	return BroadcastToDims(x, append([]int{b}, d[1:]...)...)
}

// addPE adds a positional encoding [1, N, C] to x [B, N, C].
func addPE(x, pe *Node) *Node { return Add(x, ToBatch(pe, x.Shape().Dim(0))) }

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
	k := addPE(keys, keyPE)
	queries = Add(queries, Attention(scope.At("cross_attn_token_to_image"), q, k, keys, t.NumHeads, t.AttentionDownsampleRate))
	queries = LayerNorm(scope.At("norm2"), queries, DecoderNormEps)

	queries = Add(queries, mlpBlock(scope.At("mlp"), queries, t.MLPDim, ReLU))
	queries = LayerNorm(scope.At("norm3"), queries, DecoderNormEps)

	q = Add(queries, queryPE)
	k = addPE(keys, keyPE)
	attn := Attention(scope.At("cross_attn_image_to_token"), k, q, queries, t.NumHeads, t.AttentionDownsampleRate) // [B, g*g, C]
	keys = Add(ToBatch(keys, attn.Shape().Dim(0)), attn)
	keys = LayerNorm(scope.At("norm4"), keys, DecoderNormEps)
	return queries, keys
}
