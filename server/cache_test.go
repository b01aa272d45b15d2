package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCacheLRU(t *testing.T) {
	c := newEmbeddingCache(300, 100) // room for 3 entries
	computes := 0
	get := func(id string) cacheOutcome {
		_, o, err := c.Get(context.Background(), embeddingKey{image: id}, func() (*embedding, error) {
			computes++
			return &embedding{h: 1, w: 1}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	steps := []struct {
		id   string
		want cacheOutcome
	}{
		{"a", outcomeComputed}, {"b", outcomeComputed}, {"c", outcomeComputed},
		{"a", outcomeHit},      // a is now the most recent: b is the oldest
		{"d", outcomeComputed}, // evicts b
		{"a", outcomeHit}, {"c", outcomeHit}, {"d", outcomeHit},
		{"b", outcomeComputed}, // evicts a, used before c and d
		{"a", outcomeComputed}, // evicts c
	}
	for i, s := range steps {
		if got := get(s.id); got != s.want {
			t.Fatalf("step %d (%s): %v, want %v", i, s.id, got, s.want)
		}
		if st := c.Stats(); st.Used > st.Capacity || st.Used != int64(st.Entries)*100 {
			t.Fatalf("step %d: %+v over the bound", i, st)
		}
	}
	st := c.Stats()
	if st.Entries != 3 || st.Evictions != 3 || st.Hits != 4 || st.Misses != 6 || computes != 6 {
		t.Errorf("stats %+v, computes %d", st, computes)
	}
	c.DropImage("a")
	if st := c.Stats(); st.Entries != 2 || st.Used != 200 {
		t.Errorf("after DropImage: %+v", st)
	}
}

func TestCacheEntryLargerThanCapacity(t *testing.T) {
	c := newEmbeddingCache(50, 100)
	for i := 0; i < 2; i++ {
		_, o, err := c.Get(context.Background(), embeddingKey{image: "a"}, func() (*embedding, error) { return &embedding{}, nil })
		if err != nil || o != outcomeComputed {
			t.Fatalf("get %d: %v %v", i, o, err)
		}
	}
	if st := c.Stats(); st.Entries != 0 || st.Used != 0 {
		t.Errorf("an entry over the capacity was cached: %+v", st)
	}
}

// TestCacheSingleFlight checks that concurrent Gets of one key compute once
// and all see the result, and that errors are shared but not cached.
func TestCacheSingleFlight(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", fail), func(t *testing.T) {
			c := newEmbeddingCache(1000, 100)
			var computes atomic.Int32
			release := make(chan struct{})
			want := &embedding{h: 7, w: 9}
			compute := func() (*embedding, error) {
				computes.Add(1)
				<-release
				if fail {
					return nil, errors.New("encoder failed")
				}
				return want, nil
			}
			const n = 16
			var wg sync.WaitGroup
			results := make([]*embedding, n)
			errs := make([]error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i], _, errs[i] = c.Get(context.Background(), embeddingKey{image: "x"}, compute)
				}()
			}
			for c.Stats().Shared != n-1 {
				time.Sleep(time.Millisecond)
			}
			close(release)
			wg.Wait()
			if computes.Load() != 1 {
				t.Errorf("%d computations, want 1", computes.Load())
			}
			for i := range results {
				if fail != (errs[i] != nil) || (!fail && results[i] != want) {
					t.Errorf("caller %d: %v, %v", i, results[i], errs[i])
				}
			}
			if st := c.Stats(); (st.Entries == 1) == fail || st.InFlight != 0 {
				t.Errorf("after the flight: %+v", st)
			}
		})
	}
}

// TestCacheWaiterCancel checks that a waiter whose context ends returns
// while the computation goes on and is cached for later callers.
func TestCacheWaiterCancel(t *testing.T) {
	c := newEmbeddingCache(1000, 100)
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Get(context.Background(), embeddingKey{image: "x"}, func() (*embedding, error) {
			<-release
			return &embedding{}, nil
		})
	}()
	for c.Stats().InFlight == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := c.Get(ctx, embeddingKey{image: "x"}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter: %v, want deadline exceeded", err)
	}
	close(release)
	<-done
	if _, o, err := c.Get(context.Background(), embeddingKey{image: "x"}, nil); err != nil || o != outcomeHit {
		t.Errorf("after the flight: %v %v, want a hit", o, err)
	}
}

func TestCachePanicIsAnError(t *testing.T) {
	c := newEmbeddingCache(1000, 100)
	_, _, err := c.Get(context.Background(), embeddingKey{image: "x"}, func() (*embedding, error) { panic("boom") })
	if err == nil || c.Stats().InFlight != 0 {
		t.Fatalf("panic in compute: %v, in flight %d", err, c.Stats().InFlight)
	}
}
