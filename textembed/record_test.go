package textembed

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRecordCheck(t *testing.T) {
	base := sampleSet()
	rec := base.Record()
	// A record survives a JSON round trip (it lives in checkpoint metadata).
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var back Record
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Check(clone(base)); err != nil {
		t.Fatalf("same set: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(s *Set)
		want   []string
	}{
		{"provider and model", func(s *Set) { s.Provider, s.Model = "openai", "text-embedding-3-small" }, []string{
			`provider: expected "hashed", got "openai"`, `model: expected "hashed-v1-d4", got "text-embedding-3-small"`}},
		{"order", func(s *Set) {
			s.Classes[1], s.Classes[2] = s.Classes[2], s.Classes[1]
			s.Texts[1], s.Texts[2] = s.Texts[2], s.Texts[1]
			s.Vectors[1], s.Vectors[2] = s.Vectors[2], s.Vectors[1]
		}, []string{`class order: position 1 expected "spleen", got "aorta"`}},
		{"text", func(s *Set) { s.Texts[0] = "Liver, rewritten."; s.KnowledgeVersion = "1.1.0" }, []string{
			`text of 1 class(es) changed: "liver" (class knowledge: expected version "1.0.0", got "1.1.0")`}},
		{"vector", func(s *Set) { s.Vectors[1][0] = 1e-7 }, []string{`vectors of 1 class(es) differ: "spleen"`}},
		{"dimension", func(s *Set) {
			for i := range s.Vectors {
				s.Vectors[i] = s.Vectors[i][:2]
			}
		}, []string{"dimension: expected 4, got 2"}},
		{"classes", func(s *Set) { s.Classes[0] = "hepar" }, []string{`missing classes: "liver"`, `unexpected classes: "hepar"`}},
	}
	for _, tc := range tests {
		s := clone(base)
		tc.mutate(&s)
		err := back.Check(s)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", tc.name, err, w)
			}
		}
		if tc.name == "order" && strings.Contains(err.Error(), "changed") {
			t.Errorf("order change reported as changed texts: %v", err)
		}
	}
}
