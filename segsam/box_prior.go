package segsam

import (
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/sam"
)

// Box shape prior (segsam's addition, not in the paper; Parts.BoxPrior).
//
// A box prompt says more than two corner tokens carry into a small model
// trained from scratch: the object fills the box and touches its sides. The
// prior turns the box into a dense logit map, the ellipse inscribed in the
// box (positive inside, negative outside, saturating away from its edge),
// scaled by a learned weight, and adds it to the low-res mask logits of both
// decoders. Objects prompted by points only get no prior. A model with the
// prior starts from the "ellipse in the box" answer and learns the
// correction; at inference the prior is the same function of the same box,
// so nothing but the prompt goes in.

// boxPriorInit is the prior's initial logit scale: ±4 is a probability of
// 0.98 / 0.02 where the map saturates.
const boxPriorInit = 4.0

// boxPriorSharpness makes the map saturate at 2/3 and 4/3 of the ellipse's
// normalised radius.
const boxPriorSharpness = 3.0

// BoxPriorMap is the unscaled prior of each object's box prompt, in [-1, 1],
// zero for objects without a box.
//
//	coords: [B, N, 2] model-input pixels, labels: [B, N] -> [B, r, r]
//
// r is the low-res mask size (4g); cell (i, j) covers input pixels
// [s/r·j, s/r·(j+1)). Box corners are the labels LabelBoxTopLeft and
// LabelBoxBotRight; their x1, y1 are inclusive pixel indices, as the
// training prompts and SAM's box transform give them.
func BoxPriorMap(coords, labels *Node, s, r int) *Node {
	g := coords.Graph()
	b := coords.Shape().Dim(0)
	isTL := ConvertDType(Equal(labels, ConstAs(labels, sam.LabelBoxTopLeft)), dtypes.Float32)  // [B, N]
	isBR := ConvertDType(Equal(labels, ConstAs(labels, sam.LabelBoxBotRight)), dtypes.Float32) // [B, N]
	corner := func(sel *Node) *Node { return ReduceSum(Mul(coords, InsertAxes(sel, -1)), 1) }  // [B, 2]
	tl, br := corner(isTL), corner(isBR)
	hasBox := ReduceMax(isTL, 1)                                             // [B]
	centre := AddScalar(MulScalar(Add(tl, br), 0.5), 0.5)                    // [B, 2] (x, y)
	radius := Max(AddScalar(MulScalar(Sub(br, tl), 0.5), 0.5), OnesLike(tl)) // [B, 2], at least 1 px
	step := float64(s) / float64(r)
	cells := AddScalar(MulScalar(ConvertDType(Iota(g, shapes.Make(dtypes.Int32, r), 0), dtypes.Float32), step), step/2) // [r] pixel centres
	cx, cy := Slice(centre, AxisRange(), AxisElem(0)), Slice(centre, AxisRange(), AxisElem(1))                          // [B, 1]
	rx, ry := Slice(radius, AxisRange(), AxisElem(0)), Slice(radius, AxisRange(), AxisElem(1))
	dx := Div(Sub(InsertAxes(cells, 0), cx), rx)                            // [B, r] along x
	dy := Div(Sub(InsertAxes(cells, 0), cy), ry)                            // [B, r] along y
	rad := Sqrt(Add(InsertAxes(Square(dy), -1), InsertAxes(Square(dx), 1))) // [B, r(y), r(x)]
	prior := ClipScalar(MulScalar(OneMinus(rad), boxPriorSharpness), -1, 1)
	// A function of the prompt only: no gradient flows into it.
	return StopGradient(Mul(prior, BroadcastToDims(Reshape(hasBox, b, 1, 1), b, r, r))) // [B, r, r]
}

// boxPriorScale is the learned scale of the prior: boxPriorInit·(1 + w),
// w a zero-initialised weight at scope/box_prior/weight.
func boxPriorScale(scope *model.Scope, g *Graph) *Node {
	w := sam.Param(scope.At("box_prior"), g, "weight", 1) // [1], starts at 0
	return MulScalar(AddScalar(w, 1), boxPriorInit)
}

// addBoxPrior adds the scaled prior to mask logits.
//
//	logits: [B, M, r, r] or [B, r, r]; prior: [B, r, r]
func addBoxPrior(scope *model.Scope, logits, prior *Node) *Node {
	scaled := Mul(prior, ExpandLeftToRank(boxPriorScale(scope, prior.Graph()), 3)) // [B, r, r]
	if logits.Rank() == 4 {
		scaled = InsertAxes(scaled, 1) // [B, 1, r, r]
		scaled = BroadcastToDims(scaled, logits.Shape().Dimensions...)
	}
	return Add(logits, scaled)
}
