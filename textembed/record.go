package textembed

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
)

// Record is a compact description of a Set for a checkpoint's metadata:
// provenance, class order and a short hash of every text and vector, without
// the vectors themselves. Check explains what differs when a model recorded
// with one set is loaded with another. (A checkpoint that also stores the
// vectors can keep the whole Set and use Compare.)
type Record struct {
	Provider         string   `json:"provider"`
	Model            string   `json:"model"`
	KnowledgeVersion string   `json:"knowledge_version,omitempty"`
	Dim              int      `json:"dim"`
	Classes          []string `json:"classes"`
	// TextHashes and VectorHashes hold, per class, the first 16 hex digits
	// of the SHA-256 of its text and of its vector's float32 bits.
	TextHashes   []string `json:"text_hashes"`
	VectorHashes []string `json:"vector_hashes"`
	// Fingerprint is Set.Fingerprint.
	Fingerprint string `json:"fingerprint"`
}

// Record returns the compact description of s.
func (s Set) Record() Record {
	r := Record{
		Provider: s.Provider, Model: s.Model, KnowledgeVersion: s.KnowledgeVersion, Dim: s.Dim(),
		Classes: append([]string(nil), s.Classes...), Fingerprint: s.Fingerprint(),
	}
	for i := range s.Classes {
		t := ""
		if i < len(s.Texts) {
			t = s.Texts[i]
		}
		r.TextHashes = append(r.TextHashes, shortHash([]byte(t)))
		var v []float32
		if i < len(s.Vectors) {
			v = s.Vectors[i]
		}
		b := make([]byte, 4*len(v))
		for j, x := range v {
			binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(x))
		}
		r.VectorHashes = append(r.VectorHashes, shortHash(b))
	}
	return r
}

func shortHash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Check returns nil when s has the recorded fingerprint, and otherwise a
// *MismatchError saying what differs from the record: provider, model,
// classes or their order, dimension, which classes' texts or vectors
// changed.
func (r Record) Check(s Set) error {
	if s.Fingerprint() == r.Fingerprint {
		return nil
	}
	got := s.Record()
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	if r.Provider != got.Provider {
		add("provider: expected %q, got %q", r.Provider, got.Provider)
	}
	if r.Model != got.Model {
		add("model: expected %q, got %q", r.Model, got.Model)
	}
	diffs = append(diffs, compareClasses(r.Classes, got.Classes)...)
	pos := make(map[string]int, len(got.Classes))
	for i, c := range got.Classes {
		pos[c] = i
	}
	var texts, vecs []string
	for i, c := range r.Classes {
		j, ok := pos[c]
		if !ok || i >= len(r.TextHashes) || i >= len(r.VectorHashes) {
			continue
		}
		if r.TextHashes[i] != got.TextHashes[j] {
			texts = append(texts, fmt.Sprintf("%q", c))
		}
		if r.VectorHashes[i] != got.VectorHashes[j] {
			vecs = append(vecs, fmt.Sprintf("%q", c))
		}
	}
	if len(texts) > 0 {
		msg := fmt.Sprintf("text of %d class(es) changed: %s", len(texts), listSome(texts))
		if r.KnowledgeVersion != got.KnowledgeVersion {
			msg += fmt.Sprintf(" (class knowledge: expected version %q, got %q)", r.KnowledgeVersion, got.KnowledgeVersion)
		}
		diffs = append(diffs, msg)
	}
	if r.Dim != got.Dim {
		add("dimension: expected %d, got %d", r.Dim, got.Dim)
	} else if len(vecs) > 0 {
		add("vectors of %d class(es) differ: %s", len(vecs), listSome(vecs))
	}
	if len(diffs) == 0 {
		add("fingerprint: expected %s, got %s", r.Fingerprint, got.Fingerprint)
	}
	return &MismatchError{Differences: diffs}
}
