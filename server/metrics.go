package server

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// latencyBuckets are the upper bounds (seconds) of the latency histograms.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// histogram is a Prometheus histogram with fixed buckets.
type histogram struct {
	mu     sync.Mutex
	counts []uint64 // per bucket (not cumulative), plus +Inf
	sum    float64
	n      uint64
}

func newHistogram() *histogram { return &histogram{counts: make([]uint64, len(latencyBuckets)+1)} }

func (h *histogram) Observe(v float64) {
	i := sort.SearchFloat64s(latencyBuckets, v) // first bound >= v
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.n++
	h.mu.Unlock()
}

// write prints the histogram's series with the given labels ("" or
// `route="x"`).
func (h *histogram) write(w io.Writer, name, labels string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sep := ""
	if labels != "" {
		sep = ","
	}
	var cum uint64
	for i, le := range latencyBuckets {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{%s%sle=\"%s\"} %d\n", name, labels, sep, strconv.FormatFloat(le, 'g', -1, 64), cum)
	}
	cum += h.counts[len(latencyBuckets)]
	fmt.Fprintf(w, "%s_bucket{%s%sle=\"+Inf\"} %d\n", name, labels, sep, cum)
	if labels != "" {
		labels = "{" + labels + "}"
	}
	fmt.Fprintf(w, "%s_sum%s %s\n", name, labels, strconv.FormatFloat(h.sum, 'g', -1, 64))
	fmt.Fprintf(w, "%s_count%s %d\n", name, labels, h.n)
}

// requestKey labels one series of the request counter.
type requestKey struct {
	route, method string
	code          int
}

// metrics are the server's counters, written in the Prometheus text format
// (version 0.0.4) by hand.
type metrics struct {
	start    time.Time
	inFlight atomic.Int64

	mu        sync.Mutex
	requests  map[requestKey]uint64
	latencies map[string]*histogram // by route

	encode  *histogram // image encoder
	predict *histogram // decoder + post-processing
}

func newMetrics() *metrics {
	return &metrics{
		start:     time.Now(),
		requests:  map[requestKey]uint64{},
		latencies: map[string]*histogram{},
		encode:    newHistogram(),
		predict:   newHistogram(),
	}
}

// observeRequest records a finished request.
func (m *metrics) observeRequest(route, method string, code int, d time.Duration) {
	m.mu.Lock()
	m.requests[requestKey{route, method, code}]++
	h := m.latencies[route]
	if h == nil {
		h = newHistogram()
		m.latencies[route] = h
	}
	m.mu.Unlock()
	h.Observe(d.Seconds())
}

// escapeLabel escapes a label value for the text format.
func escapeLabel(s string) string {
	return strconv.Quote(s)[1 : len(strconv.Quote(s))-1]
}

// write prints every metric. cache and store statistics are passed in so
// that they are read once per scrape.
func (m *metrics) write(w io.Writer, cs cacheStats, images int, imageBytes int64, imageEvictions uint64) {
	header := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	m.mu.Lock()
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.route != b.route {
			return a.route < b.route
		}
		if a.method != b.method {
			return a.method < b.method
		}
		return a.code < b.code
	})
	header("segsam_http_requests_total", "counter", "HTTP requests by route pattern, method and status code.")
	for _, k := range keys {
		fmt.Fprintf(w, "segsam_http_requests_total{route=\"%s\",method=\"%s\",code=\"%d\"} %d\n", escapeLabel(k.route), escapeLabel(k.method), k.code, m.requests[k])
	}
	routes := make([]string, 0, len(m.latencies))
	for r := range m.latencies {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	hists := make([]*histogram, len(routes))
	for i, r := range routes {
		hists[i] = m.latencies[r]
	}
	m.mu.Unlock()

	header("segsam_http_request_duration_seconds", "histogram", "HTTP request latency by route pattern.")
	for i, r := range routes {
		hists[i].write(w, "segsam_http_request_duration_seconds", fmt.Sprintf("route=\"%s\"", escapeLabel(r)))
	}
	header("segsam_http_requests_in_flight", "gauge", "HTTP requests being served.")
	fmt.Fprintf(w, "segsam_http_requests_in_flight %d\n", m.inFlight.Load())

	header("segsam_image_encoder_duration_seconds", "histogram", "Time of the image encoder per embedding.")
	m.encode.write(w, "segsam_image_encoder_duration_seconds", "")
	header("segsam_predict_duration_seconds", "histogram", "Time of the prompt encoder, mask decoder(s) and mask post-processing per predict request.")
	m.predict.write(w, "segsam_predict_duration_seconds", "")

	gauge := func(name, help string, v any) {
		header(name, "gauge", help)
		fmt.Fprintf(w, "%s %v\n", name, v)
	}
	counter := func(name, help string, v uint64) {
		header(name, "counter", help)
		fmt.Fprintf(w, "%s %d\n", name, v)
	}
	counter("segsam_embedding_cache_hits_total", "Predict requests whose embedding was cached.", cs.Hits)
	counter("segsam_embedding_cache_misses_total", "Embeddings computed.", cs.Misses)
	counter("segsam_embedding_cache_shared_total", "Requests that waited for an embedding another request was computing.", cs.Shared)
	counter("segsam_embedding_cache_evictions_total", "Embeddings evicted to stay within the cache bound.", cs.Evictions)
	gauge("segsam_embedding_cache_entries", "Embeddings in the cache.", cs.Entries)
	gauge("segsam_embedding_cache_bytes", "Bytes of the cached embeddings.", cs.Used)
	gauge("segsam_embedding_cache_capacity_bytes", "Bound on the bytes of cached embeddings.", cs.Capacity)
	gauge("segsam_embedding_computations_in_flight", "Embeddings being computed.", cs.InFlight)
	gauge("segsam_images_stored", "Uploaded images and volumes held.", images)
	gauge("segsam_image_store_bytes", "Bytes of the decoded images and volumes held.", imageBytes)
	counter("segsam_image_store_evictions_total", "Images dropped to stay within the store bounds.", imageEvictions)

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gauge("go_memstats_heap_alloc_bytes", "Bytes of allocated heap objects.", ms.HeapAlloc)
	gauge("go_memstats_sys_bytes", "Bytes of memory obtained from the OS.", ms.Sys)
	gauge("go_goroutines", "Number of goroutines.", runtime.NumGoroutine())
	gauge("process_start_time_seconds", "Start time of the server since the Unix epoch in seconds.", m.start.Unix())
}
