package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// envInt reads a positive integer from the environment.
func envInt(t testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// randomPrompt returns 1-3 random points (some negative) and, half of the
// time, a random box, inside a w×h image.
func randomPrompt(r *rand.Rand, w, h int) PredictRequest {
	var req PredictRequest
	for i := 0; i <= r.IntN(3); i++ {
		label := 1
		if i > 0 && r.IntN(2) == 0 {
			label = 0
		}
		req.Points = append(req.Points, Point{X: r.Float64() * float64(w), Y: r.Float64() * float64(h), Label: &label})
	}
	if r.IntN(2) == 0 {
		x0, y0 := r.Float64()*float64(w)/2, r.Float64()*float64(h)/2
		req.Boxes = [][]float64{{x0, y0, x0 + r.Float64()*float64(w)/2, y0 + r.Float64()*float64(h)/2}}
	}
	if r.IntN(2) == 0 {
		req.Format = "rle"
	}
	return req
}

// TestLoad runs N concurrent clients (SEGSAM_LOAD_CLIENTS, default 50) for D
// seconds (SEGSAM_LOAD_SECONDS, default 5; 1 with -short) against a server
// on loopback, doing predict requests with random points and boxes on one
// uploaded image (cached embedding). No request may fail, and the heap must
// stay below the embedding-cache bound plus a margin for the requests in
// flight. It logs the p50/p99 latency.
func TestLoad(t *testing.T) {
	clients := envInt(t, "SEGSAM_LOAD_CLIENTS", 50)
	seconds := envInt(t, "SEGSAM_LOAD_SECONDS", 5)
	if testing.Short() && os.Getenv("SEGSAM_LOAD_SECONDS") == "" {
		seconds = 1
	}
	const (
		cacheBytes = 32 << 20
		// heapMargin covers the model, the stored image, the runtime, and
		// per-request buffers (mask logits, PNG/RLE/JSON encoding) of every
		// request in flight.
		heapMargin = 160 << 20
	)
	loadModels(t)
	s, err := New(segModel, Config{CacheBytes: cacheBytes})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	info := upload(t, base, demoImage, "")
	predict(t, base, info.ID, PredictRequest{Points: []Point{{X: 1, Y: 1}}}) // embedding cached from here on

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseline := ms.HeapAlloc
	var peak, peakCache atomic.Int64
	stopSampling := make(chan struct{})
	var samplerDone sync.WaitGroup
	samplerDone.Add(1)
	go func() {
		defer samplerDone.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if h := int64(ms.HeapAlloc); h > peak.Load() {
					peak.Store(h)
				}
				if u := s.cache.Stats().Used; u > peakCache.Load() {
					peakCache.Store(u)
				}
			}
		}
	}()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}, Timeout: time.Minute}
	url := base + "/v1/images/" + info.ID + "/predict"
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	latencies := make([][]time.Duration, clients)
	var failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 7))
			for time.Now().Before(deadline) {
				body, _ := json.Marshal(randomPrompt(r, info.Width, info.Height))
				t0 := time.Now()
				err := func() error {
					res, err := client.Post(url, "application/json", bytes.NewReader(body))
					if err != nil {
						return err
					}
					defer res.Body.Close()
					data, err := io.ReadAll(res.Body)
					if err != nil {
						return err
					}
					if res.StatusCode != http.StatusOK {
						return fmt.Errorf("status %d: %s", res.StatusCode, data)
					}
					var out PredictResponse
					if err := json.Unmarshal(data, &out); err != nil {
						return err
					}
					if len(out.Prompts) != 1 || out.Prompts[0].Class == "" || out.TimingsMS.Embedding != "cached" {
						return fmt.Errorf("unexpected answer: %d prompts, class %q, embedding %s", len(out.Prompts), out.Prompts[0].Class, out.TimingsMS.Embedding)
					}
					return nil
				}()
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				latencies[c] = append(latencies[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopSampling)
	samplerDone.Wait()

	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	if f := failures.Load(); f > 0 {
		t.Errorf("%d of %d requests failed; first: %v", f, int64(len(all))+f, firstErr.Load())
	}
	if len(all) == 0 {
		t.Fatal("no request succeeded")
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	t.Logf("load: %d clients for %v on %d CPUs (GOMAXPROCS %d): %d predict requests, %.0f req/s; latency p50 %v, p90 %v, p99 %v, max %v",
		clients, elapsed.Round(time.Millisecond), runtime.NumCPU(), runtime.GOMAXPROCS(0), len(all), float64(len(all))/elapsed.Seconds(),
		q(0.50).Round(10*time.Microsecond), q(0.90).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), all[len(all)-1].Round(10*time.Microsecond))
	t.Logf("memory: heap %.1f MiB before the load, peak %.1f MiB during it; cache bound %d MiB + margin %d MiB; peak cache use %d bytes",
		float64(baseline)/(1<<20), float64(peak.Load())/(1<<20), cacheBytes>>20, heapMargin>>20, peakCache.Load())
	if peak.Load() > cacheBytes+heapMargin {
		t.Errorf("peak heap %d bytes exceeds the cache bound %d + margin %d", peak.Load(), cacheBytes, heapMargin)
	}
	if peakCache.Load() > cacheBytes {
		t.Errorf("cache used %d bytes, over its bound %d", peakCache.Load(), cacheBytes)
	}
	if st := s.cache.Stats(); st.Misses != 1 {
		t.Errorf("cache: %+v, want the single embedding computed once", st)
	}
}

// BenchmarkPredictHTTP measures one client's predict request (a point and a
// box, PNG mask) on a cached embedding over loopback HTTP.
func BenchmarkPredictHTTP(b *testing.B) {
	loadModels(b)
	s, err := New(segModel, Config{})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, ln)
	base := "http://" + ln.Addr().String()
	info := upload(b, base, demoImage, "")
	req := PredictRequest{Points: []Point{{X: 120, Y: 100}}, Boxes: [][]float64{{60, 50, 180, 160}}}
	predict(b, base, info.ID, req)
	body, _ := json.Marshal(req)
	url := base + "/v1/images/" + info.ID + "/predict"
	b.ResetTimer()
	for b.Loop() {
		res, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}
