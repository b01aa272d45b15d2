// Package server is segsam's interactive segmentation service: an HTTP JSON
// API (upload an image or a NIfTI volume, then ask for masks from point and
// box prompts) and a web page that drives it, both served by one binary.
//
// The image encoder runs once per image (per slice and window for a volume):
// its embedding is kept in a least-recently-used cache bounded in bytes, and
// concurrent requests that need the same embedding wait for a single
// computation. Prompts are then answered by the cheap prompt encoder and
// mask decoder(s) on the cached embedding.
//
// Routes (see openapi.json, served at /openapi.json):
//
//	POST   /v1/images                 upload PNG, JPEG, .npy or NIfTI -> id
//	GET    /v1/images                 list the stored images
//	GET    /v1/images/{id}            metadata (slices for volumes)
//	DELETE /v1/images/{id}            forget an image and its embeddings
//	GET    /v1/images/{id}/render     the image (or a volume slice) as PNG
//	POST   /v1/images/{id}/predict    masks, IoU, class, confidence
//	POST   /v1/images/{id}/labelmap   a volume's label map as NIfTI
//	POST   /v1/images/{id}/segment-all label everything: automatic label map
//	GET    /v1/model                  the model: architecture, classes
//	GET    /healthz, /metrics, /openapi.json
//	GET    /                          the web page
//
// Next to them, MONAI Label's endpoints (/info/, /datastore/, /infer/,
// /session/, /activelearning/; see monailabel.go) serve 3D Slicer's and
// OHIF's MONAI Label front ends, on the studies folder of Config.StudiesDir.
//
// Every error is a 4xx or 5xx status with a JSON body {"error": "..."}.
package server

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net"
	"net/http"
	"path"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segsam/segsam/segsam"
)

// Config holds the server's limits. The zero value of a field means its
// default (see DefaultConfig).
type Config struct {
	// MaxImageBytes bounds an uploaded PNG, JPEG or .npy file.
	MaxImageBytes int64
	// MaxVolumeBytes bounds an uploaded NIfTI file (compressed size).
	MaxVolumeBytes int64
	// MaxDecompressedBytes bounds a gzipped NIfTI file once decompressed.
	MaxDecompressedBytes int64
	// MaxJSONBytes bounds a predict request body.
	MaxJSONBytes int64
	// CacheBytes bounds the memory of the cached image embeddings.
	CacheBytes int64
	// MaxImages and MaxStoreBytes bound the uploaded images kept (decoded
	// size); beyond them the least recently used are dropped.
	MaxImages     int
	MaxStoreBytes int64
	// MaxConcurrentEncodes bounds the image-encoder runs at a time.
	MaxConcurrentEncodes int
	// MaxPoints and MaxBoxes bound one prompt.
	MaxPoints, MaxBoxes int
	// RequestTimeout bounds the handling of one request (an embedding that
	// takes longer goes on and is cached for the next request).
	RequestTimeout time.Duration
	// VolumeTimeout bounds a whole-volume label everything (segment-all
	// with "volume": true, MONAI Label's automatic model): minutes of
	// decoding on a CPU. Such a request's write deadline is extended to match.
	VolumeTimeout time.Duration
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// http.Server's.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ShutdownTimeout bounds the wait for requests in progress on shutdown.
	ShutdownTimeout time.Duration
	// Precompute starts computing an uploaded image's embedding (the middle
	// axial slice of a volume) right away, so that the first click is fast.
	// Off when DisablePrecompute is set.
	DisablePrecompute bool
	// Logger receives one line per failed request and server events; nil
	// means log.Default().
	Logger *log.Logger

	// StudiesDir is the studies folder of MONAI Label's datastore endpoints
	// (serve --studies); empty: they answer 503 (see monailabel.go).
	StudiesDir string
	// Segmenter labels whole volumes for MONAI Label's automatic model;
	// nil: /info/ does not list it and /infer on it answers 503, unless
	// AutomaticModel is set.
	Segmenter VolumeSegmenter
	// AutomaticModel, with no Segmenter, serves MONAI Label's automatic
	// model with the server's own label everything (segment-all's
	// segsam.Automatic and its defaults, axial slices); a SEG-SAM model
	// only, since the labels need class names.
	AutomaticModel bool
	// SessionExpiry is the default and longest life of a MONAI Label
	// session without access; MaxSessions bounds the sessions kept (the
	// least recently used are dropped beyond it).
	SessionExpiry time.Duration
	MaxSessions   int
}

// DefaultConfig returns the default limits.
func DefaultConfig() Config {
	return Config{
		MaxImageBytes:        16 << 20,
		MaxVolumeBytes:       64 << 20,
		MaxDecompressedBytes: 1 << 30,
		MaxJSONBytes:         8 << 20,
		CacheBytes:           1 << 30,
		MaxImages:            256,
		MaxStoreBytes:        4 << 30,
		MaxConcurrentEncodes: 2,
		MaxPoints:            64,
		MaxBoxes:             32,
		RequestTimeout:       4 * time.Minute,
		VolumeTimeout:        30 * time.Minute,
		ReadHeaderTimeout:    10 * time.Second,
		ReadTimeout:          2 * time.Minute,
		WriteTimeout:         5 * time.Minute,
		IdleTimeout:          2 * time.Minute,
		ShutdownTimeout:      30 * time.Second,
		SessionExpiry:        time.Hour,
		MaxSessions:          16,
	}
}

// withDefaults fills the zero fields of c from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set64 := func(v *int64, def int64) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set64(&c.MaxImageBytes, d.MaxImageBytes)
	set64(&c.MaxVolumeBytes, d.MaxVolumeBytes)
	set64(&c.MaxDecompressedBytes, d.MaxDecompressedBytes)
	set64(&c.MaxJSONBytes, d.MaxJSONBytes)
	set64(&c.CacheBytes, d.CacheBytes)
	setInt(&c.MaxImages, d.MaxImages)
	set64(&c.MaxStoreBytes, d.MaxStoreBytes)
	setInt(&c.MaxConcurrentEncodes, d.MaxConcurrentEncodes)
	setInt(&c.MaxPoints, d.MaxPoints)
	setInt(&c.MaxBoxes, d.MaxBoxes)
	setDur(&c.RequestTimeout, d.RequestTimeout)
	setDur(&c.VolumeTimeout, d.VolumeTimeout)
	setDur(&c.ReadHeaderTimeout, d.ReadHeaderTimeout)
	setDur(&c.ReadTimeout, d.ReadTimeout)
	setDur(&c.WriteTimeout, d.WriteTimeout)
	setDur(&c.IdleTimeout, d.IdleTimeout)
	setDur(&c.ShutdownTimeout, d.ShutdownTimeout)
	setDur(&c.SessionExpiry, d.SessionExpiry)
	setInt(&c.MaxSessions, d.MaxSessions)
	if c.Logger == nil {
		c.Logger = log.Default()
	}
	return c
}

//go:embed web openapi.json
var assets embed.FS

// Server serves one model to any number of clients.
type Server struct {
	cfg     Config
	model   *segsam.Predictor
	cache   *embeddingCache
	store   *imageStore
	metrics *metrics
	encodes chan struct{} // semaphore of the image encoder
	web     fs.FS

	// bg is cancelled by Close; background embedding computations use it.
	bg       context.Context
	cancelBg context.CancelFunc
	wg       sync.WaitGroup

	handler http.Handler
	routes  []route

	// MONAI Label: the studies folder (nil without Config.StudiesDir),
	// its decoded images, and the sessions.
	studies  *mlDatastore
	loaded   *studyCache
	sessions *mlSessions

	auto autoState // segment-all defaults (auto.go)
}

// New returns a server for a loaded model (segsam.LoadAny): a SEG-SAM model
// answers with classes and semantic masks, a plain SAM with masks only.
func New(model *segsam.Predictor, cfg Config) (*Server, error) {
	if model == nil || model.SAM == nil || model.SAM.Model == nil {
		return nil, errors.New("server: no model")
	}
	cfg = cfg.withDefaults()
	mc := model.SAM.Model.Config
	g := int64(mc.TokenGrid())
	entry := 4 * int64(mc.PromptEncoder.EmbedDim) * g * g
	if cfg.CacheBytes < entry {
		return nil, fmt.Errorf("server: embedding cache of %d bytes cannot hold one %d-byte embedding of %s", cfg.CacheBytes, entry, mc.Name)
	}
	web, err := fs.Sub(assets, "web")
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		model:   model,
		cache:   newEmbeddingCache(cfg.CacheBytes, entry),
		metrics: newMetrics(),
		encodes: make(chan struct{}, cfg.MaxConcurrentEncodes),
		web:     web,
	}
	s.store = newImageStore(cfg.MaxImages, cfg.MaxStoreBytes, s.cache.DropImage)
	if cfg.StudiesDir != "" {
		if s.studies, err = openDatastore(cfg.StudiesDir); err != nil {
			return nil, err
		}
	}
	s.loaded = newStudyCache(4, cfg.MaxStoreBytes, s.cache.DropImage)
	if s.sessions, err = newMLSessions(cfg.SessionExpiry, cfg.MaxSessions, cfg.MaxStoreBytes, s.cache.DropImage); err != nil {
		return nil, err
	}
	s.installAutoSegmenter()
	s.bg, s.cancelBg = context.WithCancel(context.Background())
	s.handler = s.routesHandler()
	return s, nil
}

// Handler returns the HTTP handler of the API and the web page.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops background work (embedding pre-computations) and waits for it.
func (s *Server) Close() {
	s.cancelBg()
	s.wg.Wait()
	s.sessions.RemoveAll()
}

// HTTPServer returns an http.Server for the handler with the configured
// timeouts and limits.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          s.cfg.Logger,
	}
}

// Serve serves on ln until ctx is done, then shuts down gracefully: it stops
// accepting connections, waits up to ShutdownTimeout for the requests in
// progress, and stops background work. It returns nil after a shutdown
// asked for by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := s.HTTPServer()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	s.Close()
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// route is one endpoint of the API.
type route struct {
	method, path string
	handle       func(w http.ResponseWriter, r *http.Request) error
}

// apiRoutes lists the endpoints; openapi.json documents each.
func (s *Server) apiRoutes() []route {
	return []route{
		{"POST", "/v1/images", s.handleUpload},
		{"GET", "/v1/images", s.handleList},
		{"GET", "/v1/images/{id}", s.handleInfo},
		{"DELETE", "/v1/images/{id}", s.handleDelete},
		{"GET", "/v1/images/{id}/render", s.handleRender},
		{"POST", "/v1/images/{id}/predict", s.handlePredict},
		{"POST", "/v1/images/{id}/labelmap", s.handleLabelMap},
		{"POST", "/v1/images/{id}/segment-all", s.handleSegmentAll},
		{"GET", "/v1/model", s.handleModel},
		{"GET", "/healthz", s.handleHealth},
		{"GET", "/metrics", s.handleMetrics},
		{"GET", "/openapi.json", s.handleOpenAPI},
	}
}

func (s *Server) routesHandler() http.Handler {
	mux := http.NewServeMux()
	s.routes = s.apiRoutes()
	methods := map[string][]string{}
	// MONAI Label's endpoints (monailabel.go) are not in openapi.json: MONAI
	// Label documents them.
	for _, rt := range append(s.apiRoutes(), s.monaiRoutes()...) {
		mux.Handle(rt.method+" "+rt.path, s.instrument(rt.path, rt.handle))
		methods[rt.path] = append(methods[rt.path], rt.method)
	}
	// A known path with another method: 405 with the allowed ones.
	for path, ms := range methods {
		sort.Strings(ms)
		if contains(ms, "GET") && !contains(ms, "HEAD") {
			ms = append(ms, "HEAD")
		}
		allow := strings.Join(ms, ", ")
		mux.Handle(path, s.instrument(path, func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", allow)
			return httpErrorf(http.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)
		}))
	}
	mux.Handle("/", s.instrument("/", s.handleStatic))
	// ServeMux answers an API path that is not clean (an empty segment as
	// in /v1/images//predict, "." or "..") with a bare redirect; answer it
	// with a JSON error instead.
	unclean := s.instrument("unclean", func(w http.ResponseWriter, r *http.Request) error {
		p := r.URL.Path
		if rest, ok := strings.CutPrefix(p, "/v1/images/"); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
			return httpErrorf(http.StatusBadRequest, "empty image id in %s: want /v1/images/{id}...", p)
		}
		return httpErrorf(http.StatusNotFound, "no endpoint %s: the path is not clean (empty segment, . or ..); see /openapi.json", p)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; strings.HasPrefix(p, "/v1/") && r.Method != http.MethodConnect && !isCleanPath(p) {
			unclean.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// isCleanPath reports whether ServeMux would serve p as it is (rather than
// redirect to its cleaned form).
func isCleanPath(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// httpError is an error with the HTTP status to answer it with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func httpErrorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// statusWriter records the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code    int
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written {
		w.code, w.written = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.written {
		w.code, w.written = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument turns a handler returning an error into an http.Handler: it
// bounds the request's time, answers errors (and panics) with a JSON body,
// and records metrics under the route pattern.
func (s *Server) instrument(pattern string, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.metrics.inFlight.Add(1)
		w := &statusWriter{ResponseWriter: rw}
		limit := s.cfg.RequestTimeout
		if s.mayLabelVolume(pattern, r) {
			// The handler shortens it again unless it labels a whole volume
			// (volumeDeadline).
			limit = max(limit, s.cfg.VolumeTimeout)
			_ = http.NewResponseController(rw).SetWriteDeadline(time.Now().Add(limit + time.Minute))
		}
		ctx, cancel := context.WithTimeout(r.Context(), limit)
		defer func() {
			cancel()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				buf := make([]byte, 4096)
				buf = buf[:runtime.Stack(buf, false)]
				s.cfg.Logger.Printf("segsam serve: panic on %s %s: %v\n%s", r.Method, r.URL.Path, p, buf)
				if !w.written {
					writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: fmt.Sprintf("internal error: %v", p)})
				}
			}
			s.metrics.inFlight.Add(-1)
			code := w.code
			if !w.written {
				code = http.StatusOK
			}
			s.metrics.observeRequest(pattern, r.Method, code, time.Since(start))
		}()
		err := h(w, r.WithContext(ctx))
		if err == nil {
			return
		}
		status := http.StatusInternalServerError
		var he *httpError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &he):
			status = he.status
		case errors.As(err, &mbe):
			status = http.StatusRequestEntityTooLarge
			err = fmt.Errorf("request body too large: the limit is %d bytes", mbe.Limit)
		case errors.Is(err, context.DeadlineExceeded):
			status = http.StatusServiceUnavailable
			err = fmt.Errorf("request timed out after %v: %w", limit, err)
		case errors.Is(err, context.Canceled):
			status = 499 // client closed the request (nginx's convention)
		}
		if status >= 500 {
			s.cfg.Logger.Printf("segsam serve: %s %s: %d %v", r.Method, r.URL.Path, status, err)
		}
		if w.written {
			return // too late to change the answer
		}
		writeJSON(w, status, ErrorResponse{Error: err.Error()})
	})
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data, _ = json.Marshal(ErrorResponse{Error: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// decodeJSON reads a JSON request body of at most limit bytes into v,
// rejecting unknown fields and trailing data.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return httpErrorf(http.StatusBadRequest, "malformed JSON request: %v", err)
	}
	if dec.More() {
		return httpErrorf(http.StatusBadRequest, "malformed JSON request: data after the JSON object")
	}
	return nil
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	n, bytes, ev := s.store.Stats()
	s.metrics.write(w, s.cache.Stats(), n, bytes, ev)
	return nil
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	data, err := assets.ReadFile("openapi.json")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(data)
	return err
}

// handleStatic serves the web page, and JSON errors for unknown paths.
func (s *Server) handleStatic(w http.ResponseWriter, r *http.Request) error {
	p := r.URL.Path
	if strings.HasPrefix(p, "/v1/") || p == "/v1" {
		return httpErrorf(http.StatusNotFound, "no endpoint %s (see /openapi.json)", p)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return httpErrorf(http.StatusMethodNotAllowed, "method %s is not allowed on %s", r.Method, p)
	}
	name := strings.TrimPrefix(p, "/")
	if name == "" {
		name = "index.html"
	}
	if st, err := fs.Stat(s.web, name); err != nil || st.IsDir() {
		return httpErrorf(http.StatusNotFound, "not found: %s", p)
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, s.web, name)
	return nil
}

// mayLabelVolume tells whether a request may label a whole volume (the
// longer VolumeTimeout): segment-all, whose body says whether it does, and
// MONAI Label's automatic model.
func (s *Server) mayLabelVolume(pattern string, r *http.Request) bool {
	switch pattern {
	case "/v1/images/{id}/segment-all":
		return r.Method == http.MethodPost
	case "/infer/{model}":
		return r.Method == http.MethodPost && r.PathValue("model") == mlAutoModel
	}
	return false
}

// requestDeadline gives a request that may label a volume but does not
// (segment-all on an image or a slice) the usual RequestTimeout again.
func (s *Server) requestDeadline(r *http.Request) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	return r.WithContext(ctx), cancel
}
