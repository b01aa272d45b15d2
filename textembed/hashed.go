package textembed

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode"
)

// DefaultHashedDim is the vector length of the default offline encoder.
const DefaultHashedDim = 512

// hashedVersion names the feature recipe; change it whenever the features,
// weights or hashing change, so that Model() reports a different model.
const hashedVersion = "hashed-v1"

// Feature-group weights: words and word pairs carry the meaning, character
// n-grams make the encoder tolerant to inflection and spelling variants.
const (
	weightWord    = 1.0
	weightBigram  = 0.8
	weightCharGrm = 0.35
)

// stopwords are dropped before hashing: they occur in every description and
// would make all vectors alike.
var stopwords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a an and are as at be by for from has have in into is it its
		of on or that the their them then there these this those to was were which with
		within often usually sometimes about may can also each one two than more most less
		texture shape position`) {
		m[w] = true
	}
	return m
}()

// Hashed is the offline default Provider. It maps a text to a vector by
// signed feature hashing ("hashing trick") of
//
//   - lower-cased word unigrams, stopwords removed;
//   - adjacent word bigrams of the remaining words;
//   - character 3- to 5-grams of each word, padded with '<' and '>';
//
// each weighted by a sublinear term frequency sqrt(tf) and a per-group
// weight, then L2-normalised. It is deterministic, bit for bit on every
// platform, and needs no network or model file. Texts sharing words get similar vectors, but unlike a language
// model it knows nothing of synonyms or meaning: it is a baseline, weaker
// than embeddings from a real language model.
type Hashed struct {
	dim int
}

// NewHashed returns the offline encoder with vectors of length dim
// (DefaultHashedDim when dim is 0).
func NewHashed(dim int) (*Hashed, error) {
	if dim == 0 {
		dim = DefaultHashedDim
	}
	if dim < 16 || dim > 1<<20 {
		return nil, fmt.Errorf("hashed encoder: dimension %d out of range [16, %d]", dim, 1<<20)
	}
	return &Hashed{dim: dim}, nil
}

// Name returns "hashed".
func (h *Hashed) Name() string { return "hashed" }

// Model returns the feature recipe and dimension, e.g. "hashed-v1-d512".
func (h *Hashed) Model() string { return fmt.Sprintf("%s-d%d", hashedVersion, h.dim) }

// Dim returns the vector length.
func (h *Hashed) Dim() int { return h.dim }

// Embed hashes each text. A text without any word outside the stopword list
// is an error, since it would give a zero vector.
func (h *Hashed) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v, err := h.embed(t)
		if err != nil {
			return nil, fmt.Errorf("hashed encoder: text %d (%s): %w", i, clip(t, 40), err)
		}
		out[i] = v
	}
	return out, nil
}

func (h *Hashed) embed(text string) ([]float32, error) {
	words := tokenize(text)
	if len(words) == 0 {
		return nil, errors.New("no words to hash")
	}
	counts := map[string]float64{}
	weights := map[string]float64{}
	add := func(feature string, w float64) {
		counts[feature]++
		weights[feature] = w
	}
	for i, w := range words {
		add("w\x00"+w, weightWord)
		if i > 0 {
			add("b\x00"+words[i-1]+" "+w, weightBigram)
		}
		padded := []rune("<" + w + ">")
		for n := 3; n <= 5; n++ {
			for j := 0; j+n <= len(padded); j++ {
				add("c\x00"+string(padded[j:j+n]), weightCharGrm)
			}
		}
	}
	// Accumulate in sorted feature order: float addition is not
	// associative, and map order is random.
	features := slices.Sorted(maps.Keys(counts))
	acc := make([]float64, h.dim)
	for _, f := range features {
		tf := counts[f]
		hs := fnv.New64a()
		hs.Write([]byte(f))
		sum := hs.Sum64()
		idx := int(sum % uint64(h.dim))
		sign := 1.0
		if sum>>63 == 1 {
			sign = -1
		}
		// The explicit float64 conversions forbid fused multiply-adds, and
		// Sqrt is correctly rounded everywhere, so the vectors are the same
		// bits on every platform.
		acc[idx] += float64(sign * float64(weights[f]*math.Sqrt(tf)))
	}
	var norm float64
	for _, x := range acc {
		norm += float64(x * x)
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		return nil, errors.New("features cancel out to a zero vector")
	}
	v := make([]float32, h.dim)
	for i, x := range acc {
		v[i] = float32(x / norm)
	}
	return v, nil
}

// tokenize lower-cases text and splits it into words of letters and digits,
// dropping stopwords.
func tokenize(text string) []string {
	fields := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	words := fields[:0]
	for _, f := range fields {
		if !stopwords[f] {
			words = append(words, f)
		}
	}
	return words
}

// clip quotes s, shortened to at most n runes.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return fmt.Sprintf("%q...", string(r[:n]))
	}
	return fmt.Sprintf("%q", s)
}
