package segsam

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/sam"
)

func TestModalityClassesOf(t *testing.T) {
	ds, err := dataset.Open(filepath.Join("..", "testdata", "dataset", "demo_subset"))
	if err != nil {
		t.Fatal(err)
	}
	table := ModalityClassesOf(ds, nil)
	for _, tt := range []struct {
		modality, class string
		want            bool
	}{
		{"CT", "aorta", true},
		{"CT", "inferior_vena_cava", true},
		{"MR", "left_ventricle", true},
		{"MR", "myocardium", true},
		{"ultrasound", "fetal_head", true},
		{"endoscopy", "polyp", true},
		{"endoscopy", "aorta", false},
		{"CT", "polyp", false},
	} {
		if got := slices.Contains(table[tt.modality], tt.class); got != tt.want {
			t.Errorf("%s has %s: %v, want %v (table %v)", tt.modality, tt.class, got, tt.want, table[tt.modality])
		}
	}
	for mod, cs := range table {
		if !slices.IsSorted(cs) || len(slices.Compact(slices.Clone(cs))) != len(cs) {
			t.Errorf("%s: classes %v not sorted and unique", mod, cs)
		}
	}
	for _, e := range ds.Images {
		for _, m := range e.Masks {
			if !slices.Contains(table[e.Modality], m.Class) {
				t.Errorf("%s (%s): class %s missing from the table", e.Path, e.Modality, m.Class)
			}
		}
	}
}

// TestModalityPrior checks PredictIn: the class is chosen among the
// classes of the image's modality, their probabilities renormalised with
// their ratios kept, the others 0; no modality, one the table lacks, or one
// whose classes are none of the vocabulary's leave the prediction as it is;
// masks never change.
func TestModalityPrior(t *testing.T) {
	m := tinyModel(t, "seg_sam")
	p := NewPredictor(m)
	if err := p.SetImage(fixtureImage(t)); err != nil {
		t.Fatal(err)
	}
	pr := sam.Prompt{Boxes: []sam.Box{{20, 24, 70, 80}}}
	free, err := p.Predict(pr)
	if err != nil {
		t.Fatal(err)
	}
	probs := free.ClassProbs[0]
	top := free.ClassIndex[0]
	var others []string
	for i, c := range m.Config.Classes {
		if i != top {
			others = append(others, c)
		}
	}
	m.Config.ModalityClasses = map[string][]string{"CT": others, "MR": {"not_in_the_vocabulary"}}

	got, err := p.PredictIn(pr, "ct") // any spelling NormalizeModality accepts
	if err != nil {
		t.Fatal(err)
	}
	if got.Class[0] == free.Class[0] || !slices.Contains(others, got.Class[0]) {
		t.Errorf("class %s with the prior, %s without; want one of %v", got.Class[0], free.Class[0], others)
	}
	var sum float64
	for _, v := range got.ClassProbs[0] {
		sum += float64(v)
	}
	if got.ClassProbs[0][top] != 0 || math.Abs(sum-1) > 1e-5 {
		t.Errorf("probabilities %v: want 0 for %s and a sum of 1", got.ClassProbs[0], free.Class[0])
	}
	i, j := slices.Index(m.Config.Classes, others[0]), slices.Index(m.Config.Classes, others[1])
	if r0, r1 := probs[i]/probs[j], got.ClassProbs[0][i]/got.ClassProbs[0][j]; math.Abs(float64(r0-r1)) > 1e-4*float64(r0) {
		t.Errorf("ratio of %s to %s: %v without the prior, %v with it", others[0], others[1], r0, r1)
	}
	for k := range got.Masks {
		if got.Masks[k] != free.Masks[k] {
			t.Fatalf("mask logit %d changed with the prior", k)
		}
	}
	for _, mod := range []string{"", "PET", "MR"} {
		same, err := p.PredictIn(pr, mod)
		if err != nil {
			t.Fatal(err)
		}
		if same.Class[0] != free.Class[0] || same.Confidence[0] != free.Confidence[0] {
			t.Errorf("modality %q: class %s %v, want the unrestricted %s %v", mod, same.Class[0], same.Confidence[0], free.Class[0], free.Confidence[0])
		}
	}
}

// TestWriteModalityClasses: the table lands in the checkpoint's config,
// weights and other metadata unchanged.
func TestWriteModalityClasses(t *testing.T) {
	m := tinyModel(t, "seg_sam")
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.safetensors"), filepath.Join(dir, "out.safetensors")
	if err := m.Save(in, map[string]string{"epoch": "9"}); err != nil {
		t.Fatal(err)
	}
	table := map[string][]string{"CT": {"kidney", "liver"}, "MR": {"spleen"}}
	if err := WriteModalityClasses(in, out, table); err != nil {
		t.Fatal(err)
	}
	a, err := Load(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Config.ModalityClasses) != 0 || !slices.Equal(b.Config.ModalityClasses["CT"], table["CT"]) || !slices.Equal(b.Config.ModalityClasses["MR"], table["MR"]) {
		t.Errorf("tables: before %v, after %v", a.Config.ModalityClasses, b.Config.ModalityClasses)
	}
	ta, err := a.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	if len(ta) != len(tb) {
		t.Fatalf("%d tensors before, %d after", len(ta), len(tb))
	}
	for i := range ta {
		if ta[i].Name != tb[i].Name || !slices.Equal(ta[i].Data, tb[i].Data) {
			t.Fatalf("tensor %s changed", ta[i].Name)
		}
	}
	if err := WriteModalityClasses(filepath.Join(dir, "missing.safetensors"), out, table); err == nil {
		t.Error("a missing checkpoint: no error")
	}
}
