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
	x := TransposeAllAxes(image, 0, 2, 3, 1)                                                         // [B, S, S, 3]
	x = conv2d(scope.At("patch_embed").At("proj"), x, e.EmbedDim, e.PatchSize, e.PatchSize, 0, true) // [B, g, g, C]
	if e.UseAbsPos {
		pos := Param(scope, g, "pos_embed", 1, grid, grid, e.EmbedDim) // [1, g, g, C]
		x = Add(x, pos)
	}
	_ = b
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
//	x: [B, H, W, C] -> [B, H, W, C]
func encoderBlock(scope *model.Scope, cfg Config, x *Node, window int) *Node {
	e := cfg.ImageEncoder
	g := x.Graph()
	dims := x.Shape().Dimensions
	b, h, w, c := dims[0], dims[1], dims[2], dims[3]

	shortcut := x
	x = LayerNorm(scope.At("norm1"), x, encoderNormEps)
	var padH, padW int
	if window > 0 {
		// Zero-pad bottom/right to a multiple of the window after norm1; the
		// padded tokens take part in attention (no mask), as in SAM.
		padH, padW = (window-h%window)%window, (window-w%window)%window
		if padH > 0 || padW > 0 {
			x = Pad(x, ScalarZero(g, x.DType()), PadAxis{}, PadAxis{End: padH}, PadAxis{End: padW}, PadAxis{})
		}
		hp, wp := h+padH, w+padW
		x = Reshape(x, b, hp/window, window, wp/window, window, c) // [B, nh, ws, nw, ws, C]
		x = TransposeAllAxes(x, 0, 1, 3, 2, 4, 5)                  // [B, nh, nw, ws, ws, C]
		x = Reshape(x, -1, window, window, c)                      // [B*nW, ws, ws, C]
	}
	x = encoderAttention(scope.At("attn"), cfg, x)
	if window > 0 {
		hp, wp := h+padH, w+padW
		x = Reshape(x, b, hp/window, wp/window, window, window, c) // [B, nh, nw, ws, ws, C]
		x = TransposeAllAxes(x, 0, 1, 3, 2, 4, 5)                  // [B, nh, ws, nw, ws, C]
		x = Reshape(x, b, hp, wp, c)
		if padH > 0 || padW > 0 {
			x = Slice(x, AxisRange(), AxisRange(0, h), AxisRange(0, w), AxisRange())
		}
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

// encoderAttention is the encoder's multi-head attention with decomposed
// relative position embeddings.
//
//	x: [B, H, W, C] -> [B, H, W, C]
func encoderAttention(scope *model.Scope, cfg Config, x *Node) *Node {
	e := cfg.ImageEncoder
	g := x.Graph()
	dims := x.Shape().Dimensions
	b, h, w, c := dims[0], dims[1], dims[2], dims[3]
	heads := e.NumHeads
	hd := c / heads

	qkv := Linear(scope.At("qkv"), x, 3*c, e.QKVBias) // [B, H, W, 3C]
	qkv = Reshape(qkv, b, h*w, 3, heads, hd)          // split as (3, heads, head_dim)
	qkv = TransposeAllAxes(qkv, 2, 0, 3, 1, 4)        // [3, B, heads, HW, hd]
	q := Squeeze(Slice(qkv, AxisElem(0)), 0)          // [B, heads, HW, hd]
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
	out = Reshape(out, b, h, w, c)
	return Linear(scope.At("proj"), out, c, true)
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
	x = conv2d(scope.At("0"), x, out, 1, 1, 0, false)
	x = LayerNorm(scope.At("1"), x, layerNorm2dEps)
	x = conv2d(scope.At("2"), x, out, 3, 1, 1, false)
	x = LayerNorm(scope.At("3"), x, layerNorm2dEps)
	return TransposeAllAxes(x, 0, 3, 1, 2)
}
