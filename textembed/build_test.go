package textembed

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/knowledge"
)

func TestBuildDemoClasses(t *testing.T) {
	var demo struct{ Classes []string }
	data, err := os.ReadFile(filepath.Join(testdata, "demo2d_classes.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &demo); err != nil {
		t.Fatal(err)
	}
	var progress [][2]int
	s, err := Build(context.Background(), mustHashed(t, 0), demo.Classes,
		WithProgress(func(done, total int) { progress = append(progress, [2]int{done, total}) }))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Vectors) != 48 || s.Dim() != DefaultHashedDim || s.Provider != "hashed" || s.KnowledgeVersion != knowledge.Version() {
		t.Fatalf("set: %d vectors of %d, provider %q, knowledge %q", len(s.Vectors), s.Dim(), s.Provider, s.KnowledgeVersion)
	}
	if len(progress) != 2 || progress[0] != [2]int{32, 48} || progress[1] != [2]int{48, 48} {
		t.Errorf("progress %v", progress)
	}
	for i, c := range demo.Classes {
		k, _ := knowledge.Lookup(c)
		if s.Classes[i] != c || s.Texts[i] != k.Description() {
			t.Errorf("class %d: %q / text of %q", i, s.Classes[i], k.Name)
		}
	}
}

func TestBuildResolution(t *testing.T) {
	ctx := context.Background()
	h := mustHashed(t, 32)
	tests := []struct {
		name    string
		classes []string
		opts    []BuildOption
		want    string // error substring; "" for success
	}{
		{"aliases", []string{"Liver", "IVC", "lung upper lobe left"}, nil, ""},
		{"unknown", []string{"liver", "unicorn_horn", "dragon_scale"}, nil, `unknown class(es) "unicorn_horn", "dragon_scale"`},
		{"unknown with description", []string{"liver", "unicorn_horn"},
			[]BuildOption{WithDescriptions(map[string]string{"unicorn_horn": "Unicorn horn. Texture: spiral."})}, ""},
		{"empty description", []string{"liver"}, []BuildOption{WithDescriptions(map[string]string{"liver": " "})}, "description is empty"},
		{"same class twice", []string{"liver", "spleen", "hepatic"}, nil, `"liver" (position 0) and "hepatic" (position 2) are the same class "liver"`},
		{"repeated name", []string{"liver", "liver"}, nil, "listed twice"},
		{"empty name", []string{"liver", ""}, nil, "class 1 has an empty name"},
		{"none", nil, nil, "no classes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Build(ctx, h, tc.classes, tc.opts...)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Vectors) != len(tc.classes) {
				t.Fatalf("%d vectors", len(s.Vectors))
			}
		})
	}
	// Only supplied texts: no knowledge version is recorded.
	s, err := Build(ctx, h, []string{"x"}, WithDescriptions(map[string]string{"x": "A thing."}))
	if err != nil || s.KnowledgeVersion != "" || s.Texts[0] != "A thing." {
		t.Errorf("set %+v, %v", s, err)
	}
}

func TestBuildWithOwnKnowledge(t *testing.T) {
	b, err := knowledge.Parse([]byte(`{"format": "segsam-class-knowledge", "version": "test-7", "classes": [
		{"name": "widget", "display": "Widget", "category": "organ", "modalities": ["CT"],
		 "texture": "Grainy.", "shape": "Round.", "position": "Left.", "aliases": ["gadget"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Build(context.Background(), mustHashed(t, 32), []string{"Gadget"}, WithKnowledge(b))
	if err != nil {
		t.Fatal(err)
	}
	if s.KnowledgeVersion != "test-7" || s.Texts[0] != "Widget. Texture: Grainy. Shape: Round. Position: Left." {
		t.Fatalf("set %+v", s)
	}
}

// failingProvider returns an error or a wrong number of vectors.
type failingProvider struct{ short bool }

func (failingProvider) Name() string  { return "failing" }
func (failingProvider) Model() string { return "m" }
func (failingProvider) Dim() int      { return 0 }
func (p failingProvider) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if p.short {
		return [][]float32{{1}}, nil
	}
	return nil, context.DeadlineExceeded
}

func TestBuildProviderErrors(t *testing.T) {
	_, err := Build(context.Background(), failingProvider{}, []string{"liver"})
	if err == nil || !strings.Contains(err.Error(), "embed with failing") {
		t.Errorf("error %v", err)
	}
	_, err = Build(context.Background(), failingProvider{short: true}, []string{"liver", "spleen"})
	if err == nil || !strings.Contains(err.Error(), "got 1 vectors for 2 texts") {
		t.Errorf("error %v", err)
	}
}

func TestBuildWithOpenAIBatchesProgress(t *testing.T) {
	f, srv := newFake(t, 8)
	cfg := testConfig(srv.URL)
	cfg.BatchSize = 2
	o := mustOpenAI(t, cfg)
	var calls []int
	s, err := Build(context.Background(), o, []string{"liver", "spleen", "aorta"}, WithProgress(func(done, total int) { calls = append(calls, done) }))
	if err != nil {
		t.Fatal(err)
	}
	if s.Provider != "openai" || s.Model != "fake-embed" || s.Dim() != 8 {
		t.Errorf("set %s %s %d", s.Provider, s.Model, s.Dim())
	}
	if len(calls) != 2 || calls[1] != 3 || f.count() != 2 {
		t.Errorf("progress %v, %d requests", calls, f.count())
	}
}

func TestDescriptions(t *testing.T) {
	texts, version, err := Descriptions([]string{"aorta"})
	aorta, _ := knowledge.Lookup("aorta")
	if err != nil || version != knowledge.Version() || texts[0] != aorta.Description() {
		t.Fatalf("%v %q %v", texts, version, err)
	}
}
