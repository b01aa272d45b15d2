package eval

import (
	"math"
	"testing"
)

func TestLabelMapDice(t *testing.T) {
	// Prediction IDs 5 (liver) and 7 (heart); truth values 1 (liver) and 2
	// (rib_99, outside the vocabulary).
	pred := []uint16{5, 5, 5, 0, 7, 0}
	truth := []int32{1, 1, 0, 1, 0, 2}
	rows, mean, n := LabelMapDice(pred, map[int]string{5: "liver", 7: "heart"}, truth, map[int]string{1: "liver", 2: "rib_99"}, []string{"liver", "heart"})
	want := map[string]ClassDice{
		"heart":  {Class: "heart", Dice: 0, Pred: 1, InVocabulary: true},
		"liver":  {Class: "liver", Dice: 2 * 2.0 / 6, Truth: 3, Pred: 3, Inter: 2, InVocabulary: true},
		"rib_99": {Class: "rib_99", Dice: 0, Truth: 1},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v", rows)
	}
	for _, r := range rows {
		w := want[r.Class]
		if math.Abs(r.Dice-w.Dice) > 1e-12 || r.Truth != w.Truth || r.Pred != w.Pred || r.Inter != w.Inter || r.InVocabulary != w.InVocabulary {
			t.Errorf("%s: %+v, want %+v", r.Class, r, w)
		}
	}
	// Only liver is a truth class the model knows.
	if n != 1 || math.Abs(mean-2.0/3) > 1e-12 {
		t.Errorf("mean %v over %d", mean, n)
	}
}
