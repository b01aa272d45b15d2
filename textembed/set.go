package textembed

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Set is the text knowledge of a model: one vector per class, in the model's
// class order, with the provider, model and texts that produced them.
type Set struct {
	// Provider and Model name the encoder (Provider.Name and Model).
	Provider, Model string
	// Classes are the class names in the model's order, as the dataset
	// spells them.
	Classes []string
	// Texts are the embedded descriptions, Texts[i] for Classes[i]. A
	// Set loaded from a bare .npy + class-name list has none.
	Texts []string
	// Vectors holds one vector per class, all of the same length.
	Vectors [][]float32
	// KnowledgeVersion is the version of the class knowledge the texts came
	// from ("" when every text was supplied by the caller). It is reported
	// by Compare but not part of the fingerprint: equal texts are equal
	// whatever file they came from.
	KnowledgeVersion string
}

// Dim is the vector length (0 for an empty set).
func (s Set) Dim() int {
	if len(s.Vectors) == 0 {
		return 0
	}
	return len(s.Vectors[0])
}

// Matrix returns the vectors as one row-major len(Classes) × Dim slice, the
// layout of f_t.
func (s Set) Matrix() []float32 {
	d := s.Dim()
	m := make([]float32, 0, len(s.Vectors)*d)
	for _, v := range s.Vectors {
		m = append(m, v...)
	}
	return m
}

// Validate checks that the set is usable: at least one class, no empty or
// repeated class name, one text (if any) and one vector per class, vectors of
// one non-zero length with finite values.
func (s Set) Validate() error {
	if s.Provider == "" {
		return errors.New("embedding set: empty provider name")
	}
	if len(s.Classes) == 0 {
		return errors.New("embedding set: no classes")
	}
	seen := make(map[string]int, len(s.Classes))
	for i, c := range s.Classes {
		if strings.TrimSpace(c) == "" {
			return fmt.Errorf("embedding set: class %d has an empty name", i)
		}
		if j, dup := seen[c]; dup {
			return fmt.Errorf("embedding set: class %q appears twice (positions %d and %d)", c, j, i)
		}
		seen[c] = i
	}
	if s.Texts != nil && len(s.Texts) != len(s.Classes) {
		return fmt.Errorf("embedding set: %d texts for %d classes", len(s.Texts), len(s.Classes))
	}
	if len(s.Vectors) != len(s.Classes) {
		return fmt.Errorf("embedding set: %d vectors for %d classes", len(s.Vectors), len(s.Classes))
	}
	d := s.Dim()
	if d == 0 {
		return errors.New("embedding set: vectors are empty")
	}
	for i, v := range s.Vectors {
		if len(v) != d {
			return fmt.Errorf("embedding set: vector of class %q has length %d, want %d", s.Classes[i], len(v), d)
		}
		for j, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("embedding set: vector of class %q has a non-finite value at %d", s.Classes[i], j)
			}
		}
	}
	return nil
}

// Fingerprint is a hex SHA-256 over the provider, model, class names, texts
// and the exact bits of every vector. Two sets with the same fingerprint give
// a model identical text knowledge.
func (s Set) Fingerprint() string {
	h := sha256.New()
	var buf [8]byte
	putInt := func(n int) {
		binary.LittleEndian.PutUint64(buf[:], uint64(n))
		h.Write(buf[:])
	}
	putStr := func(str string) {
		putInt(len(str))
		h.Write([]byte(str))
	}
	putStr("segsam-textembed-fingerprint-v1")
	putStr(s.Provider)
	putStr(s.Model)
	putInt(len(s.Classes))
	for _, c := range s.Classes {
		putStr(c)
	}
	putInt(len(s.Texts))
	for _, t := range s.Texts {
		putStr(t)
	}
	putInt(len(s.Vectors))
	for _, v := range s.Vectors {
		putInt(len(v))
		for _, x := range v {
			binary.LittleEndian.PutUint32(buf[:4], math.Float32bits(x))
			h.Write(buf[:4])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// MismatchError lists the differences found by Compare.
type MismatchError struct {
	// Differences are human-readable, most important first.
	Differences []string
}

func (e *MismatchError) Error() string {
	return "text embeddings differ: " + strings.Join(e.Differences, "; ")
}

// maxListed bounds how many per-class differences Compare spells out.
const maxListed = 5

// Compare returns nil when other is identical to s (the same fingerprint),
// and otherwise a *MismatchError that says what differs: provider, model,
// class list or order, changed texts, dimension, vector values. s is the
// reference (for example the set recorded in a checkpoint) and other the set
// offered now; messages read "expected ..., got ...".
func (s Set) Compare(other Set) error {
	if s.Fingerprint() == other.Fingerprint() {
		return nil
	}
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	if s.Provider != other.Provider {
		add("provider: expected %q, got %q", s.Provider, other.Provider)
	}
	if s.Model != other.Model {
		add("model: expected %q, got %q", s.Model, other.Model)
	}
	diffs = append(diffs, compareClasses(s.Classes, other.Classes)...)

	// Per-class comparisons pair classes by name, so a reordering is not
	// also reported as changed texts.
	pos := make(map[string]int, len(other.Classes))
	for i, c := range other.Classes {
		pos[c] = i
	}
	var changed []string
	switch {
	case s.Texts == nil && other.Texts != nil:
		add("texts: expected none recorded, got %d", len(other.Texts))
	case s.Texts != nil && other.Texts == nil:
		add("texts: expected %d, got none recorded", len(s.Texts))
	case s.Texts != nil:
		for i, c := range s.Classes {
			j, ok := pos[c]
			if ok && i < len(s.Texts) && j < len(other.Texts) && s.Texts[i] != other.Texts[j] {
				changed = append(changed, fmt.Sprintf("%q (%s)", c, firstChange(s.Texts[i], other.Texts[j])))
			}
		}
	}
	if len(changed) > 0 {
		msg := fmt.Sprintf("text of %d class(es) changed: %s", len(changed), listSome(changed))
		if s.KnowledgeVersion != other.KnowledgeVersion {
			msg += fmt.Sprintf(" (class knowledge: expected version %q, got %q)", s.KnowledgeVersion, other.KnowledgeVersion)
		}
		diffs = append(diffs, msg)
	}
	if d1, d2 := s.Dim(), other.Dim(); d1 != d2 {
		add("dimension: expected %d, got %d", d1, d2)
	} else {
		var differ []string
		for i, c := range s.Classes {
			j, ok := pos[c]
			if !ok || i >= len(s.Vectors) || j >= len(other.Vectors) {
				continue
			}
			if d := maxAbsDiff(s.Vectors[i], other.Vectors[j]); d != 0 {
				differ = append(differ, fmt.Sprintf("%q (max |difference| %.3g)", c, d))
			}
		}
		if len(differ) > 0 {
			add("vectors of %d class(es) differ: %s", len(differ), listSome(differ))
		}
	}
	if len(diffs) == 0 {
		// Everything compared equal but the fingerprints differ: only
		// possible for malformed sets (e.g. ragged vectors).
		add("fingerprint: expected %s, got %s", s.Fingerprint(), other.Fingerprint())
	}
	return &MismatchError{Differences: diffs}
}

func compareClasses(want, got []string) []string {
	if slices.Equal(want, got) {
		return nil
	}
	var diffs []string
	inGot := make(map[string]bool, len(got))
	for _, c := range got {
		inGot[c] = true
	}
	inWant := make(map[string]bool, len(want))
	for _, c := range want {
		inWant[c] = true
	}
	var missing, extra []string
	for _, c := range want {
		if !inGot[c] {
			missing = append(missing, fmt.Sprintf("%q", c))
		}
	}
	for _, c := range got {
		if !inWant[c] {
			extra = append(extra, fmt.Sprintf("%q", c))
		}
	}
	if len(want) != len(got) {
		diffs = append(diffs, fmt.Sprintf("number of classes: expected %d, got %d", len(want), len(got)))
	}
	if len(missing) > 0 {
		diffs = append(diffs, fmt.Sprintf("missing classes: %s", listSome(missing)))
	}
	if len(extra) > 0 {
		diffs = append(diffs, fmt.Sprintf("unexpected classes: %s", listSome(extra)))
	}
	if len(missing) == 0 && len(extra) == 0 {
		for i := range want {
			if want[i] != got[i] {
				diffs = append(diffs, fmt.Sprintf("class order: position %d expected %q, got %q", i, want[i], got[i]))
				break
			}
		}
	}
	return diffs
}

// firstChange describes where two texts start to differ.
func firstChange(a, b string) string {
	ra, rb := []rune(a), []rune(b)
	i := 0
	for i < len(ra) && i < len(rb) && ra[i] == rb[i] {
		i++
	}
	snip := func(r []rune) string {
		end := min(i+30, len(r))
		if i >= len(r) {
			return `""`
		}
		return clip(string(r[i:end]), 30)
	}
	return fmt.Sprintf("from character %d: expected %s, got %s", i, snip(ra), snip(rb))
}

func listSome(items []string) string {
	if len(items) <= maxListed {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:maxListed], ", ") + fmt.Sprintf(" and %d more", len(items)-maxListed)
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var m float64
	for i := range a {
		if d := math.Abs(float64(a[i]) - float64(b[i])); d > m || (d != d) {
			m = d
		}
	}
	return m
}
