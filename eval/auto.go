package eval

import (
	"slices"
	"sort"
)

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
