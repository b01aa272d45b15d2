package eval

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/dataset"
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

// oracleAuto labels each image with its own ground truth (one label value
// per class), except that it calls kidneys "liver".
type oracleAuto struct {
	ruleSegmenter
	ds *dataset.Dataset
}

func (o *oracleAuto) Name() string { return "oracle" }

func (o *oracleAuto) SegmentAuto(_ context.Context, path string, h, w int) ([]uint16, map[int]string, error) {
	for _, e := range o.ds.Images {
		if e.ImagePath() != path {
			continue
		}
		labels := make([]uint16, h*w)
		names := map[int]string{}
		ids := map[string]int{}
		for mi, m := range e.Masks {
			name := m.Class
			if name == "kidney" {
				name = "liver"
			}
			if ids[name] == 0 {
				ids[name] = len(ids) + 1
				names[ids[name]] = name
			}
			gt, err := e.LoadMaskBits(mi)
			if err != nil {
				return nil, nil, err
			}
			for p, on := range gt {
				if on {
					labels[p] = uint16(ids[name])
				}
			}
		}
		return labels, names, nil
	}
	return nil, nil, fmt.Errorf("no image %s", path)
}

// TestRunAuto checks eval --auto's rows: automatic rows only when no prompt
// is asked, the class-agnostic DSC and the per-class (semantic) DSC of each
// object against the label map, and no automatic rows for Segmenters that
// cannot label without a prompt.
func TestRunAuto(t *testing.T) {
	ds := openSubset(t)
	oracle := &oracleAuto{ds: ds}
	rep, err := Run(context.Background(), ds, []Segmenter{oracle, &Baseline{Shape: ShapeBox}}, Options{Auto: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Kinds) != 0 || !rep.Auto {
		t.Fatalf("kinds %v, auto %v", rep.Kinds, rep.Auto)
	}
	if len(rep.Results) != rep.Objects {
		t.Fatalf("%d results for %d objects", len(rep.Results), rep.Objects)
	}
	// Objects whose class is alone in its image and does not overlap
	// another object's mask: the oracle's label region is the object.
	for _, r := range rep.Results {
		if r.Method != "oracle" || r.Prompt != KindAuto || r.SemanticDSC == nil {
			t.Fatalf("result %+v", r)
		}
		switch {
		case r.Class == "kidney":
			if *r.SemanticDSC != 0 || r.DSC <= 0 {
				t.Errorf("%s: misnamed kidney DSC %v, semantic %v", r.Mask, r.DSC, *r.SemanticDSC)
			}
		case strings.HasPrefix(r.Image, "images/amos"):
			// aorta, vena cava and liver: distinct classes.
			if math.Abs(r.DSC-*r.SemanticDSC) > 1e-12 || r.DSC < 0.95 {
				t.Errorf("%s: DSC %v, semantic %v", r.Mask, r.DSC, *r.SemanticDSC)
			}
		}
	}
	found := false
	for _, row := range rep.Rows {
		found = found || (row.Method == "oracle" && row.Prompt == KindAuto)
		if row.Method != "oracle" {
			t.Errorf("row of %s: the baseline has no automatic mode", row.Method)
		}
	}
	if !found {
		t.Error("no automatic row")
	}
	out := t.TempDir()
	if err := rep.Write(out); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, SummaryMDFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "Auto (no prompt)") {
		t.Errorf("summary.md has no automatic row:\n%s", md)
	}
	// With a prompt kind, both kinds of rows.
	rep, err = Run(context.Background(), ds, []Segmenter{oracle}, Options{Auto: true, Prompt: "box"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2*rep.Objects {
		t.Errorf("%d results for %d objects, box and auto", len(rep.Results), rep.Objects)
	}
}
