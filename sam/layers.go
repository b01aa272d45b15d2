package sam

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/nn"
)

// This file holds the small building blocks shared by the components, written
// to match PyTorch's modules number for number. Every weight lives at the
// scope path of its PyTorch state_dict key: the variable
// "image_encoder/blocks/3/attn/qkv/weight" is "image_encoder.blocks.3.attn.qkv.weight".

// Param returns the float32 variable name in scope with the given shape. A
// variable the store does not hold yet (training from scratch, or a part a
// checkpoint lacks) is initialised as PyTorch initialises nn.Linear and
// nn.Conv2d: uniform in ±1/sqrt(fan_in), fan_in = the product of all axes but
// the first; vectors (biases) start at zero.
func Param(scope *model.Scope, g *Graph, name string, dims ...int) *Node {
	return variable(scope, g, name, initDefault, true, dims...)
}

// Embedding returns the [n, dim] weight of a torch.nn.Embedding (learned
// tokens, point-type embeddings) at scope/weight; a new one starts as
// PyTorch's does, N(0, 1).
func Embedding(scope *model.Scope, g *Graph, n, dim int) *Node {
	return variable(scope, g, "weight", initNormal, true, n, dim)
}

type initKind int

const (
	initDefault initKind = iota // PyTorch's Linear/Conv rule (biases zero)
	initOnes                    // LayerNorm weights
	initNormal                  // N(0, 1): the random-Fourier PE matrix
	initZeros                   // zero-initialised projections (ZeroParam)
)

// ZeroParam is Param with a new variable starting at zero whatever its
// shape: a projection that adds a new branch to a trained model leaves its
// outputs unchanged until it trains.
func ZeroParam(scope *model.Scope, g *Graph, name string, dims ...int) *Node {
	return variable(scope, g, name, initZeros, true, dims...)
}

// variable returns (creating when needed) a float32 variable; trainable
// false marks buffers such as the positional-encoding matrix.
func variable(scope *model.Scope, g *Graph, name string, kind initKind, trainable bool, dims ...int) *Node {
	store := scope.Store()
	init := func(g *Graph, shape shapes.Shape) *Node {
		switch {
		case kind == initOnes:
			return Ones(g, shape)
		case kind == initNormal:
			return store.RandomNormal(g, shape)
		case kind == initZeros:
			return Zeros(g, shape)
		case shape.Rank() <= 1:
			return Zeros(g, shape)
		}
		fanIn := 1
		for _, d := range shape.Dimensions[1:] {
			fanIn *= d
		}
		bound := 1 / math.Sqrt(float64(fanIn))
		u := store.RandomUniform(g, shape) // [0, 1)
		return MulScalar(AddScalar(MulScalar(u, 2), -1), bound)
	}
	v := scope.WithInitializer(init).VariableWithShape(name, shapes.Make(dtypes.Float32, dims...))
	if !trainable {
		v.SetTrainable(false)
	}
	return v.NodeValue(g)
}

// DeclareLinear creates Linear's variables (weight [out, in], bias [out])
// without using them, so that a graph that computes a layer's parts out of
// their usual order still creates a new model's variables in that order (a
// new variable's initial value is the next draw of the store's generator).
func DeclareLinear(scope *model.Scope, g *Graph, in, out int, bias bool) {
	Param(scope, g, "weight", out, in)
	if bias {
		Param(scope, g, "bias", out)
	}
}

// DeclareLayerNorm creates LayerNorm's variables (weight, bias [c]) without
// using them (see DeclareLinear).
func DeclareLayerNorm(scope *model.Scope, g *Graph, c int) {
	variable(scope, g, "weight", initOnes, true, c)
	Param(scope, g, "bias", c)
}

// Linear is torch.nn.Linear: y = x·Wᵀ + b with W stored [out, in].
//
//	x: [..., in] -> [..., out]
func Linear(scope *model.Scope, x *Node, out int, bias bool) *Node {
	g := x.Graph()
	in := x.Shape().Dim(-1)
	lead := x.Shape().Dimensions[:x.Rank()-1]
	w := Param(scope, g, "weight", out, in) // [out, in]
	rows := x.Shape().Size() / in
	flat, padded := padProductRows(Reshape(x, rows, in), in*out) // [N', in]
	var y *Node
	if chunk := smallChunk(flat.Shape().Dim(0), in*out); chunk > 0 {
		n := flat.Shape().Dim(0)
		parts := make([]*Node, 0, n/chunk)
		for r := 0; r < n; r += chunk {
			parts = append(parts, Einsum("ni,oi->no", Slice(flat, AxisRange(r, r+chunk), AxisRange()), w))
		}
		y = Concatenate(parts, 0) // [N', out]
		if bias {
			y = Add(y, lastAxis(y, Param(scope, g, "bias", out)))
		}
	} else if useFused(scope, g, in, out) {
		var b *Node
		if bias {
			b = Param(scope, g, "bias", out)
		}
		y = nn.Dense(flat, w, b, compute.DenseLayoutOutputsInput) // [N', out]
	} else {
		y = Einsum("ni,oi->no", flat, w) // [N', out]
		if bias {
			b := Param(scope, g, "bias", out)
			y = Add(y, lastAxis(y, b))
		}
	}
	if padded {
		y = Slice(y, AxisRange(0, rows), AxisRange()) // [N, out]
	}
	return Reshape(y, append(append([]int{}, lead...), out)...)
}

// smallProduct is the size (multiply-adds) under which GoMLX's pure-Go
// backend (compute v0.1.14, AVX-512) multiplies matrices with its "small"
// kernel, whose 4×4 register tiles leave the last rows%4 rows to scalar Go
// loops, about ten times slower. The decoders' token side has 7 rows per
// prompt (1 IoU + 4 mask tokens + 2 box corners), so three of every seven
// rows took the slow loops: most of a decoder call's time.
const smallProduct = 4 << 20

// smallChunk returns the rows per product when a few rows (at most 32)
// would make a product just past smallProduct: the large kernel packs the
// whole weight for them, so a few small products of 4k rows are faster.
// 0 means one product.
func smallChunk(rows, perRow int) int {
	if rows > 32 || rows*perRow < smallProduct {
		return 0
	}
	for c := rows / 2; c >= 4; c-- {
		if c%4 == 0 && rows%c == 0 && c*perRow < smallProduct {
			return c
		}
	}
	return 0
}

// padProductRows pads x's rows with zeros to a multiple of 4 when a product
// of x [N, K] with a weight of perRow multiply-adds per row would take the
// small kernel; the caller slices the product back to N rows. Zero rows
// change no real row, on any backend.
//
//	x: [N, K] -> [N', K], N' = N rounded up to a multiple of 4
func padProductRows(x *Node, perRow int) (*Node, bool) {
	n := x.Shape().Dim(0)
	if n%4 == 0 || n*perRow >= smallProduct {
		return x, false
	}
	x = Pad(x, ScalarZero(x.Graph(), x.DType()), PadAxis{End: 4 - n%4}, PadAxis{})
	return x, true
}

// useFused tells whether Linear and LayerNorm use the backend's fused ops
// (one op instead of five to seven, where the backend has them: GoMLX falls
// back to the plain ops elsewhere): at inference only, so training's graphs
// and gradients stay the plain, tested ones; and only when every width is a
// multiple of 16, the SIMD width whose tails the plain path works around
// (see lastAxis).
func useFused(scope *model.Scope, g *Graph, widths ...int) bool {
	if scope.IsTraining(g) {
		return false
	}
	for _, w := range widths {
		if w%16 != 0 {
			return false
		}
	}
	return true
}

// LayerNorm is torch.nn.LayerNorm over the last axis (biased variance).
//
//	x: [..., C] -> [..., C]
func LayerNorm(scope *model.Scope, x *Node, eps float64) *Node {
	g := x.Graph()
	c := x.Shape().Dim(-1)
	w := variable(scope, g, "weight", initOnes, true, c)
	b := Param(scope, g, "bias", c)
	if useFused(scope, g, c) {
		return nn.LayerNorm(x, []int{x.Rank() - 1}, eps, w, b, nil)
	}
	mean := ReduceAndKeep(x, ReduceMean, -1)
	centred := Sub(x, mean)
	variance := ReduceAndKeep(Square(centred), ReduceMean, -1)
	// Div by Sqrt rather than Rsqrt: Rsqrt has no gradient in GoMLX v0.28.
	y := Div(centred, Sqrt(AddScalar(variance, eps)))
	return Add(Mul(y, lastAxis(y, w)), lastAxis(y, b))
}

// lastAxis shapes a per-channel vector v [C] (or [1, ..., C]) for an
// elementwise op with x [..., C]. When C is not a multiple of 16 it is
// broadcast over the trailing axes of x up to a multiple of 16 values: the
// pure-Go backend's SIMD path for a vector repeated along the leading axes
// (compute v0.1.14, simdV2V1*Float32) ends each row with a partial load
// that Go 1.27's archsimd implements as a full 16-lane load, which reads
// past the end of x's buffer on the last row and faults when the buffer
// ends at a page boundary.
func lastAxis(x, v *Node) *Node {
	dims := x.Shape().Dimensions
	c := dims[len(dims)-1]
	n := c
	if n%16 == 0 {
		return ExpandLeftToRank(v, x.Rank())
	}
	v = Reshape(v, c)
	for axis := len(dims) - 2; axis >= 0; axis-- {
		n *= dims[axis]
		if n%16 == 0 {
			// Broadcast from rank 1 and reshape: the backend's
			// ImplicitBroadcastFusion pass folds a same-rank BroadcastInDim
			// back into the elementwise op, which would restore the short row.
			t := BroadcastPrefix(v, dims[axis:len(dims)-1]...) // [d_axis, ..., C]
			to := append(make([]int, 0, len(dims)), dims...)
			for i := 0; i < axis; i++ {
				to[i] = 1
			}
			return Reshape(t, to...)
		}
	}
	return ExpandLeftToRank(v, x.Rank())
}

// GELU is the exact (erf) GELU that SAM uses everywhere.
func GELU(x *Node) *Node {
	return MulScalar(Mul(x, OnePlus(Erf(MulScalar(x, 1/math.Sqrt2)))), 0.5)
}

// ReLU is max(x, 0).
func ReLU(x *Node) *Node {
	return Max(x, ZerosLike(x))
}

// mlpBlock is SAM's MLPBlock (lin1 -> act -> lin2).
//
//	x: [..., C] -> [..., C]
func mlpBlock(scope *model.Scope, x *Node, hidden int, act func(*Node) *Node) *Node {
	c := x.Shape().Dim(-1)
	h := act(Linear(scope.At("lin1"), x, hidden, true))
	return Linear(scope.At("lin2"), h, c, true)
}

// MLP is SAM's MLP of the mask decoder (layers.0 .. layers.{n-1}, ReLU between
// layers, optional sigmoid on the output).
//
//	x: [..., in] -> [..., out]
func MLP(scope *model.Scope, x *Node, hidden, out, numLayers int, sigmoidOutput bool) *Node {
	for i := 0; i < numLayers; i++ {
		dim := hidden
		if i == numLayers-1 {
			dim = out
		}
		x = Linear(scope.At("layers").At("%d", i), x, dim, true)
		if i < numLayers-1 {
			x = ReLU(x)
		}
	}
	if sigmoidOutput {
		x = Sigmoid(x)
	}
	return x
}

// Conv2d is torch.nn.Conv2d on a channels-last input, with the PyTorch weight
// layout [out, in, kh, kw], as an im2col matrix product (exact and with the
// right gradients on every backend).
//
//	x: [B, H, W, C] -> [B, H', W', out]
func Conv2d(scope *model.Scope, x *Node, out, k, stride, pad int, bias bool) *Node {
	g := x.Graph()
	c := x.Shape().Dim(3)
	weight := Param(scope, g, "weight", out, c, k, k) // [out, in, kh, kw]
	y := conv2dWeight(x, weight, stride, pad)
	if bias {
		y = Add(y, lastAxis(y, Param(scope, g, "bias", out)))
	}
	return y
}

// conv2dWeight is conv2d with a given weight [out, in, k, k] (no bias).
//
//	x: [B, H, W, in] -> [B, H', W', out]
func conv2dWeight(x, weight *Node, stride, pad int) *Node {
	g := x.Graph()
	dims := x.Shape().Dimensions
	b, h, w, c := dims[0], dims[1], dims[2], dims[3]
	out, k := weight.Shape().Dim(0), weight.Shape().Dim(2)
	var y *Node
	switch {
	case k == 1 && stride == 1 && pad == 0:
		y = Einsum("bhwc,oc->bhwo", x, Reshape(weight, out, c))
	case k == stride && pad == 0 && h%k == 0 && w%k == 0:
		// Non-overlapping patches: a reshape gives every patch. The products
		// contract one flattened axis (GoMLX v0.28's gradient of a DotGeneral
		// with several contracting axes in different orders has the wrong shape).
		p := Reshape(x, b, h/k, k, w/k, k, c)                       // [B, h', kh, w', kw, C]
		p = TransposeAllAxes(p, 0, 1, 3, 5, 2, 4)                   // [B, h', w', C, kh, kw]
		p = Reshape(p, b, h/k, w/k, c*k*k)                          // [B, h', w', C*kh*kw]
		y = Einsum("bhwk,ok->bhwo", p, Reshape(weight, out, c*k*k)) // [B, h', w', out]
	default:
		if pad > 0 {
			x = Pad(x, ScalarZero(g, x.DType()), PadAxis{}, PadAxis{Start: pad, End: pad}, PadAxis{Start: pad, End: pad}, PadAxis{})
		}
		hp, wp := h+2*pad, w+2*pad
		oh, ow := (hp-k)/stride+1, (wp-k)/stride+1
		patches := make([]*Node, 0, k*k)
		for p := 0; p < k; p++ {
			for q := 0; q < k; q++ {
				patches = append(patches, Slice(x, AxisRange(),
					AxisRange(p, p+stride*(oh-1)+1).Stride(stride),
					AxisRange(q, q+stride*(ow-1)+1).Stride(stride),
					AxisRange()))
			}
		}
		// The products need the patches and the kernel in one tap order.
		// Reordering costs a generic transpose (the channels move), so the
		// smaller of the two is reordered: the kernel when there are more
		// output positions than output channels, else the patches (SAM-Med2D's
		// adapter: 64 positions, 768 channels: 0.4 M values instead of 5.3 M).
		cols := Stack(patches, 3) // [B, oh, ow, kh*kw, C]
		var kern *Node
		if b*oh*ow < out {
			cols = Reshape(SwapLastAxes(cols), b, oh, ow, c*k*k) // [B, oh, ow, C*kh*kw]
			kern = Reshape(weight, out, c*k*k)                   // [out, C*kh*kw]
		} else {
			cols = Reshape(cols, b, oh, ow, k*k*c)                                 // [B, oh, ow, kh*kw*C]
			kern = Reshape(SwapLastAxes(Reshape(weight, out, c, k*k)), out, k*k*c) // [out, kh*kw*C]
		}
		y = Einsum("bhwk,ok->bhwo", cols, kern)
	}
	return y
}

// SwapLastAxes swaps the last two axes. It is TransposeAllAxes written so
// that GoMLX's pure-Go backend takes one of its fast paths (the tiled 2D
// transpose for one matrix, its [0 2 1 3] row copy for a batch of them)
// instead of the generic per-value iterator it uses when the last axis
// moves (about 7 ns a value: SAM-Med2D's adapter kernels alone spent
// 0.4 s of a 1.3 s encoder call there).
//
//	x: [..., a, b] -> [..., b, a]
func SwapLastAxes(x *Node) *Node {
	dims := x.Shape().Dimensions
	r := len(dims)
	a, b := dims[r-2], dims[r-1]
	lead := 1
	for _, d := range dims[:r-2] {
		lead *= d
	}
	outDims := append(append([]int{}, dims[:r-2]...), b, a)
	if lead == 1 {
		return Reshape(TransposeAllAxes(Reshape(x, a, b), 1, 0), outDims...)
	}
	return Reshape(TransposeAllAxes(Reshape(x, lead, a, b, 1), 0, 2, 1, 3), outDims...)
}

// convTranspose2d is torch.nn.ConvTranspose2d on a channels-last input, with
// the PyTorch weight layout [in, out, kh, kw]; the kernel size must be a
// multiple of the stride (true of every SAM and SAM-Med2D layer).
//
//	x: [B, H, W, C] -> [B, (H-1)*s - 2*pad + k, (W-1)*s - 2*pad + k, out]
func convTranspose2d(scope *model.Scope, x *Node, out, k, stride, pad int, bias bool) *Node {
	g := x.Graph()
	dims := x.Shape().Dimensions
	b, h, w, c := dims[0], dims[1], dims[2], dims[3]
	if k%stride != 0 {
		panic(fmt.Sprintf("convTranspose2d: kernel %d is not a multiple of stride %d", k, stride))
	}
	weight := Param(scope, g, "weight", c, out, k, k) // [in, out, kh, kw]
	r := k / stride
	if r == 1 && pad == 0 {
		// Kernel = stride (every SAM up-scaling layer): the patches do not
		// overlap, so one product and a pixel shuffle do it. The weight is
		// reordered (small) so the product comes out in the order the
		// shuffle needs, with no copy of the large output in between.
		wt := Reshape(SwapLastAxes(Reshape(weight, c, out, k*k)), c, k, k, out) // [in, kh, kw, out]
		y := Einsum("bijc,cpqo->bijpqo", x, wt)                                 // [B, H, W, k, k, out]
		y = TransposeAllAxes(y, 0, 1, 3, 2, 4, 5)                               // [B, H, k, W, k, out]
		z := Reshape(y, b, h*stride, w*stride, out)                             // [B, s*H, s*W, out]
		if bias {
			z = Add(z, lastAxis(z, Param(scope, g, "bias", out)))
		}
		return z
	}
	// Each input pixel writes a k×k patch; split kernel offsets p = a*s + u.
	y := Einsum("bijc,copq->bijopq", x, weight)                                  // [B, H, W, out, k, k]
	y = Reshape(SwapLastAxes(Reshape(y, b, h, w, out, k*k)), b, h, w, k, k, out) // [B, H, W, k, k, out]
	y = Reshape(y, b, h, w, r, stride, r, stride, out)                           // [B, H, W, a, u, a2, u2, out]
	var z *Node
	for a := 0; a < r; a++ {
		for a2 := 0; a2 < r; a2++ {
			part := Slice(y, AxisRange(), AxisRange(), AxisRange(), AxisElem(a), AxisRange(), AxisElem(a2), AxisRange(), AxisRange())
			part = Reshape(part, b, h, w, stride, stride, out) // [B, H, W, u, u2, out]
			if r > 1 {
				part = Pad(part, ScalarZero(g, x.DType()), PadAxis{},
					PadAxis{Start: a, End: r - 1 - a}, PadAxis{Start: a2, End: r - 1 - a2},
					PadAxis{}, PadAxis{}, PadAxis{})
			}
			if z == nil {
				z = part
			} else {
				z = Add(z, part)
			}
		}
	}
	hh, ww := h+r-1, w+r-1
	z = TransposeAllAxes(z, 0, 1, 3, 2, 4, 5)    // [B, hh, u, ww, u2, out]
	z = Reshape(z, b, hh*stride, ww*stride, out) // [B, s*hh, s*ww, out]
	if pad > 0 {
		z = Slice(z, AxisRange(), AxisRange(pad, hh*stride-pad), AxisRange(pad, ww*stride-pad), AxisRange())
	}
	if bias {
		z = Add(z, lastAxis(z, Param(scope, g, "bias", out)))
	}
	return z
}
