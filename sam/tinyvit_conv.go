package sam

import (
	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/layers/activation"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/nn"
)

// batchNormFold returns BatchNorm2d's eval-mode affine map from the running
// statistics: y = x*scale + shift with scale = weight / sqrt(running_var +
// eps) and shift = bias - running_mean*scale (the form torch's CPU
// inference kernel evaluates). num_batches_tracked is not used in eval.
//
//	-> scale [C], shift [C]
func batchNormFold(scope *model.Scope, g *Graph, c int) (scale, shift *Node) {
	w := variable(scope, g, "weight", initOnes, true, c)
	b := Param(scope, g, "bias", c)
	mean := variable(scope, g, "running_mean", initDefault, false, c)
	varr := variable(scope, g, "running_var", initOnes, false, c)
	scale = Div(w, Sqrt(AddScalar(varr, batchNormEps)))
	shift = Sub(b, Mul(mean, scale))
	return scale, shift
}

// conv2dBN is TinyViT's Conv2d_BN: a bias-free Conv2d (groups 1 or
// depthwise) followed by BatchNorm2d in eval mode, folded into the
// convolution's weights (same numbers up to float32 rounding), optionally
// followed by the exact GELU. Weights live at scope/c/weight and
// scope/bn/{weight,bias,running_mean,running_var}. 1x1 convolutions run as
// one fused matmul + bias (+ GELU).
//
//	x: [B, H, W, in] -> [B, H', W', out]
func conv2dBN(scope *model.Scope, x *Node, out, k, stride, pad int, depthwise, gelu bool) *Node {
	g := x.Graph()
	in := x.Shape().Dim(3)
	scale, shift := batchNormFold(scope.At("bn"), g, out)
	var y *Node
	switch {
	case depthwise:
		w := Param(scope.At("c"), g, "weight", out, 1, k, k)                              // [C, 1, k, k]
		w = Mul(w, Reshape(scale, out, 1, 1, 1))                                          // BN scale folded in
		y = depthwiseConv2d(x, Reshape(w, out, k*k), k, stride, pad, scope.IsTraining(g)) // [B, H', W', C]
		y = Add(y, lastAxis(y, shift))
	case k == 1 && stride == 1 && pad == 0:
		w := Param(scope.At("c"), g, "weight", out, in, 1, 1) // [out, in, 1, 1]
		w = Mul(Reshape(w, out, in), InsertAxes(scale, -1))   // [out, in]
		if gelu {
			return nn.Dense(x, w, shift, compute.DenseLayoutOutputsInput, activation.TypeGelu)
		}
		return nn.Dense(x, w, shift, compute.DenseLayoutOutputsInput)
	default:
		w := Param(scope.At("c"), g, "weight", out, in, k, k) // [out, in, k, k]
		w = Mul(w, Reshape(scale, out, 1, 1, 1))
		y = conv2dWeight(x, w, stride, pad)
		y = Add(y, lastAxis(y, shift))
	}
	if gelu {
		y = geluFused(y)
	}
	return y
}

// tinyViTLinear is nn.Linear (weight [out, in], bias) as one fused matmul +
// bias, optionally + exact GELU.
//
//	x: [..., in] -> [..., out]
func tinyViTLinear(scope *model.Scope, x *Node, out int, gelu bool) *Node {
	g := x.Graph()
	w := Param(scope, g, "weight", out, x.Shape().Dim(-1)) // [out, in]
	b := Param(scope, g, "bias", out)
	if gelu {
		return nn.Dense(x, w, b, compute.DenseLayoutOutputsInput, activation.TypeGelu)
	}
	return nn.Dense(x, w, b, compute.DenseLayoutOutputsInput)
}

// tinyViTLayerNorm is nn.LayerNorm over the last axis (eps 1e-5), fused
// where the backend can.
func tinyViTLayerNorm(scope *model.Scope, x *Node) *Node {
	g := x.Graph()
	c := x.Shape().Dim(-1)
	w := variable(scope, g, "weight", initOnes, true, c)
	b := Param(scope, g, "bias", c)
	return nn.LayerNorm(x, []int{x.Rank() - 1}, tinyViTNormEps, w, b, nil)
}

// depthwiseConv2d is a Conv2d with groups = channels on a channels-last
// input: the sum over the k*k taps of a shifted (and strided) view of the
// zero-padded input times that tap's per-channel weights.
//
//	x: [B, H, W, C], w: [C, k*k] -> [B, H', W', C]
func depthwiseConv2d(x, w *Node, k, stride, pad int, training bool) *Node {
	c := x.Shape().Dim(3)
	taps := TransposeAllAxes(w, 1, 0) // [k*k, C]
	views := shiftedViews(x, k, stride, pad, training)
	var y *Node
	for i, v := range views {
		tap := Reshape(Slice(taps, AxisElem(i)), c)
		term := Mul(v, lastAxis(v, tap))
		if y == nil {
			y = term
		} else {
			y = Add(y, term)
		}
	}
	return y
}

// shiftedViews returns, for each tap (p, q) of a k x k convolution with the
// given stride and zero padding, the input values it multiplies:
// view[p*k+q][b, i, j, c] = x[b, i*stride + p - pad, j*stride + q - pad, c]
// (zero outside x), each [B, H', W', C]. Shifts are Pad ops with negative
// padding (block copies in the pure-Go backend, unlike a strided Slice,
// which copies element by element); stride 2 first splits the input into
// its four row/column parity planes. In training graphs the views are
// strided Slices instead: GoMLX v0.28's gradient of Pad does not handle
// negative padding.
func shiftedViews(x *Node, k, stride, pad int, training bool) []*Node {
	g := x.Graph()
	dims := x.Shape().Dimensions
	b, h, w, c := dims[0], dims[1], dims[2], dims[3]
	oh, ow := convOut(h, k, stride, pad), convOut(w, k, stride, pad)
	zero := ScalarZero(g, x.DType())
	// shift returns v[:, i+dy, j+dx, :] for i < oh, j < ow (zero outside).
	shift := func(v *Node, dy, dx int) *Node {
		vh, vw := v.Shape().Dim(1), v.Shape().Dim(2)
		if dy == 0 && dx == 0 && vh == oh && vw == ow {
			return v
		}
		return Pad(v, zero, PadAxis{}, PadAxis{Start: -dy, End: oh - vh + dy}, PadAxis{Start: -dx, End: ow - vw + dx}, PadAxis{})
	}
	views := make([]*Node, 0, k*k)
	mode := stride
	if training {
		mode = 0
	}
	switch mode {
	case 1:
		for p := range k {
			for q := range k {
				views = append(views, shift(x, p-pad, q-pad))
			}
		}
	case 2:
		// Row 2i + p - pad = 2(i + d) + a with a the parity plane and d its shift.
		if h != 2*oh || w != 2*ow {
			x = Pad(x, zero, PadAxis{}, PadAxis{End: 2*oh - h}, PadAxis{End: 2*ow - w}, PadAxis{})
		}
		planes := Reshape(x, b, oh, 2, ow, 2, c)            // [B, oh, a, ow, a', C]
		planes = TransposeAllAxes(planes, 2, 4, 0, 1, 3, 5) // [a, a', B, oh, ow, C]
		planes = Reshape(planes, 4, b, oh, ow, c)
		plane := func(a, a2 int) *Node {
			i := 2*a + a2
			return Reshape(Pad(planes, zero, PadAxis{Start: -i, End: i - 3}), b, oh, ow, c)
		}
		for p := range k {
			for q := range k {
				ry, rx := p-pad, q-pad
				ay, dy := ((ry%2)+2)%2, floorDiv(ry, 2)
				ax, dx := ((rx%2)+2)%2, floorDiv(rx, 2)
				views = append(views, shift(plane(ay, ax), dy, dx))
			}
		}
	default:
		hp, wp := h+2*pad, w+2*pad
		xp := x
		if pad > 0 {
			xp = Pad(x, zero, PadAxis{}, PadAxis{Start: pad, End: pad}, PadAxis{Start: pad, End: pad}, PadAxis{})
		}
		_, _ = hp, wp
		for p := range k {
			for q := range k {
				views = append(views, Slice(xp, AxisRange(),
					AxisRange(p, p+stride*(oh-1)+1).Stride(stride),
					AxisRange(q, q+stride*(ow-1)+1).Stride(stride),
					AxisRange()))
			}
		}
	}
	return views
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// attentionBiasIndex is TinyViT's attention_bias_idxs for a w x w window:
// idx[i, j] numbers the offset (|dy|, |dx|) between window positions i and
// j in the order first met when i and j both run row-major.
//
//	-> [N*N] with N = w*w, values in [0, w*w)
func attentionBiasIndex(w int) []int32 {
	n := w * w
	seen := map[[2]int]int32{}
	idx := make([]int32, 0, n*n)
	for i := range n {
		for j := range n {
			off := [2]int{abs(i/w - j/w), abs(i%w - j%w)}
			v, ok := seen[off]
			if !ok {
				v = int32(len(seen))
				seen[off] = v
			}
			idx = append(idx, v)
		}
	}
	return idx
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// geluFused is the exact (erf) GELU of nn.GELU through GoMLX's activation
// package, which runs it as one fused backend op where the backend has one
// (the pure-Go backend does: one pass over the tensor instead of five).
func geluFused(x *Node) *Node { return activation.Gelu(x) }
