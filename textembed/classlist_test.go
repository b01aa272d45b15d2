package textembed

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadClassList(t *testing.T) {
	got, err := ReadClassList(testdata) // directory: reads meta.json
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"liver", "spleen", "kidney_tumor", "polyp"}) {
		t.Errorf("classes %v", got)
	}
	demo, err := ReadClassList(filepath.Join(testdata, "demo2d_classes.json"))
	if err != nil || len(demo) != 48 {
		t.Errorf("demo2d_classes.json: %d classes, %v", len(demo), err)
	}
	dir := t.TempDir()
	for name, tc := range map[string]struct{ content, want string }{
		"none":    {`{"images": {}}`, `no "classes" array`},
		"empty":   {`{"classes": []}`, "is empty"},
		"blank":   {`{"classes": ["a", " "]}`, "class 1 is empty"},
		"bad":     {`{"classes": "liver"}`, "cannot unmarshal"},
		"garbage": {`nope`, "invalid character"},
	} {
		p := filepath.Join(dir, name+".json")
		os.WriteFile(p, []byte(tc.content), 0o644)
		if _, err := ReadClassList(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
	if _, err := ReadClassList(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestReadDescriptions(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "d.json")
	os.WriteFile(p, []byte(`{"widget": "Widget. Texture: grainy."}`), 0o644)
	m, err := ReadDescriptions(p)
	if err != nil || m["widget"] != "Widget. Texture: grainy." {
		t.Fatalf("%v %v", m, err)
	}
	os.WriteFile(p, []byte(`["a"]`), 0o644)
	if _, err := ReadDescriptions(p); err == nil {
		t.Error("array accepted")
	}
	os.WriteFile(p, []byte(`{}`), 0o644)
	if _, err := ReadDescriptions(p); err == nil {
		t.Error("empty object accepted")
	}
}
