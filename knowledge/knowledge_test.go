package knowledge

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "record the hash of classes.json under its version in testdata")

const testdata = "../testdata/textembed"

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// demoClasses returns every class name of the demo data: the 2D set and
// the label maps of the 3D volumes.
func demoClasses(t *testing.T) []string {
	var demo struct{ Classes []string }
	readJSON(t, "demo2d_classes.json", &demo)
	var vols struct{ Labels map[string]map[string]string }
	readJSON(t, "volumes_labels.json", &vols)
	if len(demo.Classes) != 48 || len(vols.Labels) == 0 {
		t.Fatalf("testdata: %d demo classes, %d volume label maps", len(demo.Classes), len(vols.Labels))
	}
	names := slices.Clone(demo.Classes)
	for _, m := range vols.Labels {
		for _, n := range m {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func TestEveryDemoClassResolves(t *testing.T) {
	for _, name := range demoClasses(t) {
		c, ok := Lookup(name)
		if !ok {
			t.Errorf("demo class %q does not resolve", name)
			continue
		}
		if c.Name != Normalize(name) {
			t.Logf("demo class %q resolves to %q through an alias", name, c.Name)
		}
	}
}

func TestEmbeddedKnowledge(t *testing.T) {
	b, err := Parse(embedded)
	if err != nil {
		t.Fatal(err)
	}
	if b.Version() == "" || b.Version() != Version() {
		t.Fatalf("version %q / %q", b.Version(), Version())
	}
	cls := Classes()
	if n := len(cls); n < 150 || n > 300 {
		t.Errorf("%d classes, want 150-300", n)
	}
	categories := map[string]int{}
	for _, c := range cls {
		categories[c.Category]++
		for field, text := range map[string]string{
			"name": c.Name, "display": c.Display, "texture": c.Texture, "shape": c.Shape, "position": c.Position,
		} {
			if strings.TrimSpace(text) == "" {
				t.Errorf("class %q: empty %s", c.Name, field)
			}
		}
		if len(c.Modalities) == 0 {
			t.Errorf("class %q: no modalities", c.Name)
		}
		// A field of one to three sentences: not a stub, not an essay.
		for field, text := range map[string]string{"texture": c.Texture, "shape": c.Shape, "position": c.Position} {
			if n := len(strings.Fields(text)); n < 5 || n > 80 {
				t.Errorf("class %q: %s has %d words", c.Name, field, n)
			}
		}
	}
	for _, want := range []string{"organ", "vessel", "bone", "muscle", "lesion"} {
		if categories[want] == 0 {
			t.Errorf("no class of category %q", want)
		}
	}
}

func TestNoDuplicateNameOrAlias(t *testing.T) {
	owner := map[string]string{}
	for _, c := range Classes() {
		for _, n := range append([]string{c.Name}, c.Aliases...) {
			key := Normalize(n)
			if prev, dup := owner[key]; dup {
				t.Errorf("%q (class %q) is also a name of class %q", n, c.Name, prev)
			}
			owner[key] = c.Name
		}
	}
}

func TestDescriptionsAreDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, c := range Classes() {
		d := c.Description()
		if prev, dup := seen[d]; dup {
			t.Errorf("classes %q and %q have the same description", c.Name, prev)
		}
		seen[d] = c.Name
		// The position field says where the class is, so it must differ
		// between every pair of classes.
		if prev, dup := seen["position:"+c.Position]; dup {
			t.Errorf("classes %q and %q have the same position text", c.Name, prev)
		}
		seen["position:"+c.Position] = c.Name
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"liver", "liver"},
		{"Liver", "liver"},
		{"LIVER", "liver"},
		{"hepatic", "liver"},
		{"lung_upper_lobe_left", "lung_upper_lobe_left"},
		{"Lung Upper-Lobe  left", "lung_upper_lobe_left"},
		{"LUL", "lung_upper_lobe_left"},
		{"vertebrae_L2", "vertebrae_l2"},
		{"L2", "vertebrae_l2"},
		{"IVC", "inferior_vena_cava"},
		{"postcava", "inferior_vena_cava"},
		{"right kidney", "kidney_right"},
		{"kidney", "kidney"},
		{"prostate/uterus", "prostate_uterus"},
		{"  __spleen__ ", "spleen"},
		{"GGO", "ground_glass_opacity"},
		{"LV", "left_ventricle"},
		{"heart_ventricle_left", "heart_ventricle_left"},
		{"rib_left_9", "rib_left_9"},
		{"clavicle_left", "clavicula_left"},
	}
	for _, tc := range tests {
		c, ok := Lookup(tc.in)
		if !ok {
			t.Errorf("Lookup(%q) not found, want %q", tc.in, tc.want)
			continue
		}
		if c.Name != tc.want {
			t.Errorf("Lookup(%q) = %q, want %q", tc.in, c.Name, tc.want)
		}
	}
	for _, in := range []string{"", "   ", "unicorn_horn", "liv", "kidney_middle"} {
		if c, ok := Lookup(in); ok {
			t.Errorf("Lookup(%q) = %q, want not found", in, c.Name)
		}
	}
}

func TestLookupReturnsCopy(t *testing.T) {
	c, _ := Lookup("liver")
	c.Aliases[0] = "changed"
	c2, _ := Lookup("liver")
	if c2.Aliases[0] == "changed" {
		t.Fatal("Lookup exposes the knowledge's internal slices")
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"liver", "liver"},
		{"Lung Upper Lobe Left", "lung_upper_lobe_left"},
		{"lung-upper_lobe left", "lung_upper_lobe_left"},
		{"vertebrae_L2", "vertebrae_l2"},
		{"__a__b__", "a_b"},
		{"prostate/uterus", "prostate_uterus"},
		{"a.b", "a_b"},
		{"", ""},
		{" \t", ""},
	}
	for _, tc := range tests {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDescriptionTemplate(t *testing.T) {
	c := Class{Display: "Aorta", Texture: "Bright.", Shape: "Tubular.", Position: "Central."}
	want := "Aorta. Texture: Bright. Shape: Tubular. Position: Central."
	if got := c.Description(); got != want {
		t.Fatalf("Description() = %q, want %q", got, want)
	}
	liver, _ := Lookup("liver")
	d := liver.Description()
	for _, part := range []string{"Liver. Texture: ", liver.Texture, " Shape: " + liver.Shape, " Position: " + liver.Position} {
		if !strings.Contains(d, part) {
			t.Errorf("liver description %q lacks %q", d, part)
		}
	}
}

func TestParseRejects(t *testing.T) {
	valid := func() map[string]any {
		return map[string]any{
			"format": Format, "version": "t1",
			"classes": []map[string]any{{
				"name": "liver", "display": "Liver", "category": "organ", "modalities": []string{"CT"},
				"texture": "Smooth.", "shape": "Wedge.", "position": "Right upper abdomen.", "aliases": []string{"hepatic"},
			}},
		}
	}
	second := map[string]any{
		"name": "spleen", "display": "Spleen", "category": "organ", "modalities": []string{"CT"},
		"texture": "Uniform.", "shape": "Crescent.", "position": "Left upper abdomen.", "aliases": []string{},
	}
	class := func(m map[string]any) map[string]any { return m["classes"].([]map[string]any)[0] }
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		want   string
	}{
		{"wrong format", func(m map[string]any) { m["format"] = "other" }, "format"},
		{"empty version", func(m map[string]any) { m["version"] = " " }, "empty version"},
		{"no classes", func(m map[string]any) { m["classes"] = []map[string]any{} }, "no classes"},
		{"empty texture", func(m map[string]any) { class(m)["texture"] = "" }, "empty texture"},
		{"empty position", func(m map[string]any) { class(m)["position"] = "  " }, "empty position"},
		{"no full stop", func(m map[string]any) { class(m)["shape"] = "Wedge" }, "full stop"},
		{"bad category", func(m map[string]any) { class(m)["category"] = "thing" }, "unknown category"},
		{"bad modality", func(m map[string]any) { class(m)["modalities"] = []string{"CAT"} }, "unknown modality"},
		{"no modality", func(m map[string]any) { class(m)["modalities"] = []string{} }, "no modalities"},
		{"non-canonical name", func(m map[string]any) { class(m)["name"] = "Liver" }, "not canonical"},
		{"unknown field", func(m map[string]any) { class(m)["colour"] = "red" }, "unknown field"},
		{"alias taken", func(m map[string]any) {
			s := maps(second)
			s["aliases"] = []string{"Hepatic"}
			m["classes"] = append(m["classes"].([]map[string]any), s)
		}, `already names class "liver"`},
		{"duplicate class", func(m map[string]any) {
			m["classes"] = append(m["classes"].([]map[string]any), class(m))
		}, "already names"},
	}
	data, _ := json.Marshal(valid())
	if _, err := Parse(data); err != nil {
		t.Fatalf("valid file rejected: %v", err)
	}
	if _, err := Parse([]byte("{")); err == nil {
		t.Error("truncated JSON accepted")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := valid()
			tc.mutate(m)
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func maps(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestVersionBumped fails when classes.json changes without a new version:
// the texts decide the text embeddings a model is trained with, so two
// different class lists must never share a version.
func TestVersionBumped(t *testing.T) {
	data, err := json.Marshal(Classes())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:])
	path := filepath.Join(testdata, "knowledge_versions.json")
	versions := map[string]string{}
	if raw, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(raw, &versions); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	} else if !*update {
		t.Fatal(err)
	}
	recorded, ok := versions[Version()]
	if *update {
		if ok && recorded != hash {
			t.Fatalf("version %s is already recorded with other contents; bump \"version\" in classes.json", Version())
		}
		versions[Version()] = hash
		out, _ := json.MarshalIndent(versions, "", " ")
		if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !ok {
		t.Fatalf("version %s of classes.json is not recorded; run 'go test ./knowledge -update'", Version())
	}
	if recorded != hash {
		t.Fatalf("classes.json changed but its version %s did not; bump \"version\" and run 'go test ./knowledge -update'", Version())
	}
}
