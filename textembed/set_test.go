package textembed

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
)

func sampleSet() Set {
	return Set{
		Provider: "hashed", Model: "hashed-v1-d4",
		Classes:          []string{"liver", "spleen", "aorta"},
		Texts:            []string{"Liver. Texture: a.", "Spleen. Texture: b.", "Aorta. Texture: c."},
		Vectors:          [][]float32{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 0.6, 0.8}},
		KnowledgeVersion: "1.0.0",
	}
}

// clone deep-copies a set so that tests can mutate it.
func clone(s Set) Set {
	c := s
	c.Classes = slices.Clone(s.Classes)
	c.Texts = slices.Clone(s.Texts)
	c.Vectors = nil
	for _, v := range s.Vectors {
		c.Vectors = append(c.Vectors, slices.Clone(v))
	}
	return c
}

func TestFingerprint(t *testing.T) {
	base := sampleSet()
	fp := base.Fingerprint()
	if len(fp) != 64 || fp != clone(base).Fingerprint() {
		t.Fatalf("fingerprint %q not stable", fp)
	}
	tests := []struct {
		name   string
		mutate func(s *Set)
		same   bool
	}{
		{"provider", func(s *Set) { s.Provider = "openai" }, false},
		{"model", func(s *Set) { s.Model = "hashed-v1-d8" }, false},
		{"class name", func(s *Set) { s.Classes[1] = "Spleen" }, false},
		{"class order", func(s *Set) { s.Classes[0], s.Classes[1] = s.Classes[1], s.Classes[0] }, false},
		{"text", func(s *Set) { s.Texts[2] += " " }, false},
		{"no texts", func(s *Set) { s.Texts = nil }, false},
		{"one vector bit", func(s *Set) { s.Vectors[2][3] = math.Nextafter32(0.8, 1) }, false},
		{"negative zero", func(s *Set) { s.Vectors[0][1] = float32(math.Copysign(0, -1)) }, false},
		{"string boundaries", func(s *Set) { s.Provider, s.Model = "hashedhashed-v1", "-d4" }, false},
		{"knowledge version only", func(s *Set) { s.KnowledgeVersion = "2.0.0" }, true},
	}
	for _, tc := range tests {
		s := clone(base)
		tc.mutate(&s)
		if got := s.Fingerprint() == fp; got != tc.same {
			t.Errorf("%s: fingerprint unchanged = %v, want %v", tc.name, got, tc.same)
		}
	}
}

func TestCompare(t *testing.T) {
	base := sampleSet()
	if err := base.Compare(clone(base)); err != nil {
		t.Fatalf("identical sets: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(s *Set)
		want   []string
	}{
		{"provider", func(s *Set) { s.Provider = "openai" }, []string{`provider: expected "hashed", got "openai"`}},
		{"model", func(s *Set) { s.Model = "m2" }, []string{`model: expected "hashed-v1-d4", got "m2"`}},
		{"order", func(s *Set) {
			s.Classes[0], s.Classes[1] = s.Classes[1], s.Classes[0]
			s.Texts[0], s.Texts[1] = s.Texts[1], s.Texts[0]
			s.Vectors[0], s.Vectors[1] = s.Vectors[1], s.Vectors[0]
		}, []string{`class order: position 0 expected "liver", got "spleen"`}},
		{"missing and extra", func(s *Set) { s.Classes[2] = "colon" }, []string{`missing classes: "aorta"`, `unexpected classes: "colon"`}},
		{"fewer", func(s *Set) {
			s.Classes, s.Texts, s.Vectors = s.Classes[:2], s.Texts[:2], s.Vectors[:2]
		}, []string{"number of classes: expected 3, got 2", `missing classes: "aorta"`}},
		{"text", func(s *Set) { s.Texts[1] = "Spleen. Texture: B." }, []string{
			`text of 1 class(es) changed: "spleen" (from character 17: expected "b.", got "B.")`}},
		{"text and version", func(s *Set) { s.Texts[0] = "x"; s.KnowledgeVersion = "1.1.0" }, []string{
			`text of 1 class(es) changed: "liver"`, `(class knowledge: expected version "1.0.0", got "1.1.0")`}},
		{"dimension", func(s *Set) {
			for i := range s.Vectors {
				s.Vectors[i] = append(s.Vectors[i], 0)
			}
		}, []string{"dimension: expected 4, got 5"}},
		{"vector values", func(s *Set) { s.Vectors[2][2] = 0.5 }, []string{`vectors of 1 class(es) differ: "aorta" (max |difference| 0.1)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			other := clone(base)
			tc.mutate(&other)
			err := base.Compare(other)
			var me *MismatchError
			if !errors.As(err, &me) {
				t.Fatalf("Compare = %v, want a *MismatchError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			// A reordering is reported once, not as changed texts or vectors.
			if tc.name == "order" && len(me.Differences) != 1 {
				t.Errorf("differences %q, want only the order", me.Differences)
			}
		})
	}
}

func TestCompareListsAtMostFive(t *testing.T) {
	a := Set{Provider: "p", Model: "m"}
	for i := range 9 {
		a.Classes = append(a.Classes, string(rune('a'+i)))
		a.Texts = append(a.Texts, "t")
		a.Vectors = append(a.Vectors, []float32{1})
	}
	b := clone(a)
	for i := range b.Vectors {
		b.Vectors[i][0] = 2
	}
	err := a.Compare(b)
	if err == nil || !strings.Contains(err.Error(), "vectors of 9 class(es) differ") || !strings.Contains(err.Error(), "and 4 more") {
		t.Fatalf("Compare = %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *Set)
		want   string
	}{
		{"ok", func(s *Set) {}, ""},
		{"no texts is fine", func(s *Set) { s.Texts = nil }, ""},
		{"no provider", func(s *Set) { s.Provider = "" }, "empty provider"},
		{"no classes", func(s *Set) { s.Classes, s.Texts, s.Vectors = nil, nil, nil }, "no classes"},
		{"empty class", func(s *Set) { s.Classes[1] = " " }, "class 1 has an empty name"},
		{"duplicate class", func(s *Set) { s.Classes[2] = "liver" }, `class "liver" appears twice`},
		{"text count", func(s *Set) { s.Texts = s.Texts[:1] }, "1 texts for 3 classes"},
		{"vector count", func(s *Set) { s.Vectors = s.Vectors[:2] }, "2 vectors for 3 classes"},
		{"ragged", func(s *Set) { s.Vectors[1] = []float32{1} }, `class "spleen" has length 1, want 4`},
		{"empty vectors", func(s *Set) { s.Vectors = [][]float32{{}, {}, {}} }, "vectors are empty"},
		{"NaN", func(s *Set) { s.Vectors[0][2] = float32(math.NaN()) }, "non-finite value at 2"},
	}
	for _, tc := range tests {
		s := clone(sampleSet())
		tc.mutate(&s)
		err := s.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestMatrix(t *testing.T) {
	m := sampleSet().Matrix()
	want := []float32{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0.6, 0.8}
	if !slices.Equal(m, want) {
		t.Fatalf("Matrix = %v", m)
	}
}
