package textembed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeVector is the fake server's embedding of a text.
func fakeVector(text string, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		h := fnv.New32a()
		fmt.Fprintf(h, "%d:%s", i, text)
		v[i] = float32(h.Sum32()%1000) / 1000
	}
	return v
}

// fakeServer speaks the OpenAI embeddings API. Its behaviour per request is
// decided by respond (nil: a correct response).
type fakeServer struct {
	t   *testing.T
	dim int
	// respond, when set, may write its own response and return true.
	respond func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool
	// shuffle reverses the order of the data items in correct responses.
	shuffle bool

	mu       sync.Mutex
	requests []embeddingRequest
	auth     []string
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/embeddings" {
		http.Error(w, `{"error":{"message":"not found"}}`, http.StatusNotFound)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("Content-Type %q", ct)
	}
	var req embeddingRequest
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &req); err != nil {
		f.t.Errorf("request body %q: %v", body, err)
	}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	n := len(f.requests)
	f.mu.Unlock()
	if f.respond != nil && f.respond(w, r, n, req) {
		return
	}
	writeEmbeddings(w, req.Input, f.dim, f.shuffle)
}

func writeEmbeddings(w http.ResponseWriter, input []string, dim int, shuffle bool) {
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	}
	var items []item
	for i, t := range input {
		items = append(items, item{"embedding", i, fakeVector(t, dim)})
	}
	if shuffle {
		slices.Reverse(items)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": items, "model": "fake",
		"usage": map[string]int{"prompt_tokens": 1, "total_tokens": 1}})
}

func (f *fakeServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeServer) batchSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []int
	for _, r := range f.requests {
		s = append(s, len(r.Input))
	}
	return s
}

func newFake(t *testing.T, dim int) (*fakeServer, *httptest.Server) {
	f := &fakeServer{t: t, dim: dim}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// testConfig has short backoffs so retries take milliseconds.
func testConfig(url string) OpenAIConfig {
	return OpenAIConfig{BaseURL: url, Model: "fake-embed", APIKeyEnv: "SEGSAM_TEST_NO_SUCH_KEY",
		Timeout: 2 * time.Second, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
}

func mustOpenAI(t *testing.T, cfg OpenAIConfig) *OpenAI {
	t.Helper()
	o, err := NewOpenAI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOpenAISuccess(t *testing.T) {
	t.Setenv("SEGSAM_TEST_KEY", "sk-test")
	for _, base := range []string{"", "/", "/v1", "/v1/"} {
		t.Run("base"+base, func(t *testing.T) {
			f, srv := newFake(t, 6)
			cfg := testConfig(srv.URL + base)
			cfg.APIKeyEnv = "SEGSAM_TEST_KEY"
			o := mustOpenAI(t, cfg)
			if o.Dim() != 0 {
				t.Errorf("Dim before the first call = %d, want 0", o.Dim())
			}
			texts := []string{"liver text", "spleen text", "aorta text"}
			got, err := o.Embed(context.Background(), texts)
			if err != nil {
				t.Fatal(err)
			}
			for i, txt := range texts {
				if !slices.Equal(got[i], fakeVector(txt, 6)) {
					t.Errorf("vector %d = %v, want %v", i, got[i], fakeVector(txt, 6))
				}
			}
			if o.Dim() != 6 || o.Name() != "openai" || o.Model() != "fake-embed" {
				t.Errorf("Dim/Name/Model = %d %q %q", o.Dim(), o.Name(), o.Model())
			}
			req := f.requests[0]
			if req.Model != "fake-embed" || req.EncodingFormat != "float" || !slices.Equal(req.Input, texts) || req.Dimensions != 0 {
				t.Errorf("request = %+v", req)
			}
			if f.auth[0] != "Bearer sk-test" {
				t.Errorf("Authorization = %q", f.auth[0])
			}
		})
	}
}

func TestOpenAINoKeyNoAuthHeader(t *testing.T) {
	f, srv := newFake(t, 3)
	o := mustOpenAI(t, testConfig(srv.URL))
	if _, err := o.Embed(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if f.auth[0] != "" {
		t.Errorf("Authorization = %q without a key", f.auth[0])
	}
}

func TestOpenAIDimensionsAndModelName(t *testing.T) {
	f, srv := newFake(t, 8)
	cfg := testConfig(srv.URL)
	cfg.Dimensions = 8
	o := mustOpenAI(t, cfg)
	if o.Dim() != 8 || o.Model() != "fake-embed@8" {
		t.Fatalf("Dim %d Model %q", o.Dim(), o.Model())
	}
	if _, err := o.Embed(context.Background(), []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if f.requests[0].Dimensions != 8 {
		t.Errorf("request dimensions = %d", f.requests[0].Dimensions)
	}
}

func TestOpenAIBatching(t *testing.T) {
	f, srv := newFake(t, 4)
	cfg := testConfig(srv.URL)
	cfg.BatchSize = 2
	o := mustOpenAI(t, cfg)
	texts := []string{"a", "b", "c", "b", "d", "e"} // "b" twice: sent once
	got, err := o.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	if sizes := f.batchSizes(); !slices.Equal(sizes, []int{2, 2, 1}) {
		t.Errorf("batch sizes = %v, want [2 2 1]", sizes)
	}
	for i, txt := range texts {
		if !slices.Equal(got[i], fakeVector(txt, 4)) {
			t.Errorf("vector %d (%q) wrong", i, txt)
		}
	}
	got[1][0] = 42 // duplicates must not share memory
	if got[3][0] == 42 {
		t.Error("vectors of duplicate texts share memory")
	}
	if o.BatchSize() != 2 {
		t.Errorf("BatchSize = %d", o.BatchSize())
	}
}

func TestOpenAIShuffledIndices(t *testing.T) {
	f, srv := newFake(t, 5)
	f.shuffle = true
	o := mustOpenAI(t, testConfig(srv.URL))
	texts := []string{"first", "second", "third", "fourth"}
	got, err := o.Embed(context.Background(), texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, txt := range texts {
		if !slices.Equal(got[i], fakeVector(txt, 5)) {
			t.Errorf("vector %d is not that of %q: response order was not undone", i, txt)
		}
	}
}

func TestOpenAICache(t *testing.T) {
	dir := t.TempDir()
	f, srv := newFake(t, 4)
	cfg := testConfig(srv.URL)
	cfg.CacheDir = dir
	o := mustOpenAI(t, cfg)
	first, err := o.Embed(context.Background(), []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if s := o.Stats(); s.CacheMisses != 2 || s.CacheHits != 0 || s.Requests != 1 {
		t.Errorf("first call stats %+v", s)
	}
	// A new provider on the same cache: "a" and "b" come from disk, only
	// "c" is sent.
	o2 := mustOpenAI(t, cfg)
	got, err := o2.Embed(context.Background(), []string{"b", "c", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[0], first[1]) || !slices.Equal(got[2], first[0]) || !slices.Equal(got[1], fakeVector("c", 4)) {
		t.Error("cached vectors differ from the fetched ones")
	}
	if s := o2.Stats(); s.CacheHits != 2 || s.CacheMisses != 1 || s.Requests != 1 {
		t.Errorf("second call stats %+v", s)
	}
	if reqs := f.requests; len(reqs) != 2 || !slices.Equal(reqs[1].Input, []string{"c"}) {
		t.Errorf("requests %+v, want the second to send only \"c\"", reqs)
	}
	// The key includes the model and the base URL: another model misses.
	cfg3 := cfg
	cfg3.Model = "other-model"
	o3 := mustOpenAI(t, cfg3)
	if _, err := o3.Embed(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if s := o3.Stats(); s.CacheHits != 0 || s.Requests != 1 {
		t.Errorf("other model stats %+v, want a miss", s)
	}
	// A damaged entry is a miss, not an error.
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 4 {
		t.Fatalf("%d cache files, want 4", len(files))
	}
	for _, p := range files {
		if err := os.WriteFile(p, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o4 := mustOpenAI(t, cfg)
	if _, err := o4.Embed(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if s := o4.Stats(); s.CacheHits != 0 || s.Requests != 1 {
		t.Errorf("damaged cache stats %+v", s)
	}
}

func TestOpenAIRetries(t *testing.T) {
	failFirst := func(k int, status int, retryAfter string) func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool {
		return func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool {
			if n > k {
				return false
			}
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":{"message":"failure %d","type":"server_error"}}`, n)
			return true
		}
	}
	tests := []struct {
		name         string
		respond      func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool
		maxRetries   int
		wantRequests int
		wantErr      string // "" for success
		wantWaits    []time.Duration
	}{
		{"500 then success", failFirst(2, 500, ""), 4, 3, "", []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}},
		{"503 gives up", failFirst(100, 503, ""), 2, 3, "giving up after 3 attempt(s): HTTP 503 Service Unavailable: failure 3", []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}},
		{"429 with Retry-After", failFirst(1, 429, "7"), 4, 2, "", []time.Duration{7 * time.Second}},
		{"429 Retry-After too long", failFirst(1, 429, "3600"), 4, 2, "", []time.Duration{10 * time.Millisecond}},
		{"backoff is capped", failFirst(5, 502, ""), 5, 6, "", []time.Duration{10, 20, 40, 50, 50}},
		{"400 not retried", failFirst(100, 400, ""), 4, 1, "HTTP 400 Bad Request: failure 1", nil},
		{"404 not retried", failFirst(100, 404, ""), 4, 1, "HTTP 404", nil},
		{"401 names the key variable", failFirst(100, 401, ""), 4, 1, "$SEGSAM_TEST_NO_SUCH_KEY is not set", nil},
		{"retries disabled", failFirst(100, 500, ""), -1, 1, "giving up after 1 attempt(s)", nil},
		{"non-JSON error body", func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool {
			w.WriteHeader(422)
			io.WriteString(w, "<html>nope</html>")
			return true
		}, 4, 1, "HTTP 422 Unprocessable Entity: <html>nope</html>", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t, 3)
			f.respond = tc.respond
			cfg := testConfig(srv.URL)
			cfg.MaxRetries = tc.maxRetries
			cfg.Backoff = 10 * time.Millisecond
			cfg.MaxBackoff = 50 * time.Millisecond
			if tc.name == "429 with Retry-After" {
				cfg.MaxBackoff = 10 * time.Second
			}
			o := mustOpenAI(t, cfg)
			var waits []time.Duration
			o.sleep = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return nil }
			got, err := o.Embed(context.Background(), []string{"q"})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got[0], fakeVector("q", 3)) {
					t.Error("wrong vector after retries")
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if n := f.count(); n != tc.wantRequests {
				t.Errorf("%d requests, want %d", n, tc.wantRequests)
			}
			want := tc.wantWaits
			if tc.name == "backoff is capped" {
				want = nil
				for _, ms := range tc.wantWaits {
					want = append(want, ms*time.Millisecond)
				}
			}
			if !slices.Equal(waits, want) {
				t.Errorf("waits %v, want %v", waits, want)
			}
			if s := o.Stats(); s.Requests != tc.wantRequests || s.Retries != tc.wantRequests-1 {
				t.Errorf("stats %+v", s)
			}
			var apiErr *APIError
			if tc.wantErr != "" && strings.Contains(tc.wantErr, "HTTP") && !errors.As(err, &apiErr) {
				t.Errorf("error %v does not wrap *APIError", err)
			}
		})
	}
}

func TestOpenAITimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	f, srv := newFake(t, 3)
	f.respond = func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool {
		if n <= 2 {
			select { // hang until the client gives up
			case <-r.Context().Done():
			case <-release:
			}
			return true
		}
		return false
	}
	cfg := testConfig(srv.URL)
	cfg.Timeout = 50 * time.Millisecond
	cfg.MaxRetries = 1
	o := mustOpenAI(t, cfg)
	start := time.Now()
	_, err := o.Embed(context.Background(), []string{"slow"})
	if err == nil || !strings.Contains(err.Error(), "timed out after 50ms") || !strings.Contains(err.Error(), "giving up after 2 attempt(s)") {
		t.Fatalf("error %v, want a timeout after 2 attempts", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %v, timeouts not applied", el)
	}
	// A third attempt would have succeeded: allowing it recovers.
	cfg.MaxRetries = 2
	f.mu.Lock()
	f.requests = nil
	f.mu.Unlock()
	o = mustOpenAI(t, cfg)
	if _, err := o.Embed(context.Background(), []string{"slow"}); err != nil {
		t.Fatalf("with a third attempt: %v", err)
	}
	if n := f.count(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestOpenAIContextCancelStopsRetrying(t *testing.T) {
	f, srv := newFake(t, 3)
	f.respond = func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool {
		w.WriteHeader(500)
		return true
	}
	cfg := testConfig(srv.URL)
	cfg.Backoff = time.Hour
	cfg.MaxBackoff = time.Hour
	o := mustOpenAI(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := o.Embed(ctx, []string{"x"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the context's deadline", err)
	}
	if n := f.count(); n != 1 {
		t.Errorf("%d requests", n)
	}
}

func TestOpenAIBadResponses(t *testing.T) {
	raw := func(body string) func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool {
		return func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, body)
			return true
		}
	}
	tests := []struct {
		name    string
		dims    int // OpenAIConfig.Dimensions
		respond func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool
		want    string
	}{
		{"malformed JSON", 0, raw(`{"data": [{"index": 0, "embedding": [0.1, 0.2`), "malformed response"},
		{"HTML with status 200", 0, raw(`<html>proxy login</html>`), "malformed response"},
		{"wrong type", 0, raw(`{"data": [{"index": 0, "embedding": "AAAA"}]}`), "malformed response"},
		{"too few items", 0, raw(`{"data": []}`), "0 embeddings for 1 texts"},
		{"missing index", 0, raw(`{"data": [{"embedding": [1, 2]}]}`), "has no index"},
		{"index out of range", 0, raw(`{"data": [{"index": 3, "embedding": [1, 2]}]}`), "index 3, want 0..0"},
		{"empty embedding", 0, raw(`{"data": [{"index": 0, "embedding": []}]}`), "empty embedding"},
		{"wrong dimension", 4, raw(`{"data": [{"index": 0, "embedding": [1, 2, 3]}]}`), "wrong dimension: embedding has 3 values, want 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t, 3)
			f.respond = tc.respond
			cfg := testConfig(srv.URL)
			cfg.Dimensions = tc.dims
			o := mustOpenAI(t, cfg)
			_, err := o.Embed(context.Background(), []string{"x"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if n := f.count(); n != 1 {
				t.Errorf("%d requests: a malformed answer must not be retried", n)
			}
		})
	}
	// Two texts: repeated index, inconsistent lengths.
	for name, body := range map[string]string{
		"repeated index": `{"data": [{"index": 0, "embedding": [1, 2]}, {"index": 0, "embedding": [3, 4]}]}`,
		"ragged":         `{"data": [{"index": 0, "embedding": [1, 2]}, {"index": 1, "embedding": [3, 4, 5]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			f, srv := newFake(t, 3)
			f.respond = raw(body)
			o := mustOpenAI(t, testConfig(srv.URL))
			if _, err := o.Embed(context.Background(), []string{"x", "y"}); err == nil {
				t.Fatal("accepted")
			} else {
				t.Log(err)
			}
		})
	}
	// A later batch with another dimension than the first.
	f, srv := newFake(t, 3)
	f.respond = func(w http.ResponseWriter, r *http.Request, n int, req embeddingRequest) bool {
		writeEmbeddings(w, req.Input, 2+n, false)
		return true
	}
	o := mustOpenAI(t, testConfig(srv.URL))
	if _, err := o.Embed(context.Background(), []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Embed(context.Background(), []string{"y"}); err == nil || !strings.Contains(err.Error(), "want 3") {
		t.Fatalf("dimension change accepted: %v", err)
	}
}

func TestOpenAIConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  OpenAIConfig
		want string
	}{
		{"no scheme", OpenAIConfig{BaseURL: "localhost:8080"}, "must start with http"},
		{"negative batch", OpenAIConfig{BatchSize: -1}, "batch size"},
		{"negative timeout", OpenAIConfig{Timeout: -time.Second}, "must not be negative"},
		{"negative dimensions", OpenAIConfig{Dimensions: -3}, "dimensions"},
	}
	for _, tc := range tests {
		if _, err := NewOpenAI(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	o := mustOpenAI(t, OpenAIConfig{})
	if o.endpoint != "https://api.openai.com/v1/embeddings" || o.Model() != DefaultOpenAIModel {
		t.Errorf("defaults: endpoint %q model %q", o.endpoint, o.Model())
	}
	if _, err := o.Embed(context.Background(), []string{""}); err == nil {
		t.Error("empty text accepted")
	}
}
