package eval

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/segsam/segsam/dataset"
)

// KindAuto labels the rows of automatic (prompt-free) segmentation.
const KindAuto = "auto"

// AutoSegmenter is a Segmenter that also labels a whole image without a
// prompt ("label everything"): a label map (h×w row-major, 0 background)
// and the class name of each label value.
type AutoSegmenter interface {
	SegmentAuto(ctx context.Context, imagePath string, h, w int) (labels []uint16, names map[int]string, err error)
}

// autoObject is one ground-truth object of an image.
type autoObject struct {
	mask int
	gt   []bool
	area int
}

// recordAuto labels an image once and scores every ground-truth object
// against the label map as the prompted rows are scored: DSC with the
// label region (all pixels of one label value, whatever its class) that
// overlaps the object most, class-agnostic; the semantic DSC with the
// pixels labelled the object's class (0 when no pixel is: the class was
// missed or misnamed), i.e. the per-class Dice of the label map.
func (rep *Report) recordAuto(ctx context.Context, a AutoSegmenter, method string, semantic bool, galleryN int, e *dataset.ImageEntry, objs []autoObject) error {
	labels, names, err := a.SegmentAuto(ctx, e.ImagePath(), e.Height, e.Width)
	if err != nil {
		return fmt.Errorf("evaluate %s (auto) on %s: %w", method, e.Path, err)
	}
	if len(labels) != e.Width*e.Height {
		return fmt.Errorf("evaluate %s (auto) on %s: label map of %d pixels, want %d", method, e.Path, len(labels), e.Width*e.Height)
	}
	preds := make([]Prediction, len(objs))
	for i, o := range objs {
		class := e.Masks[o.mask].Class
		hits := map[uint16]int{}
		named := make([]bool, len(labels))
		any := false
		for p, l := range labels {
			if l == 0 {
				continue
			}
			if o.gt[p] {
				hits[l]++
			}
			if names[int(l)] == class {
				named[p], any = true, true
			}
		}
		best, bestN := uint16(0), 0
		for l, n := range hits {
			if n > bestN || (n == bestN && l < best) {
				best, bestN = l, n
			}
		}
		region := make([]bool, len(labels))
		if best != 0 {
			for p, l := range labels {
				region[p] = l == best
			}
		}
		pr := Prediction{Mask: region, SemanticMask: named, Class: names[int(best)]}
		if any {
			pr.Class = class
		}
		preds[i] = pr
	}
	rep.record(method, semantic, false, galleryN, e, preds, func(i int) (int, []bool, int, Prompt, string) {
		o := objs[i]
		return o.mask, o.gt, o.area, Prompt{Kind: KindAuto}, KindAuto
	})
	return nil
}

// ClassDice is one class's Dice between an automatic label map and the
// ground truth, classes matched by name.
type ClassDice struct {
	Class string  `json:"class"`
	Dice  float64 `json:"dice"`
	// Truth and Pred count the class's pixels (voxels) in each map, Inter
	// those in both.
	Truth int `json:"truth"`
	Pred  int `json:"pred"`
	Inter int `json:"inter"`
	// InVocabulary tells whether the model can name the class at all.
	InVocabulary bool `json:"in_vocabulary"`
}

// LabelMapDice compares two label maps of the same grid whose values are
// named by predNames and truthNames (value -> class name; values without a
// name are ignored): one row per class in either map, sorted by name. mean
// is the mean Dice over the ground-truth classes in vocab (the classes the
// model knows; all truth classes when vocab is nil), n their number.
func LabelMapDice(pred []uint16, predNames map[int]string, truth []int32, truthNames map[int]string, vocab []string) (rows []ClassDice, mean float64, n int) {
	type acc struct{ truth, pred, inter int }
	by := map[string]*acc{}
	get := func(name string) *acc {
		a := by[name]
		if a == nil {
			a = &acc{}
			by[name] = a
		}
		return a
	}
	for i := range pred {
		pn, tn := "", ""
		if pred[i] != 0 {
			pn = predNames[int(pred[i])]
		}
		if i < len(truth) && truth[i] != 0 {
			tn = truthNames[int(truth[i])]
		}
		if pn != "" {
			get(pn).pred++
		}
		if tn != "" {
			get(tn).truth++
			if pn == tn {
				get(tn).inter++
			}
		}
	}
	for name, a := range by {
		d := 0.0
		if a.truth+a.pred > 0 {
			d = 2 * float64(a.inter) / float64(a.truth+a.pred)
		}
		inVocab := vocab == nil || slices.Contains(vocab, name)
		rows = append(rows, ClassDice{Class: name, Dice: d, Truth: a.truth, Pred: a.pred, Inter: a.inter, InVocabulary: inVocab})
		if a.truth > 0 && inVocab {
			mean += d
			n++
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Class < rows[j].Class })
	if n > 0 {
		mean /= float64(n)
	}
	return rows, mean, n
}
