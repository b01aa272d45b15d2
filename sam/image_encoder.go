package sam

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// ImageEncoder is SAM's ImageEncoderViT (the paper's Enc_img): patch
// embedding, absolute positions, transformer blocks with windowed or global
// attention and decomposed relative positions, and the convolutional neck.
// Variables live under scope "image_encoder".
//
//	image: [B, 3, S, S] (normalised, padded) -> embedding [B, out_chans, S/16, S/16]
func ImageEncoder(scope *model.Scope, cfg Config, image *Node) *Node {
	if cfg.TinyViT != nil {
		return TinyViTEncoder(scope, cfg, image)
	}
	e := cfg.ImageEncoder
	g := image.Graph()
	b := image.Shape().Dim(0)
	grid := cfg.TokenGrid()

	// Patch embedding: Conv2d(k=s=patch) as a reshape + matrix product
	// (GoMLX's even-kernel Convolve input gradient is wrong).
	s := image.Shape().Dim(2)
	x := Reshape(SwapLastAxes(Reshape(image, b, 3, s*s)), b, s, s, 3)                                // [B, S, S, 3]
	x = Conv2d(scope.At("patch_embed").At("proj"), x, e.EmbedDim, e.PatchSize, e.PatchSize, 0, true) // [B, g, g, C]
	if e.UseAbsPos {
		pos := Param(scope, g, "pos_embed", 1, grid, grid, e.EmbedDim) // [1, g, g, C]
		x = Add(x, pos)
	}
	blocks := scope.At("blocks")
	for i := 0; i < e.Depth; i++ {
		window := e.WindowSize
		if cfg.isGlobal(i) {
			window = 0
		}
		x = encoderBlock(blocks.At("%d", i), cfg, x, window)
	}
	return neck(scope.At("neck"), cfg, x) // [B, out, g, g]
}

// encoderBlock is one ViT Block: attention (windowed when window > 0) and
// MLP with pre-norms; SAM-Med2D adds its adapter beside the MLP.
//
// SAM zero-pads norm1's output to a multiple of the window and runs the
// whole attention (qkv, attention, proj) on the padded grid; the padded
// tokens take part in attention (no mask) and are cropped after proj. Here
// qkv runs on the real tokens only and the padded rows get qkv(0) = its
// bias, which is exactly what the padded tokens' projection is; proj runs
// after the crop (it is row-wise). Same result, without projecting the
// padding (at 256 with window 14, 784 tokens become 256).
//
//	x: [B, H, W, C] -> [B, H, W, C]
func encoderBlock(scope *model.Scope, cfg Config, x *Node, window int) *Node {
	e := cfg.ImageEncoder
	dims := x.Shape().Dimensions
	b, h, w, c := dims[0], dims[1], dims[2], dims[3]

	shortcut := x
	x = LayerNorm(scope.At("norm1"), x, encoderNormEps)
	attn := scope.At("attn")
	var qkv *Node
	if window > 0 {
		padH, padW := (window-h%window)%window, (window-w%window)%window
		hp, wp := h+padH, w+padW
		qkv = Linear(attn.At("qkv"), x, 3*c, false) // [B, H, W, 3C] without the bias
		if padH > 0 || padW > 0 {
			qkv = Pad(qkv, ScalarZero(x.Graph(), x.DType()), PadAxis{}, PadAxis{End: padH}, PadAxis{End: padW}, PadAxis{}) // [B, Hp, Wp, 3C]
		}
		if e.QKVBias {
			bias := Param(attn.At("qkv"), x.Graph(), "bias", 3*c)
			qkv = Add(qkv, lastAxis(qkv, bias))
		}
		qkv = windowPartition(qkv, window)          // [B*nW, ws, ws, 3C]
		x = encoderAttentionCore(attn, cfg, qkv)    // [B*nW, ws, ws, C]
		x = windowUnpartition(x, b, hp, wp, window) // [B, Hp, Wp, C]
		if padH > 0 || padW > 0 {
			x = Slice(x, AxisRange(), AxisRange(0, h), AxisRange(0, w), AxisRange()) // [B, H, W, C]
		}
		x = Linear(attn.At("proj"), x, c, true)
	} else {
		x = encoderAttention(attn, cfg, x)
	}
	x = Add(shortcut, x)
	normed := LayerNorm(scope.At("norm2"), x, encoderNormEps)
	mlpOut := mlpBlock(scope.At("mlp"), normed, int(float64(c)*e.MLPRatio), GELU)
	if e.Adapter != nil {
		// SAM-Med2D: x = x + MLP(norm2(x)) + Adapter(norm2(x)).
		return Add(Add(x, mlpOut), adapter(scope.At("Adapter"), cfg, normed))
	}
	return Add(x, mlpOut)
}

// windowPartition is SAM's window_partition without the padding (the grid
// is a multiple of the window already).
//
//	x: [B, Hp, Wp, C] -> [B*nW, ws, ws, C]
func windowPartition(x *Node, window int) *Node {
	dims := x.Shape().Dimensions
	b, hp, wp, c := dims[0], dims[1], dims[2], dims[3]
	x = Reshape(x, b, hp/window, window, wp/window, window, c) // [B, nh, ws, nw, ws, C]
	x = TransposeAllAxes(x, 0, 1, 3, 2, 4, 5)                  // [B, nh, nw, ws, ws, C]
	return Reshape(x, -1, window, window, c)                   // [B*nW, ws, ws, C]
}

// windowUnpartition is SAM's window_unpartition without the crop.
//
//	x: [B*nW, ws, ws, C] -> [B, Hp, Wp, C]
func windowUnpartition(x *Node, b, hp, wp, window int) *Node {
	c := x.Shape().Dim(-1)
	x = Reshape(x, b, hp/window, wp/window, window, window, c) // [B, nh, nw, ws, ws, C]
	x = TransposeAllAxes(x, 0, 1, 3, 2, 4, 5)                  // [B, nh, ws, nw, ws, C]
	return Reshape(x, b, hp, wp, c)
}

// encoderAttention is the encoder's multi-head attention with decomposed
// relative position embeddings: qkv, attention, proj.
//
//	x: [B, H, W, C] -> [B, H, W, C]
func encoderAttention(scope *model.Scope, cfg Config, x *Node) *Node {
	c := x.Shape().Dim(-1)
	qkv := Linear(scope.At("qkv"), x, 3*c, cfg.ImageEncoder.QKVBias) // [B, H, W, 3C]
	out := encoderAttentionCore(scope, cfg, qkv)                     // [B, H, W, C]
	return Linear(scope.At("proj"), out, c, true)
}

// encoderAttentionCore is the attention between qkv and proj: heads,
// scaled dot products plus the decomposed relative positions, softmax.
//
//	qkv: [B, H, W, 3C] -> [B, H, W, C]
func encoderAttentionCore(scope *model.Scope, cfg Config, qkv *Node) *Node {
	e := cfg.ImageEncoder
	g := qkv.Graph()
	dims := qkv.Shape().Dimensions
	b, h, w, c := dims[0], dims[1], dims[2], dims[3]/3
	heads := e.NumHeads
	hd := c / heads

	qkv = Reshape(qkv, b, h*w, 3, heads, hd)   // split as (3, heads, head_dim)
	qkv = TransposeAllAxes(qkv, 2, 0, 3, 1, 4) // [3, B, heads, HW, hd]
	q := Squeeze(Slice(qkv, AxisElem(0)), 0)   // [B, heads, HW, hd]
	k := Squeeze(Slice(qkv, AxisElem(1)), 0)
	v := Squeeze(Slice(qkv, AxisElem(2)), 0)

	attn := Einsum("bnqd,bnkd->bnqk", MulScalar(q, 1/math.Sqrt(float64(hd))), k) // [B, heads, HW, HW]
	if e.UseRelPos {
		// The relative term uses the unscaled q.
		rh := relPosTable(scope, g, "rel_pos_h", h, h, hd) // [H, kH, hd]
		rw := relPosTable(scope, g, "rel_pos_w", w, w, hd) // [W, kW, hd]
		rq := Reshape(q, b, heads, h, w, hd)
		relH := Einsum("bnhwc,hkc->bnhwk", rq, rh) // [B, heads, H, W, kH]
		relW := Einsum("bnhwc,wkc->bnhwk", rq, rw) // [B, heads, H, W, kW]
		attn = Reshape(attn, b, heads, h, w, h, w)
		attn = Add(attn, InsertAxes(relH, -1)) // broadcast over kW
		attn = Add(attn, InsertAxes(relW, 4))  // broadcast over kH
		attn = Reshape(attn, b, heads, h*w, h*w)
	}
	attn = Softmax(attn, -1)
	out := Einsum("bnqk,bnkd->bnqd", attn, v) // [B, heads, HW, hd]
	out = TransposeAllAxes(out, 0, 2, 1, 3)   // [B, HW, heads, hd]
	return Reshape(out, b, h, w, c)
}

// relPosTable returns R[i, j, :] = table[i - j + k - 1] (SAM's get_rel_pos for
// q = k sizes), interpolating the stored table linearly (align_corners=False)
// when its length is not 2·max(q,k)-1. The lookup is a constant selection
// matrix times the table, so it is exact and differentiable.
//
//	-> [q, k, hd]
func relPosTable(scope *model.Scope, g *Graph, name string, qSize, kSize, hd int) *Node {
	v := scope.GetVariable(name)
	length := 2*max(qSize, kSize) - 1
	stored := length
	if v != nil {
		stored = v.Shape().Dim(0)
	}
	table := Param(scope, g, name, stored, hd)   // [L, hd]
	sel := relPosSelection(qSize, kSize, stored) // [q*k, L]
	r := Einsum("nl,lc->nc", ConstTensor(g, sel), table)
	return Reshape(r, qSize, kSize, hd)
}

// relPosSelection builds the [q*k, stored] matrix that maps a stored
// relative-position table to the per-(query, key) rows used by get_rel_pos.
func relPosSelection(qSize, kSize, stored int) *tensors.Tensor {
	maxDist := 2*max(qSize, kSize) - 1
	// interp[t][s]: weight of stored row s in resized row t (F.interpolate
	// mode="linear", align_corners=False); identity when the sizes match.
	interp := make([][]float32, maxDist)
	for t := range interp {
		interp[t] = make([]float32, stored)
		if stored == maxDist {
			interp[t][t] = 1
			continue
		}
		scale := float64(stored) / float64(maxDist)
		src := math.Max(scale*(float64(t)+0.5)-0.5, 0)
		i0 := int(src)
		i1 := min(i0+1, stored-1)
		l1 := float32(src - float64(i0))
		interp[t][i0] += 1 - l1
		interp[t][i1] += l1
	}
	qScale := math.Max(float64(kSize)/float64(qSize), 1)
	kScale := math.Max(float64(qSize)/float64(kSize), 1)
	data := make([]float32, qSize*kSize*stored)
	for i := 0; i < qSize; i++ {
		for j := 0; j < kSize; j++ {
			rel := int(float64(i)*qScale - float64(j)*kScale + float64(kSize-1)*kScale)
			copy(data[(i*kSize+j)*stored:], interp[rel])
		}
	}
	return tensors.FromFlatDataAndDimensions(data, qSize*kSize, stored)
}

// neck is Conv1x1 -> LayerNorm2d -> Conv3x3 (pad 1) -> LayerNorm2d, without biases.
//
//	x: [B, g, g, C] -> [B, out, g, g]
func neck(scope *model.Scope, cfg Config, x *Node) *Node {
	out := cfg.ImageEncoder.OutChans
	x = Conv2d(scope.At("0"), x, out, 1, 1, 0, false)
	x = LayerNorm(scope.At("1"), x, layerNorm2dEps)
	x = Conv2d(scope.At("2"), x, out, 3, 1, 1, false)
	x = LayerNorm(scope.At("3"), x, layerNorm2dEps)
	d := x.Shape().Dimensions                                                             // [B, g, g, out]
	return Reshape(SwapLastAxes(Reshape(x, d[0], d[1]*d[2], out)), d[0], out, d[1], d[2]) // [B, out, g, g]
}
