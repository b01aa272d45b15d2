package textembed

import (
	"context"
	"fmt"

	"github.com/segsam/segsam/knowledge"
)

// File is a Provider backed by embeddings on disk (see Load). It reports the
// provider and model recorded in the file, so a Set rebuilt from the file
// carries the same provenance, and fingerprint, as the one that was saved.
type File struct {
	path    string
	set     Set
	byText  map[string]int
	byClass map[string]int // class name as stored, and its canonical name
}

// OpenFile loads the embeddings at path (a .npy with its JSON sidecar).
func OpenFile(path string) (*File, error) {
	s, err := Load(path)
	if err != nil {
		return nil, err
	}
	f := &File{path: path, set: s, byText: map[string]int{}, byClass: map[string]int{}}
	for i, t := range s.Texts {
		f.byText[t] = i
	}
	for i, c := range s.Classes {
		f.byClass[c] = i
	}
	for i, c := range s.Classes {
		if k, ok := knowledge.Lookup(c); ok {
			if _, taken := f.byClass[k.Name]; !taken {
				f.byClass[k.Name] = i
			}
		}
	}
	return f, nil
}

// Name returns the provider recorded in the file ("file" for a bare class
// list).
func (f *File) Name() string { return f.set.Provider }

// Model returns the model recorded in the file.
func (f *File) Model() string { return f.set.Model }

// Dim returns the vector length.
func (f *File) Dim() int { return f.set.Dim() }

// Set returns the embeddings as loaded.
func (f *File) Set() Set { return f.set }

// Embed returns the stored vector of each text; the file must hold texts
// (bare class lists do not) and every text must be one of them.
func (f *File) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if f.set.Texts == nil {
		return nil, fmt.Errorf("%s holds no texts, only class names; look vectors up by class", f.path)
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		j, ok := f.byText[t]
		if !ok {
			return nil, fmt.Errorf("text %d %s is not in %s (it holds %d texts); re-run 'segsam text embed'", i, clip(t, 40), f.path, len(f.set.Texts))
		}
		out[i] = append([]float32(nil), f.set.Vectors[j]...)
	}
	return out, nil
}

// EmbedClasses returns the stored vector of each class, matched by name or,
// failing that, by canonical class name. When the file records texts, the
// stored text must equal texts[i]: a changed description means the stored
// vector no longer embeds it.
func (f *File) EmbedClasses(ctx context.Context, classes, texts []string) ([][]float32, error) {
	out := make([][]float32, len(classes))
	for i, c := range classes {
		j, ok := f.byClass[c]
		if !ok {
			if k, known := knowledge.Lookup(c); known {
				j, ok = f.byClass[k.Name]
			}
		}
		if !ok {
			return nil, fmt.Errorf("class %q is not in %s (it holds %d classes)", c, f.path, len(f.set.Classes))
		}
		if f.set.Texts != nil && i < len(texts) && f.set.Texts[j] != texts[i] {
			return nil, fmt.Errorf("class %q: the text stored in %s differs from its current description (%s; file knowledge version %q, current %q); re-run 'segsam text embed'",
				c, f.path, firstChange(f.set.Texts[j], texts[i]), f.set.KnowledgeVersion, knowledge.Version())
		}
		out[i] = append([]float32(nil), f.set.Vectors[j]...)
	}
	return out, nil
}
