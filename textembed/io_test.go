package textembed

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/knowledge"
	"github.com/segsam/segsam/npy"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "emb.npy")
	s := sampleSet()
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Compare(got); err != nil {
		t.Fatal(err)
	}
	if got.KnowledgeVersion != s.KnowledgeVersion {
		t.Errorf("knowledge version %q", got.KnowledgeVersion)
	}
	// The .npy is a plain float32 matrix any NumPy user can read.
	arr, err := npy.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if arr.DType != "f4" || len(arr.Shape) != 2 || arr.Shape[0] != 3 || arr.Shape[1] != 4 {
		t.Errorf("npy %s %v", arr.DType, arr.Shape)
	}
	var meta map[string]any
	raw, err := os.ReadFile(filepath.Join(dir, "emb.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"format": SidecarFormat, "provider": "hashed", "model": "hashed-v1-d4", "dim": 4.0,
		"knowledge_version": "1.0.0", "fingerprint": s.Fingerprint(),
	} {
		if meta[key] != want {
			t.Errorf("sidecar %s = %v, want %v", key, meta[key], want)
		}
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2", len(entries))
	}
}

func TestLoadBareClassList(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mine.npy")
	if err := npy.Write(path, []int{2, 3}, []float64{1, 2, 3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mine.json"), []byte(`["Liver", "spleen"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Provider != "file" || s.Model != "mine" || s.Texts != nil || s.Dim() != 3 || s.Vectors[1][2] != 6 {
		t.Fatalf("set %+v", s)
	}
}

func TestSaveLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeNpy := func(name string, shape []int, data []float32) string {
		p := filepath.Join(dir, name)
		if err := npy.Write(p, shape, data); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := Save(filepath.Join(dir, "emb.bin"), sampleSet()); err == nil || !strings.Contains(err.Error(), "must end in .npy") {
		t.Errorf("Save to .bin: %v", err)
	}
	bad := sampleSet()
	bad.Vectors = bad.Vectors[:1]
	if err := Save(filepath.Join(dir, "bad.npy"), bad); err == nil {
		t.Error("invalid set saved")
	}
	good := filepath.Join(dir, "good.npy")
	if err := Save(good, sampleSet()); err != nil {
		t.Fatal(err)
	}
	// Tamper with the sidecar: fingerprint mismatch.
	raw, _ := os.ReadFile(SidecarPath(good))
	tampered := strings.Replace(string(raw), "Liver. Texture: a.", "Liver. Texture: A.", 1)

	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing npy", filepath.Join(dir, "none.npy"), "no such file"},
		{"no sidecar", writeNpy("lonely.npy", []int{1, 2}, []float32{1, 2}), "class list"},
		{"1-D", func() string { write("flat.json", `["a","b"]`); return writeNpy("flat.npy", []int{2}, []float32{1, 2}) }(), "want 2-D"},
		{"count mismatch", func() string {
			write("few.json", `["a"]`)
			return writeNpy("few.npy", []int{2, 2}, []float32{1, 2, 3, 4})
		}(), "2 vectors for 1 classes"},
		{"bad list", func() string {
			write("badl.json", `["a", 3]`)
			return writeNpy("badl.npy", []int{2, 1}, []float32{1, 2})
		}(), "JSON array of class names"},
		{"wrong format", func() string {
			write("fmt.json", `{"format": "other"}`)
			return writeNpy("fmt.npy", []int{1, 1}, []float32{1})
		}(), `format "other"`},
		{"dim mismatch", func() string {
			write("dim.json", strings.Replace(string(raw), `"dim": 4`, `"dim": 5`, 1))
			return writeNpy("dim.npy", []int{3, 4}, sampleSet().Matrix())
		}(), "says dim 5"},
		{"tampered", func() string {
			write("tam.json", tampered)
			return writeNpy("tam.npy", []int{3, 4}, sampleSet().Matrix())
		}(), "do not belong together"},
		{"integer npy", func() string {
			write("int.json", `["a"]`)
			p := filepath.Join(dir, "int.npy")
			if err := npy.Write(p, []int{1, 2}, []int32{1, 2}); err != nil {
				t.Fatal(err)
			}
			return p
		}(), "want float"},
	}
	for _, tc := range tests {
		_, err := Load(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestFileProviderRoundTrip(t *testing.T) {
	ctx := context.Background()
	classes := []string{"liver", "Spleen", "lung_upper_lobe_left", "polyp"}
	built, err := Build(ctx, mustHashed(t, 64), classes)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "emb.npy")
	if err := Save(path, built); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name() != "hashed" || f.Model() != "hashed-v1-d64" || f.Dim() != 64 {
		t.Errorf("file provider %q %q %d: want the recorded provenance", f.Name(), f.Model(), f.Dim())
	}
	// Rebuilding from the file gives the very same set.
	again, err := Build(ctx, f, classes)
	if err != nil {
		t.Fatal(err)
	}
	if err := built.Compare(again); err != nil {
		t.Fatal(err)
	}
	// A subset in another order, through aliases: vectors follow the names.
	sub, err := Build(ctx, f, []string{"colon_polyp", "LIVER"})
	if err != nil {
		t.Fatal(err)
	}
	if !equalVec(sub.Vectors[0], built.Vectors[3]) || !equalVec(sub.Vectors[1], built.Vectors[0]) {
		t.Error("vectors not matched by class")
	}
	// Embed by text.
	v, err := f.Embed(ctx, []string{built.Texts[2]})
	if err != nil || !equalVec(v[0], built.Vectors[2]) {
		t.Errorf("Embed by text: %v", err)
	}
	if _, err := f.Embed(ctx, []string{"some other text"}); err == nil || !strings.Contains(err.Error(), "is not in") {
		t.Errorf("unknown text: %v", err)
	}
	// Errors: a class the file lacks; a description that changed since.
	if _, err := Build(ctx, f, []string{"aorta"}); err == nil || !strings.Contains(err.Error(), `class "aorta" is not in`) {
		t.Errorf("missing class: %v", err)
	}
	_, err = Build(ctx, f, []string{"liver"}, WithDescriptions(map[string]string{"liver": "A new liver text."}))
	if err == nil || !strings.Contains(err.Error(), "differs from its current description") {
		t.Errorf("changed text: %v", err)
	}
}

func TestFileProviderBareList(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "own.npy")
	if err := npy.Write(path, []int{2, 2}, []float32{1, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "own.json"), []byte(`["hepatic", "spleen"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Build(context.Background(), f, []string{"spleen", "liver"})
	if err != nil {
		t.Fatal(err)
	}
	liver, _ := knowledge.Lookup("liver")
	if s.Provider != "file" || !equalVec(s.Vectors[0], []float32{0, 1}) || !equalVec(s.Vectors[1], []float32{1, 0}) || s.Texts[1] != liver.Description() {
		t.Fatalf("set %+v", s)
	}
	if _, err := f.Embed(context.Background(), []string{"x"}); err == nil || !strings.Contains(err.Error(), "holds no texts") {
		t.Errorf("Embed on bare list: %v", err)
	}
}

func equalVec(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
