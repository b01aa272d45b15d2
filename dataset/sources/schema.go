// Package sources reads the data-source manifests of dataset/sources
// (<id>.source.json, schema v1, see SCHEMA.md) and rebuilds each source's
// training set from a local git snapshot of its repository: files are read
// at the manifest's commit with the git CLI (no work tree), images and masks
// are converted to the SA-Med2D layout with dataset.Writer, and the rules of
// training_exclusions.json are enforced.
package sources

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/medimg"
)

// SchemaVersion is the manifest schema this package reads.
const SchemaVersion = 1

// ManifestSuffix ends the name of every manifest file.
const ManifestSuffix = ".source.json"

// Kinds of source.
const (
	KindPairs   = "pairs"
	KindVolumes = "volumes"
)

// Roles of a source.
const (
	RoleTrain = "train"
	RoleVal   = "val"
)

// Mask modes.
const (
	ModeBinary = "binary"
	ModeValues = "values"
	ModeColors = "colors"
)

// Source is one manifest: a dataset (or part of one) read from one GitHub
// repository at one commit.
type Source struct {
	Schema   int    `json:"schema"`
	ID       string `json:"id"`
	Dataset  string `json:"dataset"`
	Modality string `json:"modality"`
	Repo     string `json:"repo"`
	Commit   string `json:"commit"`
	License  string `json:"license"`
	Citation string `json:"citation,omitempty"`
	Role     string `json:"role,omitempty"`
	Kind     string `json:"kind"`
	// Notes is free text (an optional addition to the brief's schema: JSON
	// has no comments).
	Notes string `json:"notes,omitempty"`

	// kind "pairs"
	Images          string     `json:"images,omitempty"`
	ImageRegex      string     `json:"image_regex,omitempty"`
	Skip            []string   `json:"skip,omitempty"`
	Masks           []MaskSpec `json:"masks,omitempty"`
	Every           int        `json:"every,omitempty"`
	MaxImages       int        `json:"max_images,omitempty"`
	SplitComponents *bool      `json:"split_components,omitempty"`
	Invert          bool       `json:"invert,omitempty"`
	// Orient (an optional addition) turns images and masks to the standard
	// view, for sets stored in a raw array orientation (see Orientations).
	Orient string `json:"orient,omitempty"`

	// both kinds
	Group string `json:"group,omitempty"`

	// kind "volumes"
	Volumes       []VolumeSpec      `json:"volumes,omitempty"`
	VolumeGlob    string            `json:"volume_glob,omitempty"`
	LabelTemplate string            `json:"label_template,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Window        string            `json:"window,omitempty"`
	Axes          []string          `json:"axes,omitempty"`
	SliceEvery    int               `json:"slice_every,omitempty"`

	// File is the manifest's path (set by Load and LoadFile).
	File string `json:"-"`

	imagesRe, imageRe, groupRe, volumeRe *regexp.Regexp
	skipRe                               []*regexp.Regexp
	labelValues                          map[int]string
	window                               medimg.Window
	axes                                 []medimg.Axis
}

// MaskSpec is one mask file of an image (kind "pairs").
type MaskSpec struct {
	// Path is a template: {dir} the image's folder, {stem} its file name
	// without extension, {name} with it, {1}, {2}... image_regex groups.
	Path string `json:"path"`
	Mode string `json:"mode"`
	// Threshold (binary): a pixel is foreground when its grey value (or
	// the largest of R, G, B) is above it; default 127.
	Threshold *int `json:"threshold,omitempty"`
	// Class (binary) names the foreground.
	Class string `json:"class,omitempty"`
	// Values (values): pixel value -> class; "0" is background.
	Values map[string]string `json:"values,omitempty"`
	// Colors (colors): RGB hex ("ff0000") -> class.
	Colors map[string]string `json:"colors,omitempty"`
	// Invert (binary; an optional addition) overrides the source's invert
	// for this mask.
	Invert *bool `json:"invert,omitempty"`
	// Fill (an optional addition) fills each class's holes before
	// resizing: background regions (4-connected) that do not touch the
	// image border become foreground, for masks drawn as outlines
	// (HC18's ellipses).
	Fill bool `json:"fill,omitempty"`

	values map[int]string
	colors map[[3]uint8]string
}

// VolumeSpec is one image volume and its label volume (kind "volumes").
type VolumeSpec struct {
	Image string `json:"image"`
	Label string `json:"label"`
	Group string `json:"group,omitempty"`
}

var (
	idRe     = regexp.MustCompile(`^[a-z0-9_]+$`)
	repoRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.][A-Za-z0-9_.-]*$`)
	commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)
	classRe  = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	colorRe  = regexp.MustCompile(`^[0-9a-f]{6}$`)
	placeRe  = regexp.MustCompile(`\{([^{}]*)\}`)
)

// Load reads and validates every *.source.json of dir, sorted by id. A
// missing folder is an error; a folder without manifests gives none.
func Load(dir string) ([]*Source, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load sources: %w", err)
	}
	var out []*Source
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ManifestSuffix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		s, err := LoadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := checkUnique(out); err != nil {
		return nil, err
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

// checkUnique refuses two sources of one id.
func checkUnique(srcs []*Source) error {
	byID := map[string]*Source{}
	for _, s := range srcs {
		if other, dup := byID[s.ID]; dup {
			return fmt.Errorf("%s: duplicate id %q (also in %s)", s.File, s.ID, other.File)
		}
		byID[s.ID] = s
	}
	return nil
}

// LoadFile reads and validates one manifest. Unknown fields are errors.
func LoadFile(p string) (*Source, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("load source: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	s.File = p
	if want := s.ID + ManifestSuffix; filepath.Base(p) != want {
		return nil, fmt.Errorf("%s: id %q: the file must be named %s", p, s.ID, want)
	}
	return s, nil
}

// Parse decodes and validates a manifest.
func Parse(data []byte) (*Source, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Source
	if err := dec.Decode(&s); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
			return nil, fmt.Errorf("invalid JSON at line %d: %v (comments are not allowed; use \"notes\")", line, se)
		case errors.As(err, &te):
			return nil, fmt.Errorf("field %q: want %v, got JSON %s", te.Field, te.Type, te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return nil, fmt.Errorf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the manifest object")
	}
	if err := s.validate(); err != nil {
		if s.ID != "" {
			return nil, fmt.Errorf("source %s: %w", s.ID, err)
		}
		return nil, err
	}
	return &s, nil
}

func (s *Source) validate() error {
	if s.Schema != SchemaVersion {
		return fmt.Errorf("\"schema\": %d, want %d", s.Schema, SchemaVersion)
	}
	if !idRe.MatchString(s.ID) {
		return fmt.Errorf("\"id\" %q: want lower-case letters, digits and _", s.ID)
	}
	if strings.TrimSpace(s.Dataset) == "" {
		return errors.New("\"dataset\" is missing")
	}
	mod, ok := dataset.NormalizeModality(s.Modality)
	if !ok || mod == dataset.Unknown {
		return fmt.Errorf("unknown \"modality\" %q (want one of %s)", s.Modality, strings.Join(dataset.Modalities, ", "))
	}
	s.Modality = mod
	if !repoRe.MatchString(s.Repo) {
		return fmt.Errorf("\"repo\" %q: want owner/name", s.Repo)
	}
	if !commitRe.MatchString(s.Commit) {
		return fmt.Errorf("\"commit\" %q: want the 40 lower-case hex digits of a commit", s.Commit)
	}
	if strings.TrimSpace(s.License) == "" {
		return errors.New("\"license\" is missing")
	}
	switch s.Role {
	case "":
		s.Role = RoleTrain
	case RoleTrain, RoleVal:
	default:
		return fmt.Errorf("\"role\" %q: want %q or %q", s.Role, RoleTrain, RoleVal)
	}
	var err error
	if s.Group != "" {
		if s.groupRe, err = regexp.Compile(s.Group); err != nil {
			return fmt.Errorf("\"group\": regex does not compile: %v", err)
		}
		if s.groupRe.NumSubexp() != 1 {
			return fmt.Errorf("\"group\" %q: want exactly one capture group, found %d", s.Group, s.groupRe.NumSubexp())
		}
	}
	switch s.Kind {
	case KindPairs:
		return s.validatePairs()
	case KindVolumes:
		return s.validateVolumes()
	}
	return fmt.Errorf("\"kind\" %q: want %q or %q", s.Kind, KindPairs, KindVolumes)
}

func (s *Source) validatePairs() error {
	for name, set := range map[string]bool{
		"volumes": len(s.Volumes) > 0, "volume_glob": s.VolumeGlob != "", "label_template": s.LabelTemplate != "",
		"labels": len(s.Labels) > 0, "window": s.Window != "", "axes": len(s.Axes) > 0, "slice_every": s.SliceEvery != 0,
	} {
		if set {
			return fmt.Errorf("%q is a field of kind %q, not %q", name, KindVolumes, KindPairs)
		}
	}
	var err error
	if s.Images == "" {
		return errors.New("\"images\" (a glob of image paths) is missing")
	}
	if s.imagesRe, err = GlobRegexp(s.Images); err != nil {
		return fmt.Errorf("\"images\": %w", err)
	}
	groups := 0
	if s.ImageRegex != "" {
		if s.imageRe, err = regexp.Compile(s.ImageRegex); err != nil {
			return fmt.Errorf("\"image_regex\": regex does not compile: %v", err)
		}
		groups = s.imageRe.NumSubexp()
	}
	for i, g := range s.Skip {
		re, err := GlobRegexp(g)
		if err != nil {
			return fmt.Errorf("\"skip\"[%d]: %w", i, err)
		}
		s.skipRe = append(s.skipRe, re)
	}
	if len(s.Masks) == 0 {
		return errors.New("\"masks\" is missing: give at least one mask")
	}
	for i := range s.Masks {
		if err := s.Masks[i].validate(groups); err != nil {
			return fmt.Errorf("\"masks\"[%d]: %w", i, err)
		}
	}
	if s.Every < 0 {
		return fmt.Errorf("\"every\" %d: want 1 or more", s.Every)
	}
	if s.Every == 0 {
		s.Every = 1
	}
	if s.MaxImages < 0 {
		return fmt.Errorf("\"max_images\" %d: want 0 (all) or more", s.MaxImages)
	}
	if !validOrient(s.Orient) {
		return fmt.Errorf("\"orient\" %q: want one of %s", s.Orient, strings.Join(Orientations, ", "))
	}
	return nil
}

func (m *MaskSpec) validate(groups int) error {
	if err := checkTemplate(m.Path, groups, true); err != nil {
		return fmt.Errorf("\"path\": %w", err)
	}
	only := func(fields map[string]bool) error {
		for f, set := range fields {
			if set {
				return fmt.Errorf("%q does not apply to mode %q", f, m.Mode)
			}
		}
		return nil
	}
	switch m.Mode {
	case ModeBinary:
		if err := only(map[string]bool{"values": m.Values != nil, "colors": m.Colors != nil}); err != nil {
			return err
		}
		if m.Class == "" {
			return errors.New("mode binary: \"class\" is missing")
		}
		if err := checkClass(m.Class); err != nil {
			return err
		}
		if m.Threshold != nil && (*m.Threshold < 0 || *m.Threshold > 254) {
			return fmt.Errorf("\"threshold\" %d: want 0..254", *m.Threshold)
		}
	case ModeValues:
		if err := only(map[string]bool{"class": m.Class != "", "colors": m.Colors != nil, "threshold": m.Threshold != nil, "invert": m.Invert != nil}); err != nil {
			return err
		}
		if len(m.Values) == 0 {
			return errors.New("mode values: \"values\" is missing (a map from pixel value to class)")
		}
		m.values = map[int]string{}
		for k, c := range m.Values {
			v, err := strconv.Atoi(k)
			if err != nil || v < 0 || v > 65535 {
				return fmt.Errorf("\"values\" key %q is not an integer pixel value 0..65535", k)
			}
			if v == 0 {
				return errors.New("\"values\" key \"0\": 0 is the background")
			}
			if err := checkClass(c); err != nil {
				return fmt.Errorf("\"values\" %q: %w", k, err)
			}
			m.values[v] = c
		}
	case ModeColors:
		if err := only(map[string]bool{"class": m.Class != "", "values": m.Values != nil, "threshold": m.Threshold != nil, "invert": m.Invert != nil}); err != nil {
			return err
		}
		if len(m.Colors) == 0 {
			return errors.New("mode colors: \"colors\" is missing (a map from RGB hex to class)")
		}
		m.colors = map[[3]uint8]string{}
		for k, c := range m.Colors {
			h := strings.ToLower(strings.TrimPrefix(k, "#"))
			if !colorRe.MatchString(h) {
				return fmt.Errorf("\"colors\" key %q: want 6 hex digits (rrggbb)", k)
			}
			n, _ := strconv.ParseUint(h, 16, 32)
			rgb := [3]uint8{uint8(n >> 16), uint8(n >> 8), uint8(n)}
			if rgb == [3]uint8{} {
				return fmt.Errorf("\"colors\" key %q: black is the background", k)
			}
			if err := checkClass(c); err != nil {
				return fmt.Errorf("\"colors\" %q: %w", k, err)
			}
			m.colors[rgb] = c
		}
	default:
		return fmt.Errorf("\"mode\" %q: want %q, %q or %q", m.Mode, ModeBinary, ModeValues, ModeColors)
	}
	return nil
}

func (s *Source) validateVolumes() error {
	for name, set := range map[string]bool{
		"images": s.Images != "", "image_regex": s.ImageRegex != "", "skip": len(s.Skip) > 0, "masks": len(s.Masks) > 0,
		"every": s.Every != 0, "max_images": s.MaxImages != 0, "split_components": s.SplitComponents != nil, "invert": s.Invert,
		"orient": s.Orient != "",
	} {
		if set {
			return fmt.Errorf("%q is a field of kind %q, not %q", name, KindPairs, KindVolumes)
		}
	}
	switch {
	case len(s.Volumes) > 0 && s.VolumeGlob != "":
		return errors.New("give either \"volumes\" or \"volume_glob\", not both")
	case len(s.Volumes) == 0 && s.VolumeGlob == "":
		return errors.New("\"volumes\" (or \"volume_glob\" with \"label_template\") is missing")
	case s.VolumeGlob != "":
		var err error
		if s.volumeRe, err = GlobRegexp(s.VolumeGlob); err != nil {
			return fmt.Errorf("\"volume_glob\": %w", err)
		}
		if s.LabelTemplate == "" {
			return errors.New("\"volume_glob\" needs \"label_template\"")
		}
		if err := checkTemplate(s.LabelTemplate, 0, false); err != nil {
			return fmt.Errorf("\"label_template\": %w", err)
		}
	default:
		if s.LabelTemplate != "" {
			return errors.New("\"label_template\" applies to \"volume_glob\" only")
		}
		seen := map[string]bool{}
		for i, v := range s.Volumes {
			if v.Image == "" || v.Label == "" {
				return fmt.Errorf("\"volumes\"[%d]: \"image\" and \"label\" are required", i)
			}
			if seen[v.Image] {
				return fmt.Errorf("\"volumes\"[%d]: image %s listed twice", i, v.Image)
			}
			seen[v.Image] = true
		}
	}
	if len(s.Labels) == 0 {
		return errors.New("\"labels\" is missing (a map from label value to class)")
	}
	s.labelValues = map[int]string{}
	for k, c := range s.Labels {
		v, err := strconv.Atoi(k)
		if err != nil || v <= 0 {
			return fmt.Errorf("\"labels\" key %q is not a positive integer label value", k)
		}
		if err := checkClass(c); err != nil {
			return fmt.Errorf("\"labels\" %q: %w", k, err)
		}
		s.labelValues[v] = c
	}
	w := s.Window
	if w == "" {
		w = "auto"
	}
	var err error
	if s.window, err = medimg.ParseWindow(w); err != nil {
		return fmt.Errorf("\"window\": %w", err)
	}
	if len(s.Axes) == 0 {
		s.axes = medimg.Axes
	}
	for _, a := range s.Axes {
		ax, err := medimg.ParseAxis(a)
		if err != nil {
			return fmt.Errorf("\"axes\": %w", err)
		}
		s.axes = append(s.axes, ax)
	}
	if s.SliceEvery < 0 {
		return fmt.Errorf("\"slice_every\" %d: want 1 or more", s.SliceEvery)
	}
	if s.SliceEvery == 0 {
		s.SliceEvery = 1
	}
	return nil
}

func checkClass(c string) error {
	if c == "" {
		return errors.New("missing class name")
	}
	if !classRe.MatchString(c) {
		return fmt.Errorf("class %q: want snake_case (a-z, 0-9, _; starting with a letter)", c)
	}
	return nil
}

// checkTemplate checks a path template's placeholders.
func checkTemplate(t string, groups int, regexGroups bool) error {
	if t == "" {
		return errors.New("missing")
	}
	for _, m := range placeRe.FindAllStringSubmatch(t, -1) {
		switch k := m[1]; k {
		case "dir", "stem", "name":
		default:
			n, err := strconv.Atoi(k)
			switch {
			case err != nil || n < 1:
				return fmt.Errorf("template %q: unknown placeholder {%s} (want {dir}, {stem}, {name} or {1}, {2}...)", t, k)
			case !regexGroups:
				return fmt.Errorf("template %q: {%s}: regex groups apply to kind pairs only", t, k)
			case n > groups:
				return fmt.Errorf("template %q: {%d} but image_regex has %d groups", t, n, groups)
			}
		}
	}
	return nil
}

// Stem is a file name without its directory and extension (".nii.gz"
// counts as one extension).
func Stem(p string) string {
	base := path.Base(p)
	lower := strings.ToLower(base)
	for _, ext := range []string{".nii.gz", ".hdr.gz"} {
		if strings.HasSuffix(lower, ext) {
			return base[:len(base)-len(ext)]
		}
	}
	return strings.TrimSuffix(base, path.Ext(base))
}

// expand fills a template for a file path; groups are the image_regex
// submatches (groups[0] the whole match). The result is cleaned, so
// "{dir}/../masks/{stem}.png" works; a template that starts with "{dir}/"
// for a file at the repository root gives a root-level path.
func expand(t, file string, groups []string) string {
	dir := path.Dir(file)
	if dir == "." {
		dir = ""
	}
	name := path.Base(file)
	out := placeRe.ReplaceAllStringFunc(t, func(m string) string {
		switch k := m[1 : len(m)-1]; k {
		case "dir":
			return dir
		case "stem":
			return Stem(name)
		case "name":
			return name
		default:
			n, _ := strconv.Atoi(k)
			if n < len(groups) {
				return groups[n]
			}
			return ""
		}
	})
	out = path.Clean(strings.TrimPrefix(out, "/"))
	return out
}

// GlobRegexp compiles a glob over repository paths: "*" matches within a
// folder, "**" across folders ("a/**/b" also matches "a/b"), "?" one
// character other than '/', "[...]" a character class, "{x,y}" either
// alternative.
func GlobRegexp(g string) (*regexp.Regexp, error) {
	if g == "" {
		return nil, errors.New("empty glob")
	}
	var b strings.Builder
	b.WriteString("^")
	inAlt := false
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch c {
		case '*':
			if i+1 < len(g) && g[i+1] == '*' {
				i++
				if i+1 < len(g) && g[i+1] == '/' {
					i++
					b.WriteString("(?:.*/)?")
				} else {
					b.WriteString(".*")
				}
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		case '[':
			j := strings.IndexByte(g[i+1:], ']')
			if j < 0 {
				return nil, fmt.Errorf("glob %q: unclosed [", g)
			}
			class := g[i+1 : i+1+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + class + "]")
			i += j + 1
		case '{':
			if inAlt {
				return nil, fmt.Errorf("glob %q: nested {", g)
			}
			inAlt = true
			b.WriteString("(?:")
		case '}':
			if !inAlt {
				return nil, fmt.Errorf("glob %q: } without {", g)
			}
			inAlt = false
			b.WriteString(")")
		case ',':
			if inAlt {
				b.WriteString("|")
			} else {
				b.WriteString(",")
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	if inAlt {
		return nil, fmt.Errorf("glob %q: unclosed {", g)
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("glob %q: %v", g, err)
	}
	return re, nil
}

// ShortCommit is the first 10 hex digits of the commit.
func (s *Source) ShortCommit() string { return s.Commit[:10] }

// SplitsComponents reports whether masks are split into connected
// components (the default).
func (s *Source) SplitsComponents() bool { return s.SplitComponents == nil || *s.SplitComponents }

// Classes lists the class names the manifest can produce, sorted.
func (s *Source) Classes() []string {
	set := map[string]bool{}
	for _, m := range s.Masks {
		if m.Class != "" {
			set[m.Class] = true
		}
		for _, c := range m.Values {
			set[c] = true
		}
		for _, c := range m.Colors {
			set[c] = true
		}
	}
	for _, c := range s.Labels {
		set[c] = true
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
