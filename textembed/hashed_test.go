package textembed

import (
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/knowledge"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

const testdata = "../testdata/textembed"

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func mustHashed(t *testing.T, dim int) *Hashed {
	t.Helper()
	h, err := NewHashed(dim)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashedDeterministicAndNormalised(t *testing.T) {
	texts := []string{
		"Liver. Texture: homogeneous parenchyma. Shape: wedge. Position: right upper quadrant.",
		"Aorta aorta aorta, a tube.",
		"ÜBER café naïve 123",
	}
	a, err := mustHashed(t, 0).Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	// A second encoder, texts in another batch order: identical bits.
	b, err := mustHashed(t, 0).Embed(context.Background(), []string{texts[2], texts[0], texts[1]})
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range []int{1, 2, 0} {
		for k := range a[i] {
			if math.Float32bits(a[i][k]) != math.Float32bits(b[j][k]) {
				t.Fatalf("text %d: value %d differs between runs", i, k)
			}
		}
	}
	for i, v := range a {
		if len(v) != DefaultHashedDim {
			t.Errorf("text %d: length %d", i, len(v))
		}
		var n float64
		for _, x := range v {
			n += float64(x) * float64(x)
		}
		if math.Abs(n-1) > 1e-5 {
			t.Errorf("text %d: squared norm %v, want 1", i, n)
		}
	}
	// Case and punctuation do not matter; word order does (bigrams).
	c, _ := mustHashed(t, 0).Embed(context.Background(), []string{"liver texture HOMOGENEOUS, parenchyma shape wedge position right upper quadrant"})
	if cos := cosine(a[0], c[0]); cos < 0.9999 {
		t.Errorf("case/punctuation changed the vector: cosine %v", cos)
	}
	d, _ := mustHashed(t, 0).Embed(context.Background(), []string{"quadrant upper right position wedge shape parenchyma homogeneous texture liver"})
	if cos := cosine(a[0], d[0]); cos > 0.95 {
		t.Errorf("reversed word order gives cosine %v, want bigrams to tell them apart", cos)
	}
}

func TestHashedModelAndErrors(t *testing.T) {
	h := mustHashed(t, 64)
	if h.Name() != "hashed" || h.Model() != "hashed-v1-d64" || h.Dim() != 64 {
		t.Errorf("Name/Model/Dim = %q %q %d", h.Name(), h.Model(), h.Dim())
	}
	for _, dim := range []int{-1, 8, 1 << 21} {
		if _, err := NewHashed(dim); err == nil {
			t.Errorf("NewHashed(%d) accepted", dim)
		}
	}
	for _, text := range []string{"", "  ", "...", "the of and"} {
		if _, err := h.Embed(context.Background(), []string{"fine", text}); err == nil || !strings.Contains(err.Error(), "text 1") {
			t.Errorf("text %q: error %v, want one naming text 1", text, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Embed(ctx, []string{"a"}); err == nil {
		t.Error("cancelled context ignored")
	}
}

// TestHashedClassesDistinct: every pair of classes in the knowledge must get
// clearly different vectors from the offline encoder.
func TestHashedClassesDistinct(t *testing.T) {
	classes := knowledge.Classes()
	texts := make([]string, len(classes))
	for i, c := range classes {
		texts[i] = c.Description()
	}
	vecs, err := mustHashed(t, 0).Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	worst, wi, wj := -1.0, 0, 0
	for i := range vecs {
		for j := i + 1; j < len(vecs); j++ {
			c := cosine(vecs[i], vecs[j])
			if c >= 0.95 {
				t.Errorf("%s and %s: cosine %.3f, want < 0.95", classes[i].Name, classes[j].Name, c)
			}
			if c > worst {
				worst, wi, wj = c, i, j
			}
		}
	}
	t.Logf("most similar pair: %s / %s, cosine %.3f", classes[wi].Name, classes[wj].Name, worst)
	// Related classes are closer than unrelated ones.
	byName := map[string][]float32{}
	for i, c := range classes {
		byName[c.Name] = vecs[i]
	}
	related := cosine(byName["kidney_left"], byName["kidney_right"])
	unrelated := cosine(byName["kidney_left"], byName["polyp"])
	if related <= unrelated {
		t.Errorf("cosine(kidney_left, kidney_right) = %.3f not above cosine(kidney_left, polyp) = %.3f", related, unrelated)
	}
}

// TestHashedGolden pins the offline encoder's output: a model trained on
// hashed embeddings must see the same vectors forever under the same Model()
// name. If the recipe changes on purpose, bump hashedVersion and run
// 'go test ./textembed -update'.
func TestHashedGolden(t *testing.T) {
	type golden struct {
		Model   string      `json:"model"`
		Texts   []string    `json:"texts"`
		Vectors [][]float32 `json:"vectors"`
	}
	h := mustHashed(t, 32)
	g := golden{Model: h.Model(), Texts: []string{
		"Aorta. Texture: Smooth and bright. Shape: Tubular. Position: Central.",
		"Polyp. Texture: Pink mucosa. Shape: Dome-shaped. Position: Colon wall.",
		"ninth rib left",
	}}
	var err error
	if g.Vectors, err = h.Embed(context.Background(), g.Texts); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(testdata, "hashed_golden.json")
	if *update {
		data, _ := json.MarshalIndent(g, "", " ")
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want golden
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if want.Model != g.Model {
		t.Fatalf("golden model %q, encoder model %q", want.Model, g.Model)
	}
	for i := range want.Texts {
		if want.Texts[i] != g.Texts[i] {
			t.Fatalf("golden text %d differs", i)
		}
		for k := range want.Vectors[i] {
			if want.Vectors[i][k] != g.Vectors[i][k] {
				t.Fatalf("text %d value %d: %v, golden %v; the hashed encoder changed: bump hashedVersion", i, k, g.Vectors[i][k], want.Vectors[i][k])
			}
		}
	}
}
