// Package knowledge holds segsam's class knowledge: for every canonical
// medical class (organs, vessels, bones, muscles, tissues, lesions and
// findings of the common segmentation datasets) a display name, a category,
// typical modalities, aliases used by datasets, and a description in the three
// fields of SEG-SAM's text template (texture, shape, position).
//
// The descriptions feed the text-to-vision semantic enhancement (T2VSE): they
// are embedded by a text encoder (package textembed) and the embeddings of the
// model's classes form its text knowledge f_t.
//
// The data lives in classes.json, embedded in the binary and versioned by
// Version; any change to a description must bump the version, because it
// changes the text embeddings a model was trained with.
package knowledge

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

//go:embed classes.json
var embedded []byte

// Format is the value of the "format" field of a class knowledge file.
const Format = "segsam-class-knowledge"

// Categories lists the allowed values of Class.Category.
var Categories = []string{
	"organ", "organ_part", "vessel", "bone", "cartilage", "muscle",
	"tissue", "lesion", "finding", "instrument", "region",
}

// Modalities lists the allowed values in Class.Modalities; they are spelled
// as in the "modality" field of segsam's dataset metadata.
var Modalities = []string{
	"CT", "MR", "PET", "X-ray", "ultrasound", "endoscopy", "dermoscopy", "fundus",
}

// Class is the knowledge about one canonical class.
type Class struct {
	// Name is the canonical name: lower case, words joined by '_'.
	Name string `json:"name"`
	// Display is a human-readable name, used as the first sentence of the
	// description.
	Display string `json:"display"`
	// Category is one of Categories.
	Category string `json:"category"`
	// Modalities lists the modalities in which the class is usually
	// segmented (values from Modalities).
	Modalities []string `json:"modalities"`
	// Texture, Shape and Position are the three fields of SEG-SAM's text
	// template; each is one to three sentences ending with a full stop.
	Texture  string `json:"texture"`
	Shape    string `json:"shape"`
	Position string `json:"position"`
	// Aliases are other names datasets use for the class. Lookup matches
	// them after Normalize, so case and separator variants need no entry.
	Aliases []string `json:"aliases"`
}

// Description renders the class in SEG-SAM's text template (supplementary
// §6.2 of the paper): "<Display>. Texture: ... Shape: ... Position: ...".
// It is the text that is embedded for the class.
func (c Class) Description() string {
	return fmt.Sprintf("%s. Texture: %s Shape: %s Position: %s", c.Display, c.Texture, c.Shape, c.Position)
}

// Base is a parsed, validated class knowledge file.
type Base struct {
	version string
	classes []Class
	index   map[string]int // normalised name or alias -> index in classes
}

type fileFormat struct {
	Format   string  `json:"format"`
	Version  string  `json:"version"`
	Template string  `json:"template"`
	Notes    string  `json:"notes"`
	Classes  []Class `json:"classes"`
}

// Parse decodes and validates a class knowledge file (the format of the
// embedded classes.json). Every class needs a canonical name, a display name,
// a known category, at least one known modality and three non-empty
// description fields; no name or alias may resolve to two classes.
func Parse(data []byte) (*Base, error) {
	var f fileFormat
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("knowledge: decode: %w", err)
	}
	if f.Format != Format {
		return nil, fmt.Errorf("knowledge: format is %q, want %q", f.Format, Format)
	}
	if strings.TrimSpace(f.Version) == "" {
		return nil, errors.New("knowledge: empty version")
	}
	if len(f.Classes) == 0 {
		return nil, errors.New("knowledge: no classes")
	}
	b := &Base{version: f.Version, classes: f.Classes, index: make(map[string]int)}
	var errs []error
	for i, c := range f.Classes {
		if err := validateClass(c); err != nil {
			errs = append(errs, fmt.Errorf("class %d (%q): %w", i, c.Name, err))
			continue
		}
		for _, key := range append([]string{c.Name}, c.Aliases...) {
			n := Normalize(key)
			if j, dup := b.index[n]; dup {
				if j == i {
					errs = append(errs, fmt.Errorf("class %q: alias %q repeats one of its names", c.Name, key))
				} else {
					errs = append(errs, fmt.Errorf("name %q of class %q already names class %q", key, c.Name, f.Classes[j].Name))
				}
				continue
			}
			b.index[n] = i
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("knowledge: %w", errors.Join(errs...))
	}
	return b, nil
}

func validateClass(c Class) error {
	if c.Name == "" {
		return errors.New("empty name")
	}
	if Normalize(c.Name) != c.Name {
		return fmt.Errorf("name is not canonical (want %q)", Normalize(c.Name))
	}
	if strings.TrimSpace(c.Display) == "" {
		return errors.New("empty display name")
	}
	if !slices.Contains(Categories, c.Category) {
		return fmt.Errorf("unknown category %q (want one of %s)", c.Category, strings.Join(Categories, ", "))
	}
	if len(c.Modalities) == 0 {
		return errors.New("no modalities")
	}
	for _, m := range c.Modalities {
		if !slices.Contains(Modalities, m) {
			return fmt.Errorf("unknown modality %q (want one of %s)", m, strings.Join(Modalities, ", "))
		}
	}
	for _, fld := range []struct{ name, text string }{
		{"texture", c.Texture}, {"shape", c.Shape}, {"position", c.Position},
	} {
		t := strings.TrimSpace(fld.text)
		if t == "" {
			return fmt.Errorf("empty %s", fld.name)
		}
		if !strings.HasSuffix(t, ".") {
			return fmt.Errorf("%s does not end with a full stop", fld.name)
		}
	}
	for _, a := range c.Aliases {
		if Normalize(a) == "" {
			return fmt.Errorf("empty alias %q", a)
		}
	}
	return nil
}

// Normalize maps a class name to its lookup key: lower case, with every run
// of spaces, '_', '-', '.' or '/' replaced by a single '_' and no leading or
// trailing '_'. "Lung Upper-Lobe  Left" and "lung_upper_lobe_left" have the
// same key.
func Normalize(name string) string {
	var sb strings.Builder
	sep := false
	for _, r := range strings.ToLower(name) {
		if unicode.IsSpace(r) || r == '_' || r == '-' || r == '.' || r == '/' {
			sep = true
			continue
		}
		if sep && sb.Len() > 0 {
			sb.WriteByte('_')
		}
		sep = false
		sb.WriteRune(r)
	}
	return sb.String()
}

// Version is the version of the knowledge file.
func (b *Base) Version() string { return b.version }

// Classes returns a copy of all classes, in file order.
func (b *Base) Classes() []Class {
	out := make([]Class, len(b.classes))
	for i, c := range b.classes {
		out[i] = c.clone()
	}
	return out
}

// Lookup resolves a canonical name or an alias, ignoring case and separator
// differences (see Normalize).
func (b *Base) Lookup(name string) (Class, bool) {
	i, ok := b.index[Normalize(name)]
	if !ok {
		return Class{}, false
	}
	return b.classes[i].clone(), true
}

func (c Class) clone() Class {
	c.Modalities = slices.Clone(c.Modalities)
	c.Aliases = slices.Clone(c.Aliases)
	return c
}

// defaultBase is the embedded knowledge. The file is part of the source
// tree and validated by the package tests, so a parse failure is a build
// defect, not bad input.
var defaultBase = func() *Base {
	b, err := Parse(embedded)
	if err != nil {
		panic("knowledge: embedded classes.json is invalid: " + err.Error())
	}
	return b
}()

// Default returns the embedded class knowledge.
func Default() *Base { return defaultBase }

// Version is the version of the embedded class knowledge.
func Version() string { return defaultBase.Version() }

// Classes returns all classes of the embedded knowledge, in file order.
func Classes() []Class { return defaultBase.Classes() }

// Lookup resolves name in the embedded knowledge; see Base.Lookup.
func Lookup(name string) (Class, bool) { return defaultBase.Lookup(name) }
