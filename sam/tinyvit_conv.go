package sam

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
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
// convolution's weights (same numbers up to float32 rounding). Weights live
// at scope/c/weight and scope/bn/{weight,bias,running_mean,running_var}.
//
//	x: [B, H, W, in] -> [B, H', W', out]
func conv2dBN(scope *model.Scope, x *Node, out, k, stride, pad int, depthwise bool) *Node {
	g := x.Graph()
	in := x.Shape().Dim(3)
	scale, shift := batchNormFold(scope.At("bn"), g, out)
	var y *Node
	if depthwise {
		w := Param(scope.At("c"), g, "weight", out, 1, k, k)         // [C, 1, k, k]
		w = Mul(w, Reshape(scale, out, 1, 1, 1))                     // BN scale folded in
		y = depthwiseConv2d(x, Reshape(w, out, k*k), k, stride, pad) // [B, H', W', C]
	} else {
		w := Param(scope.At("c"), g, "weight", out, in, k, k) // [out, in, k, k]
		w = Mul(w, Reshape(scale, out, 1, 1, 1))
		y = conv2dWeight(x, w, stride, pad)
	}
	return Add(y, lastAxis(y, shift))
}

// depthwiseConv2d is a Conv2d with groups = channels on a channels-last
// input, as a sum of k*k shifted, strided slices times per-channel taps
// (zero padding).
//
//	x: [B, H, W, C], w: [C, k*k] -> [B, H', W', C]
func depthwiseConv2d(x, w *Node, k, stride, pad int) *Node {
	g := x.Graph()
	dims := x.Shape().Dimensions
	h, wd, c := dims[1], dims[2], dims[3]
	if pad > 0 {
		x = Pad(x, ScalarZero(g, x.DType()), PadAxis{}, PadAxis{Start: pad, End: pad}, PadAxis{Start: pad, End: pad}, PadAxis{})
	}
	oh, ow := convOut(h, k, stride, pad), convOut(wd, k, stride, pad)
	taps := TransposeAllAxes(w, 1, 0) // [k*k, C]
	var y *Node
	for p := range k {
		for q := range k {
			part := Slice(x, AxisRange(),
				AxisRange(p, p+stride*(oh-1)+1).Stride(stride),
				AxisRange(q, q+stride*(ow-1)+1).Stride(stride),
				AxisRange()) // [B, oh, ow, C]
			tap := Reshape(Slice(taps, AxisElem(p*k+q)), c)
			term := Mul(part, lastAxis(part, tap))
			if y == nil {
				y = term
			} else {
				y = Add(y, term)
			}
		}
	}
	return y
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
