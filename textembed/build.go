package textembed

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/segsam/segsam/knowledge"
)

// BuildOption configures Build.
type BuildOption func(*buildConfig)

type buildConfig struct {
	descriptions map[string]string
	base         *knowledge.Base
	progress     func(done, total int)
}

// WithDescriptions supplies texts for classes, keyed by class name as given
// to Build. They take precedence over the class knowledge, and let Build
// embed classes the knowledge does not know.
func WithDescriptions(texts map[string]string) BuildOption {
	return func(c *buildConfig) { c.descriptions = texts }
}

// WithKnowledge resolves classes in b instead of the embedded knowledge.
func WithKnowledge(b *knowledge.Base) BuildOption {
	return func(c *buildConfig) { c.base = b }
}

// WithProgress calls fn after each embedded batch with the number of classes
// done so far and the total.
func WithProgress(fn func(done, total int)) BuildOption {
	return func(c *buildConfig) { c.progress = fn }
}

// defaultChunk is the progress granularity for providers without batches.
const defaultChunk = 32

// Descriptions resolves each class to the text that Build embeds: a supplied
// description if any, else the class knowledge's Description. Unknown classes
// are reported together in one error. Two names resolving to the same
// canonical class are an error too: they would get identical vectors.
func Descriptions(classes []string, opts ...BuildOption) (texts []string, knowledgeVersion string, err error) {
	cfg := newBuildConfig(opts)
	return cfg.resolve(classes)
}

func newBuildConfig(opts []BuildOption) *buildConfig {
	cfg := &buildConfig{base: knowledge.Default()}
	for _, o := range opts {
		o(cfg)
	}
	return cfg
}

func (cfg *buildConfig) resolve(classes []string) ([]string, string, error) {
	if len(classes) == 0 {
		return nil, "", errors.New("no classes to embed")
	}
	texts := make([]string, len(classes))
	var unknown []string
	usedKnowledge := false
	seenName := map[string]int{}
	seenCanon := map[string]int{}
	for i, c := range classes {
		if strings.TrimSpace(c) == "" {
			return nil, "", fmt.Errorf("class %d has an empty name", i)
		}
		if j, dup := seenName[c]; dup {
			return nil, "", fmt.Errorf("class %q is listed twice (positions %d and %d)", c, j, i)
		}
		seenName[c] = i
		if d, ok := cfg.descriptions[c]; ok {
			if strings.TrimSpace(d) == "" {
				return nil, "", fmt.Errorf("class %q: the supplied description is empty", c)
			}
			texts[i] = d
			continue
		}
		k, ok := cfg.base.Lookup(c)
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", c))
			continue
		}
		if j, dup := seenCanon[k.Name]; dup {
			return nil, "", fmt.Errorf("classes %q (position %d) and %q (position %d) are the same class %q; merge them in the dataset",
				classes[j], j, c, i, k.Name)
		}
		seenCanon[k.Name] = i
		texts[i] = k.Description()
		usedKnowledge = true
	}
	if len(unknown) > 0 {
		return nil, "", fmt.Errorf("unknown class(es) %s: not in the class knowledge (version %s) and no description supplied; see 'segsam text list' for known names and aliases",
			strings.Join(unknown, ", "), cfg.base.Version())
	}
	version := ""
	if usedKnowledge {
		version = cfg.base.Version()
	}
	return texts, version, nil
}

// Build embeds the descriptions of classes with p and returns the Set, in the
// order of classes. Each class is resolved through the class knowledge
// (aliases, case and separators are accepted; the Set keeps the names as
// given); an unknown class is an error naming it unless WithDescriptions
// supplies its text. Providers that implement ClassEmbedder (File) are asked
// by class.
func Build(ctx context.Context, p Provider, classes []string, opts ...BuildOption) (Set, error) {
	cfg := newBuildConfig(opts)
	texts, version, err := cfg.resolve(classes)
	if err != nil {
		return Set{}, err
	}
	var vecs [][]float32
	if ce, ok := p.(ClassEmbedder); ok {
		vecs, err = ce.EmbedClasses(ctx, classes, texts)
		if err != nil {
			return Set{}, fmt.Errorf("embed with %s: %w", p.Name(), err)
		}
		if cfg.progress != nil {
			cfg.progress(len(classes), len(classes))
		}
	} else {
		chunk := defaultChunk
		if b, ok := p.(batcher); ok && b.BatchSize() > 0 {
			chunk = b.BatchSize()
		}
		for start := 0; start < len(texts); start += chunk {
			end := min(start+chunk, len(texts))
			v, err := p.Embed(ctx, texts[start:end])
			if err != nil {
				return Set{}, fmt.Errorf("embed with %s (%s): %w", p.Name(), p.Model(), err)
			}
			if len(v) != end-start {
				return Set{}, fmt.Errorf("embed with %s: got %d vectors for %d texts", p.Name(), len(v), end-start)
			}
			vecs = append(vecs, v...)
			if cfg.progress != nil {
				cfg.progress(end, len(texts))
			}
		}
	}
	s := Set{
		Provider:         p.Name(),
		Model:            p.Model(),
		Classes:          append([]string(nil), classes...),
		Texts:            texts,
		Vectors:          vecs,
		KnowledgeVersion: version,
	}
	if err := s.Validate(); err != nil {
		return Set{}, err
	}
	return s, nil
}
