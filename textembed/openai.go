package textembed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of OpenAIConfig.
const (
	DefaultOpenAIBaseURL    = "https://api.openai.com"
	DefaultOpenAIModel      = "text-embedding-3-small"
	DefaultOpenAIAPIKeyEnv  = "OPENAI_API_KEY"
	DefaultOpenAIBatchSize  = 64
	DefaultOpenAITimeout    = 60 * time.Second
	DefaultOpenAIMaxRetries = 4
	DefaultOpenAIBackoff    = time.Second
	DefaultOpenAIMaxBackoff = 30 * time.Second
)

// OpenAIConfig configures an OpenAI-compatible embeddings client.
type OpenAIConfig struct {
	// BaseURL is the server, e.g. "https://api.openai.com" or
	// "http://localhost:11434"; a trailing "/v1" is accepted. Requests go
	// to BaseURL + "/v1/embeddings". Default DefaultOpenAIBaseURL.
	BaseURL string
	// Model is the embedding model name. Default DefaultOpenAIModel.
	Model string
	// APIKeyEnv names the environment variable holding the API key.
	// Default DefaultOpenAIAPIKeyEnv. When the variable is unset or empty,
	// requests carry no Authorization header (enough for most local
	// servers).
	APIKeyEnv string
	// Dimensions, when positive, is sent as the request's "dimensions"
	// field (supported by text-embedding-3 models) and every response
	// vector must have that length.
	Dimensions int
	// BatchSize is the number of texts per request. Default
	// DefaultOpenAIBatchSize.
	BatchSize int
	// Timeout bounds each HTTP request (attempt). Default
	// DefaultOpenAITimeout.
	Timeout time.Duration
	// MaxRetries is the number of retries after a failed attempt that may
	// succeed later: HTTP 429, HTTP 5xx, timeouts and connection errors.
	// Other errors (HTTP 4xx, malformed responses) are not retried.
	// Default DefaultOpenAIMaxRetries; a negative value disables retries.
	MaxRetries int
	// Backoff is the wait before the first retry; it doubles for each
	// further retry up to MaxBackoff. A Retry-After header of at most
	// MaxBackoff seconds takes precedence. Defaults DefaultOpenAIBackoff
	// and DefaultOpenAIMaxBackoff.
	Backoff, MaxBackoff time.Duration
	// CacheDir, when set, is a directory of cached vectors keyed by
	// provider, base URL, model, dimensions and text hash; cached texts
	// are not sent again.
	CacheDir string
	// HTTPClient sends the requests; default a client without its own
	// timeout (Timeout applies per request).
	HTTPClient *http.Client
}

// OpenAI is a Provider for any server that speaks the OpenAI embeddings API
// (POST /v1/embeddings with {"model", "input"}; response {"data": [{"index",
// "embedding"}]}): the hosted OpenAI API and compatible services, and local
// servers such as Ollama, llama.cpp, vLLM, LM Studio or text-embeddings-
// inference.
type OpenAI struct {
	cfg      OpenAIConfig
	endpoint string
	apiKey   string
	cache    *cache

	mu     sync.Mutex
	dim    int
	stats  Stats
	sleep  func(ctx context.Context, d time.Duration) error
	client *http.Client
}

// Stats counts what an OpenAI provider did.
type Stats struct {
	// Requests is the number of HTTP requests sent, retries included.
	Requests int
	// Retries is the number of those that repeated a failed attempt.
	Retries int
	// CacheHits and CacheMisses count texts found or not found in the
	// cache (both stay 0 without a cache).
	CacheHits, CacheMisses int
}

// NewOpenAI checks cfg, fills in defaults and reads the API key from the
// environment.
func NewOpenAI(cfg OpenAIConfig) (*OpenAI, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultOpenAIBaseURL
	}
	if cfg.Model == "" {
		cfg.Model = DefaultOpenAIModel
	}
	if cfg.APIKeyEnv == "" {
		cfg.APIKeyEnv = DefaultOpenAIAPIKeyEnv
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultOpenAIBatchSize
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultOpenAITimeout
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultOpenAIMaxRetries
	}
	if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = DefaultOpenAIBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultOpenAIMaxBackoff
	}
	switch {
	case cfg.BatchSize < 0:
		return nil, fmt.Errorf("openai embeddings: batch size %d must be positive", cfg.BatchSize)
	case cfg.Timeout < 0 || cfg.Backoff < 0 || cfg.MaxBackoff < 0:
		return nil, errors.New("openai embeddings: timeout and backoff must not be negative")
	case cfg.Dimensions < 0:
		return nil, fmt.Errorf("openai embeddings: dimensions %d must not be negative", cfg.Dimensions)
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("openai embeddings: base URL %q must start with http:// or https://", cfg.BaseURL)
	}
	base = strings.TrimSuffix(base, "/v1")
	cfg.BaseURL = base
	o := &OpenAI{
		cfg:      cfg,
		endpoint: base + "/v1/embeddings",
		apiKey:   strings.TrimSpace(os.Getenv(cfg.APIKeyEnv)),
		dim:      cfg.Dimensions,
		sleep:    sleepCtx,
		client:   cfg.HTTPClient,
	}
	if o.client == nil {
		o.client = &http.Client{}
	}
	if cfg.CacheDir != "" {
		c, err := openCache(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("openai embeddings: %w", err)
		}
		o.cache = c
	}
	return o, nil
}

// Name returns "openai".
func (o *OpenAI) Name() string { return "openai" }

// Model returns the configured model name, with "@<dimensions>" appended
// when Dimensions is set (the vectors differ from the full-length ones).
func (o *OpenAI) Model() string {
	if o.cfg.Dimensions > 0 {
		return fmt.Sprintf("%s@%d", o.cfg.Model, o.cfg.Dimensions)
	}
	return o.cfg.Model
}

// Dim returns the vector length: Dimensions if set, else the length of the
// first vector received, else 0.
func (o *OpenAI) Dim() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dim
}

// BatchSize returns the number of texts sent per request.
func (o *OpenAI) BatchSize() int { return o.cfg.BatchSize }

// Stats returns the request, retry and cache counters so far.
func (o *OpenAI) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stats
}

// Embed returns one vector per text. Cached texts are read from the cache;
// the others are sent in batches of BatchSize, and their vectors cached.
func (o *OpenAI) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	// Unique texts that must be fetched, in first-seen order.
	var todo []string
	where := map[string][]int{}
	for i, t := range texts {
		if t == "" {
			return nil, fmt.Errorf("openai embeddings: text %d is empty", i)
		}
		if _, pending := where[t]; pending {
			where[t] = append(where[t], i)
			continue
		}
		if o.cache != nil {
			if v, ok := o.cache.get(o.cacheKey(t)); ok && o.checkDim(v) == nil {
				o.count(func(s *Stats) { s.CacheHits++ })
				out[i] = v
				continue
			}
			o.count(func(s *Stats) { s.CacheMisses++ })
		}
		where[t] = []int{i}
		todo = append(todo, t)
	}
	for start := 0; start < len(todo); start += o.cfg.BatchSize {
		batch := todo[start:min(start+o.cfg.BatchSize, len(todo))]
		vecs, err := o.request(ctx, batch)
		if err != nil {
			return nil, fmt.Errorf("%s: texts %d-%d of %d: %w", o.endpoint, start+1, start+len(batch), len(todo), err)
		}
		for k, t := range batch {
			for _, i := range where[t] {
				out[i] = vecs[k]
			}
			if o.cache != nil {
				if err := o.cache.put(o.cacheKey(t), vecs[k]); err != nil {
					return nil, fmt.Errorf("openai embeddings: %w", err)
				}
			}
		}
	}
	// Hand out independent slices: duplicates share backing arrays above.
	for i := range out {
		out[i] = append([]float32(nil), out[i]...)
	}
	return out, nil
}

func (o *OpenAI) count(f func(*Stats)) {
	o.mu.Lock()
	f(&o.stats)
	o.mu.Unlock()
}

func (o *OpenAI) cacheKey(text string) string {
	return cacheKey("openai", o.cfg.BaseURL, o.cfg.Model, strconv.Itoa(o.cfg.Dimensions), text)
}

// checkDim fixes the dimension on first use and rejects other lengths.
func (o *OpenAI) checkDim(v []float32) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(v) == 0 {
		return errors.New("empty embedding")
	}
	if o.dim == 0 {
		o.dim = len(v)
		return nil
	}
	if len(v) != o.dim {
		return fmt.Errorf("wrong dimension: embedding has %d values, want %d", len(v), o.dim)
	}
	return nil
}

// APIError is an error response (HTTP status other than 2xx) from the
// embeddings endpoint.
type APIError struct {
	StatusCode int
	// Message is the server's error message, or the start of its body.
	Message string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// retryable reports whether a later attempt may succeed.
func (e *APIError) retryable() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

type embeddingRequest struct {
	Model          string   `json:"model"`
	Input          []string `json:"input"`
	EncodingFormat string   `json:"encoding_format"`
	Dimensions     int      `json:"dimensions,omitempty"`
}

type embeddingResponse struct {
	Data []struct {
		Index     *int      `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

// request sends one batch, retrying transient failures.
func (o *OpenAI) request(ctx context.Context, batch []string) ([][]float32, error) {
	body, err := json.Marshal(embeddingRequest{Model: o.cfg.Model, Input: batch, EncodingFormat: "float", Dimensions: o.cfg.Dimensions})
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		vecs, retryAfter, err := o.attempt(ctx, body, len(batch))
		if err == nil {
			return vecs, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		var transient *transientError
		if !errors.As(err, &transient) {
			return nil, err
		}
		lastErr = transient.err
		if attempt >= o.cfg.MaxRetries {
			return nil, fmt.Errorf("giving up after %d attempt(s): %w", attempt+1, lastErr)
		}
		wait := o.cfg.Backoff << attempt
		if wait > o.cfg.MaxBackoff || wait <= 0 {
			wait = o.cfg.MaxBackoff
		}
		if retryAfter > 0 && retryAfter <= o.cfg.MaxBackoff {
			wait = retryAfter
		}
		if err := o.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("%w (last error: %v)", err, lastErr)
		}
		o.count(func(s *Stats) { s.Retries++ })
	}
}

// transientError marks a failure worth retrying.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// attempt sends one HTTP request; a transient failure is returned as
// *transientError with the server's Retry-After, if any.
func (o *OpenAI) attempt(ctx context.Context, body []byte, n int) ([][]float32, time.Duration, error) {
	o.count(func(s *Stats) { s.Requests++ })
	actx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, o.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if o.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.apiKey)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		if ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || isNetTimeout(err)) {
			return nil, 0, &transientError{fmt.Errorf("request timed out after %v", o.cfg.Timeout)}
		}
		return nil, 0, &transientError{err}
	}
	defer resp.Body.Close()
	// Embedding responses are large (a few kB per text) but bounded.
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		if ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || isNetTimeout(err)) {
			return nil, 0, &transientError{fmt.Errorf("reading response timed out after %v", o.cfg.Timeout)}
		}
		return nil, 0, &transientError{fmt.Errorf("reading response: %w", err)}
	}
	if resp.StatusCode/100 != 2 {
		apiErr := &APIError{StatusCode: resp.StatusCode, Message: errorMessage(data)}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			if o.apiKey == "" {
				apiErr.Message += fmt.Sprintf(" (no API key: $%s is not set)", o.cfg.APIKeyEnv)
			} else {
				apiErr.Message += fmt.Sprintf(" (check the API key in $%s)", o.cfg.APIKeyEnv)
			}
		}
		if apiErr.retryable() {
			return nil, retryAfter(resp.Header.Get("Retry-After")), &transientError{apiErr}
		}
		return nil, 0, apiErr
	}
	vecs, err := o.decode(data, n)
	if err != nil {
		return nil, 0, err
	}
	return vecs, 0, nil
}

// decode checks and orders a response for a batch of n texts.
func (o *OpenAI) decode(data []byte, n int) ([][]float32, error) {
	var r embeddingResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("malformed response (%v): %s", err, clip(string(data), 80))
	}
	if len(r.Data) != n {
		return nil, fmt.Errorf("response has %d embeddings for %d texts", len(r.Data), n)
	}
	want := o.Dim()
	out := make([][]float32, n)
	for k, d := range r.Data {
		if d.Index == nil {
			return nil, fmt.Errorf("response item %d has no index", k)
		}
		i := *d.Index
		if i < 0 || i >= n {
			return nil, fmt.Errorf("response item %d has index %d, want 0..%d", k, i, n-1)
		}
		if out[i] != nil {
			return nil, fmt.Errorf("response repeats index %d", i)
		}
		if len(d.Embedding) == 0 {
			return nil, fmt.Errorf("response item %d (index %d): empty embedding", k, i)
		}
		if want == 0 {
			want = len(d.Embedding)
		}
		if len(d.Embedding) != want {
			return nil, fmt.Errorf("response item %d (index %d): wrong dimension: embedding has %d values, want %d", k, i, len(d.Embedding), want)
		}
		out[i] = d.Embedding
	}
	// Fix the dimension only once a whole response is valid.
	if err := o.checkDim(out[0]); err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	return out, nil
}

// errorMessage extracts {"error": {"message": ...}} (or {"error": "..."})
// from an error body, falling back to the start of the body.
func errorMessage(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
			return obj.Message
		}
		var s string
		if json.Unmarshal(e.Error, &s) == nil && s != "" {
			return s
		}
	}
	s := strings.TrimSpace(string(body))
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "..."
	}
	return s
}

// retryAfter parses a Retry-After header given in seconds.
func retryAfter(h string) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || secs <= 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
