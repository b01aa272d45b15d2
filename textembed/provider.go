// Package textembed turns class descriptions into the text embeddings f_t
// that SEG-SAM's text-to-vision semantic enhancement (T2VSE) consumes: one
// vector per class of the model's vocabulary, in a fixed class order.
//
// A Provider embeds texts. Three are available:
//
//   - Hashed, the offline default: hashed word and character n-gram
//     features, L2-normalised. It needs no download and no network and is
//     deterministic, but it only captures shared words, not meaning, so it
//     is weaker than a real language-model embedding.
//   - OpenAI, a client for any OpenAI-compatible POST /v1/embeddings
//     endpoint (hosted services and local servers), with timeouts, retries
//     with exponential backoff, batching and an on-disk cache.
//   - File, embeddings saved earlier (by Save, i.e. 'segsam text embed'), or
//     a user's own .npy matrix with a JSON list of class names.
//
// Build resolves class names through package knowledge, embeds their
// descriptions and returns a Set, which records the provider, model, classes,
// texts and vectors. A checkpoint stores the Set (or its compact Record, with
// the Fingerprint); Set.Compare and Record.Check explain what differs when a
// model is loaded with other embeddings.
package textembed

import "context"

// Provider embeds texts into fixed-length vectors.
type Provider interface {
	// Name identifies the provider kind, e.g. "hashed" or "openai".
	Name() string
	// Model identifies the model (or configuration) within the provider;
	// vectors from different models are not interchangeable.
	Model() string
	// Dim is the vector length, or 0 while it is unknown (an API provider
	// learns it from the first response).
	Dim() int
	// Embed returns one vector per text, in the order of texts.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// ClassEmbedder is implemented by providers that store vectors per class
// rather than computing them from text (File). Build prefers it to Embed.
type ClassEmbedder interface {
	// EmbedClasses returns the vectors of classes; texts[i] is the
	// description Build resolved for classes[i].
	EmbedClasses(ctx context.Context, classes, texts []string) ([][]float32, error)
}

// batcher is implemented by providers that send texts in batches; Build
// reports progress once per batch.
type batcher interface {
	BatchSize() int
}
