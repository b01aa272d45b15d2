package segsam

import (
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
)

// Targets are the ground truth of B prompted objects, in the model-input frame.
type Targets struct {
	Mask     *Node // [B, S, S] 1 inside the prompted object, else 0
	Class    *Node // [B] int32 class index of the object
	Presence *Node // [B, K] 1 for every class annotated in the object's image
	// Multimask [B] is 1 where the prompt is ambiguous (a single point): the
	// loss then takes the best of Dec_sag's multimask outputs, as SAM trains.
	Multimask *Node
	// ClassMasks [B, K, 4g, 4g] is the image's union mask per class (SAWD_sem only).
	ClassMasks *Node
}

// LossTerms are the terms of eq. 11, each a scalar; Total is their weighted sum.
type LossTerms struct {
	Total, Binary, Focal, Dice, IoU, Semantic, Class, SemDice, Presence, CMSA, SemBCE *Node
}

// LossNames lists the terms in the order of LossTerms.Vector.
var LossNames = []string{"total", "binary", "focal", "dice", "iou_mse", "semantic", "class_ce", "sem_dice", "presence_bce", "cmsa", "sem_bce"}

// Vector stacks the terms (zeros for the absent ones) in LossNames order: [11].
func (l LossTerms) Vector(g *Graph) *Node {
	terms := []*Node{l.Total, l.Binary, l.Focal, l.Dice, l.IoU, l.Semantic, l.Class, l.SemDice, l.Presence, l.CMSA, l.SemBCE}
	for i, t := range terms {
		if t == nil {
			terms[i] = ScalarZero(g, dtypes.Float32)
		}
	}
	return Stack(terms, 0)
}

// focalLoss is the sigmoid focal loss (γ = 2, α = 0.25) averaged over pixels.
//
//	logits, target: [..., H, W] -> [...]
func focalLoss(logits, target *Node) *Node {
	p := Sigmoid(logits)
	// Binary cross-entropy with logits: max(x,0) - x·t + log(1 + exp(-|x|)).
	ce := Add(Sub(ReLU(logits), Mul(logits, target)), Log1p(Exp(Neg(Abs(logits)))))
	pt := Add(Mul(p, target), Mul(OneMinus(p), OneMinus(target)))
	loss := Mul(ce, Square(OneMinus(pt)))
	alpha := Add(MulScalar(target, 0.25), MulScalar(OneMinus(target), 0.75))
	return ReduceMean(Mul(alpha, loss), -2, -1)
}

// diceLoss is 1 - (2|P∩T| + 1) / (|P| + |T| + 1) on probabilities.
//
//	prob, target: [..., H, W] -> [...]
func diceLoss(prob, target *Node) *Node {
	inter := ReduceSum(Mul(prob, target), -2, -1)
	sum := Add(ReduceSum(prob, -2, -1), ReduceSum(target, -2, -1))
	return OneMinus(Div(AddScalar(MulScalar(inter, 2), 1), AddScalar(sum, 1)))
}

// softIoU is |P∩Q| / |P∪Q| on probabilities (eq. 10's IoU).
//
//	p, q: [..., H, W] -> [...]
func softIoU(p, q *Node) *Node {
	inter := ReduceSum(Mul(p, q), -2, -1)
	union := Sub(Add(ReduceSum(p, -2, -1), ReduceSum(q, -2, -1)), inter)
	return Div(AddScalar(inter, 1e-6), AddScalar(union, 1e-6))
}

// bceWithLogits is the mean binary cross-entropy of logits against 0/1 targets.
func bceWithLogits(logits, target *Node) *Node {
	return ReduceAllMean(Add(Sub(ReLU(logits), Mul(logits, target)), Log1p(Exp(Neg(Abs(logits))))))
}

// ReLU is max(x, 0).
func ReLU(x *Node) *Node { return Max(x, ZerosLike(x)) }

// upsample resizes low-res logits to the target size (bilinear, half-pixel
// centres, like F.interpolate with align_corners=False).
//
//	x: [B, M, h, w] -> [B, M, S, S]
func upsample(x *Node, s int) *Node {
	return Interpolate(x, -1, -1, s, s).Bilinear().Done()
}

// Loss is eq. 11: L = L_bin + L_sem + L_cons + λ·L_bce.
//
// L_bin (Dec_sag): 20·focal + dice on the mask chosen as SAM trains (token 0
// for unambiguous prompts, the lowest-loss multimask output for single
// points), plus the IoU-prediction MSE of SAM-Med2D over every mask token. L_sem (Dec_saw):
// cross-entropy of the class + dice of the semantic mask. L_cons: 1 - IoU
// between the two decoders' mask probabilities (CMSA). L_bce: presence of
// each class (CO tokens). Baseline_sem adds the cross-entropy of Dec_sag's
// class token; SAWD_sem the BCE + dice of its full-image class masks.
func Loss(cfg Config, out Outputs, t Targets) LossTerms {
	w := cfg.Loss
	s := cfg.SAM.ImageEncoder.ImgSize
	m := cfg.SAM.NumMaskTokens()
	b := out.Binary.Shape().Dim(0)
	var l LossTerms

	target := InsertAxes(t.Mask, 1)   // [B, 1, S, S]
	logits := upsample(out.Binary, s) // [B, M, S, S]
	prob := Sigmoid(logits)
	targetM := BroadcastToDims(target, b, m, s, s)
	focal := focalLoss(logits, targetM) // [B, M]
	dice := diceLoss(prob, targetM)     // [B, M]
	hard := ConvertDType(GreaterThan(logits, ZerosLike(logits)), dtypes.Float32)
	trueIoU := StopGradient(softIoU(hard, targetM))                     // [B, M]
	iouMSE := Square(Sub(out.IoU, trueIoU))                             // [B, M]
	perToken := Add(MulScalar(focal, w.Focal), MulScalar(dice, w.Dice)) // [B, M]

	// Which token each object learns its mask from: 0, or the best of 1..M-1.
	multi := Slice(perToken, AxisRange(), AxisRange(1, m))                                         // [B, M-1]
	best := OneHot(AddScalar(ArgMin(StopGradient(multi), -1, dtypes.Int32), 1), m, dtypes.Float32) // [B, M]
	first := OneHot(ZerosLike(ConvertDType(t.Multimask, dtypes.Int32)), m, dtypes.Float32)         // [B, M]
	isMulti := InsertAxes(t.Multimask, -1)                                                         // [B, 1]
	choose := StopGradient(Add(Mul(isMulti, best), Mul(OneMinus(isMulti), first)))                 // [B, M]
	pick := func(x *Node) *Node { return ReduceSum(Mul(x, choose), -1) }                           // [B, M] -> [B]
	l.Focal = ReduceAllMean(pick(focal))
	l.Dice = ReduceAllMean(pick(dice))
	// The IoU head is supervised on every token, each against its own mask's
	// IoU (as SAM trains it): inference ranks all multimask outputs by it.
	// A box uses token 0 only, so its other tokens' scores are trained too
	// but never read.
	l.IoU = ReduceAllMean(iouMSE)
	if w.IoUChosenOnly {
		l.IoU = ReduceAllMean(pick(iouMSE)) // the ablation: one token per object
	}
	l.Binary = Add(ReduceAllMean(pick(perToken)), MulScalar(l.IoU, w.IoU))
	total := l.Binary

	if out.ClassLogits != nil {
		oneHot := OneHot(t.Class, cfg.NumClasses(), dtypes.Float32) // [B, K]
		l.Class = Neg(ReduceAllMean(ReduceSum(Mul(oneHot, LogSoftmax(out.ClassLogits, -1)), -1)))
		l.Semantic = l.Class
	}
	if cfg.Parts.SemanticDecoder {
		semLogits := upsample(InsertAxes(out.Semantic.Mask, 1), s) // [B, 1, S, S]
		semProb := Sigmoid(semLogits)
		l.SemDice = ReduceAllMean(diceLoss(semProb, target))
		l.Semantic = Add(l.Class, l.SemDice)
		if w.SemBCE > 0 {
			// Mask2Former's pixel term (the paper's [11] has BCE + dice):
			// dice alone gives a weak signal far from the object.
			l.SemBCE = bceWithLogits(semLogits, target)
			l.Semantic = Add(l.Semantic, MulScalar(l.SemBCE, w.SemBCE))
		}
		if cfg.Parts.CMSA {
			chosen := ReduceSum(Mul(prob, InsertAxes(choose, -1, -1)), 1) // [B, S, S]
			l.CMSA = ReduceAllMean(OneMinus(softIoU(Squeeze(semProb, 1), chosen)))
			total = Add(total, MulScalar(l.CMSA, w.CMSA))
		}
		if cfg.Parts.COTokens {
			l.Presence = bceWithLogits(out.Semantic.Presence, t.Presence)
			total = Add(total, MulScalar(l.Presence, w.Presence))
		}
		if cfg.Parts.FullImageSemantic && t.ClassMasks != nil {
			cm := out.Semantic.ClassMasks // [B, K, 4g, 4g]
			full := Add(bceWithLogits(cm, t.ClassMasks), ReduceAllMean(diceLoss(Sigmoid(cm), t.ClassMasks)))
			l.Presence = full
			total = Add(total, full)
		}
	}
	if l.Semantic != nil {
		total = Add(total, MulScalar(l.Semantic, w.Semantic))
	}
	l.Total = total
	return l
}
