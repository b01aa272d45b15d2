package train

import (
	"fmt"
	"math/rand/v2"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/sam"
)

// Iterative click simulation: SAM-Med2D's interactive training (its
// train.py, which the paper follows), issue 17.2.
//
// After a step's first round (one box or one point per object), ClickRounds
// further optimisation steps run on the same batch. Each round's prompt is
// made of new points drawn uniformly from the previous round's error region
// (a missed object pixel is a positive click, a wrongly covered background
// pixel a negative one) plus the previous round's low-res logits as the mask
// prompt. As in SAM-Med2D: the clicks replace the prompt (the box is
// dropped); the number of clicks is drawn per round for the whole batch from
// {1, 3, 5, 9}; the image embedding is held at the first round's (the
// encoder gets no gradient from the rounds); each round is its own optimiser
// step with single-mask output. One difference: SAM-Med2D feeds
// sigmoid(logits) as mask_input, segsam feeds the logits, which is what SAM's
// predictor (and `segsam predict --mask-input`) passes at inference.

// clickChoices are the numbers of clicks a round may add (SAM-Med2D's
// point_list).
var clickChoices = []int{1, 3, 5, 9}

// errorClicks draws n clicks for one object from the error region of its
// prediction: pred and gt are [S*S] 0/1 masks in the model-input frame. A
// click on a missed pixel is positive, on a false-positive pixel negative.
// With no error at all the clicks are positive, on the object. Clicks are
// drawn with replacement (SAM-Med2D does the same when the region is small).
//
//	-> coords [n*2] (x, y pixel centres), labels [n]
func errorClicks(pred []float32, gt []uint8, fg []int32, n, s int, rng *rand.Rand) ([]float32, []int32) {
	var errs []int32
	for i, g := range gt {
		p := pred[i] > 0.5
		if p != (g != 0) {
			errs = append(errs, int32(i))
		}
	}
	coords := make([]float32, 0, 2*n)
	labels := make([]int32, 0, n)
	for range n {
		var idx int32
		if len(errs) > 0 {
			idx = errs[rng.IntN(len(errs))]
		} else {
			idx = fg[rng.IntN(len(fg))]
		}
		coords = append(coords, float32(int(idx)%s), float32(int(idx)/s))
		if gt[idx] != 0 {
			labels = append(labels, sam.LabelPositive)
		} else {
			labels = append(labels, sam.LabelNegative)
		}
	}
	return coords, labels
}

// clickRounds runs the step's extra rounds. first are the first round's
// inputs (t.inputs), out its outputs: [loss, prediction [B, S, S], low-res
// logits [B, 1, 4g, 4g], embedding [B, C, g, g]]. It returns the summed
// loss vectors of the rounds.
func (t *trainer) clickRounds(b batch, step []stepImage, first []any, out []*tensors.Tensor) ([]float64, error) {
	rng := rand.New(rand.NewPCG(b.seed^0x5eed_c11c, uint64(t.opts.Seed)+17))
	s := t.s
	var gts [][]uint8
	var fgs [][]int32
	for _, im := range step {
		for _, oi := range im.chosen {
			gts = append(gts, im.objects[oi].mask)
			fgs = append(fgs, im.objects[oi].fg)
		}
	}
	n := len(gts)
	emb, pred, low := out[3], out[1], out[2]
	multi := tensors.FromFlatDataAndDimensions(make([]float32, n), n) // single-mask output
	var sums []float64
	for r := 0; r < t.opts.ClickRounds; r++ {
		predData, err := tensors.CopyFlatData[float32](pred)
		if err != nil {
			return nil, err
		}
		k := clickChoices[rng.IntN(len(clickChoices))]
		coords := make([]float32, 0, n*k*2)
		labels := make([]int32, 0, n*k)
		for i := range n {
			c, l := errorClicks(predData[i*s*s:(i+1)*s*s], gts[i], fgs[i], k, s, rng)
			coords = append(coords, c...)
			labels = append(labels, l...)
		}
		in := []any{emb,
			tensors.FromFlatDataAndDimensions(coords, n, k, 2),
			tensors.FromFlatDataAndDimensions(labels, n, k),
			first[3], first[4], first[5], multi, first[7], low}
		res, err := t.clickExec.Call(in...)
		if err != nil {
			return nil, fmt.Errorf("click round %d: %w", r+1, err)
		}
		loss, err := tensors.CopyFlatData[float32](res[0])
		if err != nil {
			return nil, err
		}
		if sums == nil {
			sums = make([]float64, len(loss))
		}
		for j, v := range loss {
			sums[j] += float64(v)
		}
		pred, low = res[1], res[2]
	}
	return sums, nil
}
