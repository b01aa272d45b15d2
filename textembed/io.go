package textembed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/segsam/segsam/npy"
)

// SidecarFormat is the "format" field of the JSON file written next to the
// .npy by Save.
const SidecarFormat = "segsam-text-embeddings"

const sidecarVersion = 1

// sidecar is the JSON written next to the .npy matrix.
type sidecar struct {
	Format           string   `json:"format"`
	FormatVersion    int      `json:"format_version"`
	Provider         string   `json:"provider"`
	Model            string   `json:"model"`
	Dim              int      `json:"dim"`
	KnowledgeVersion string   `json:"knowledge_version,omitempty"`
	Fingerprint      string   `json:"fingerprint"`
	Classes          []string `json:"classes"`
	Texts            []string `json:"texts,omitempty"`
}

// SidecarPath returns the JSON file that accompanies the .npy at path:
// "emb.npy" -> "emb.json".
func SidecarPath(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".json"
}

// Save writes s as a float32 .npy matrix (classes × dim) at path, which must
// end in ".npy", and a JSON sidecar (SidecarPath) with the provider, model,
// dimension, knowledge version, fingerprint, classes and texts. Both are
// written to temporary files first and renamed, so a failed Save leaves no
// half-written pair.
func Save(path string, s Set) error {
	if filepath.Ext(path) != ".npy" {
		return fmt.Errorf("save embeddings: %s: the file name must end in .npy", path)
	}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("save embeddings %s: %w", path, err)
	}
	meta := sidecar{
		Format:           SidecarFormat,
		FormatVersion:    sidecarVersion,
		Provider:         s.Provider,
		Model:            s.Model,
		Dim:              s.Dim(),
		KnowledgeVersion: s.KnowledgeVersion,
		Fingerprint:      s.Fingerprint(),
		Classes:          s.Classes,
		Texts:            s.Texts,
	}
	js, err := json.MarshalIndent(meta, "", " ")
	if err != nil {
		return fmt.Errorf("save embeddings %s: %w", path, err)
	}
	js = append(js, '\n')
	var buf bytes.Buffer
	if err := npy.Encode(&buf, []int{len(s.Vectors), s.Dim()}, s.Matrix()); err != nil {
		return fmt.Errorf("save embeddings %s: %w", path, err)
	}
	side := SidecarPath(path)
	if err := writeAtomic(path, buf.Bytes()); err != nil {
		return fmt.Errorf("save embeddings: %w", err)
	}
	if err := writeAtomic(side, js); err != nil {
		return fmt.Errorf("save embeddings: %w", err)
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Load reads embeddings written by Save: the .npy at path and its JSON
// sidecar. The sidecar may instead be a bare JSON array of class names (a
// user's own .npy, one row per class); the Set then has provider "file",
// model the .npy's base name, and no texts. A sidecar fingerprint that does
// not match the data is an error (the two files do not belong together).
func Load(path string) (Set, error) {
	arr, err := npy.Read(path)
	if err != nil {
		return Set{}, fmt.Errorf("load embeddings: %w", err)
	}
	if len(arr.Shape) != 2 {
		return Set{}, fmt.Errorf("load embeddings %s: array has shape %v, want 2-D (classes × dim)", path, arr.Shape)
	}
	switch arr.DType {
	case "f4", "f8", "f2":
	default:
		return Set{}, fmt.Errorf("load embeddings %s: element type %s, want float", path, arr.DType)
	}
	k, d := arr.Shape[0], arr.Shape[1]
	if k == 0 || d == 0 {
		return Set{}, fmt.Errorf("load embeddings %s: empty array of shape %v", path, arr.Shape)
	}
	flat := arr.Float32()
	vecs := make([][]float32, k)
	for i := range vecs {
		vecs[i] = flat[i*d : (i+1)*d : (i+1)*d]
	}
	side := SidecarPath(path)
	raw, err := os.ReadFile(side)
	if err != nil {
		return Set{}, fmt.Errorf("load embeddings %s: class list: %w", path, err)
	}
	var s Set
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '[' {
		var names []string
		if err := json.Unmarshal(trimmed, &names); err != nil {
			return Set{}, fmt.Errorf("load embeddings: %s: want a JSON array of class names: %w", side, err)
		}
		s = Set{Provider: "file", Model: strings.TrimSuffix(filepath.Base(path), ".npy"), Classes: names, Vectors: vecs}
	} else {
		var meta sidecar
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&meta); err != nil {
			return Set{}, fmt.Errorf("load embeddings: %s: %w", side, err)
		}
		if meta.Format != SidecarFormat {
			return Set{}, fmt.Errorf("load embeddings: %s: format %q, want %q", side, meta.Format, SidecarFormat)
		}
		if meta.FormatVersion < 1 || meta.FormatVersion > sidecarVersion {
			return Set{}, fmt.Errorf("load embeddings: %s: format version %d not supported (want 1..%d)", side, meta.FormatVersion, sidecarVersion)
		}
		if meta.Dim != d {
			return Set{}, fmt.Errorf("load embeddings: %s says dim %d but %s has %d columns", side, meta.Dim, path, d)
		}
		s = Set{Provider: meta.Provider, Model: meta.Model, Classes: meta.Classes, Texts: meta.Texts,
			Vectors: vecs, KnowledgeVersion: meta.KnowledgeVersion}
		if err := s.Validate(); err != nil {
			return Set{}, fmt.Errorf("load embeddings %s: %w", path, err)
		}
		if fp := s.Fingerprint(); meta.Fingerprint != fp {
			return Set{}, fmt.Errorf("load embeddings %s: fingerprint %s in %s does not match the data (%s); the two files do not belong together",
				path, meta.Fingerprint, side, fp)
		}
		return s, nil
	}
	if err := s.Validate(); err != nil {
		return Set{}, fmt.Errorf("load embeddings %s (class list %s): %w", path, side, err)
	}
	return s, nil
}

// Save writes s to path; see the function Save.
func (s Set) Save(path string) error { return Save(path, s) }
