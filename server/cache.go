package server

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gomlx/gomlx/core/tensors"
)

// embeddingKey names one image embedding: an image, and for a volume the
// slice and the intensity window that made the 2-D image.
type embeddingKey struct {
	image, slice, window string
}

// embedding is a cached image-encoder output with the size of the image it
// was computed from.
type embedding struct {
	tensor *tensors.Tensor // [1, C, g, g]
	h, w   int
	// encode is the time the image encoder took.
	encode time.Duration
}

// cacheEntry is one embedding held by the cache.
type cacheEntry struct {
	key embeddingKey
	emb *embedding
}

// flight is a computation in progress that several requests may wait for.
type flight struct {
	done chan struct{}
	emb  *embedding
	err  error
}

// embeddingCache is a least-recently-used cache of image embeddings bounded
// by their size in bytes. Get de-duplicates concurrent computations of the
// same key: the first caller computes, the others wait for its result.
type embeddingCache struct {
	capacity  int64 // bytes
	entrySize int64 // bytes of one embedding

	mu       sync.Mutex
	used     int64
	lru      *list.List // of *cacheEntry, most recent first
	items    map[embeddingKey]*list.Element
	inflight map[embeddingKey]*flight

	hits, misses, shared, evictions uint64
}

func newEmbeddingCache(capacity, entrySize int64) *embeddingCache {
	return &embeddingCache{
		capacity:  capacity,
		entrySize: entrySize,
		lru:       list.New(),
		items:     map[embeddingKey]*list.Element{},
		inflight:  map[embeddingKey]*flight{},
	}
}

// cacheOutcome says how Get obtained an embedding.
type cacheOutcome int

const (
	outcomeHit      cacheOutcome = iota // found in the cache
	outcomeComputed                     // computed by this call
	outcomeShared                       // computed by a concurrent call this one waited for
)

func (o cacheOutcome) String() string {
	return [...]string{"hit", "computed", "shared"}[o]
}

// Get returns the embedding for key, computing it with compute when it is
// not cached. Concurrent calls for the same key share one computation. A
// caller whose ctx ends while waiting gets ctx's error; the computation goes
// on for the others (and is cached). Failed computations are not cached.
func (c *embeddingCache) Get(ctx context.Context, key embeddingKey, compute func() (*embedding, error)) (*embedding, cacheOutcome, error) {
	c.mu.Lock()
	if el, ok := c.items[key]; ok {
		c.lru.MoveToFront(el)
		c.hits++
		emb := el.Value.(*cacheEntry).emb
		c.mu.Unlock()
		return emb, outcomeHit, nil
	}
	if f, ok := c.inflight[key]; ok {
		c.shared++
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.emb, outcomeShared, f.err
		case <-ctx.Done():
			return nil, outcomeShared, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	c.inflight[key] = f
	c.misses++
	c.mu.Unlock()

	func() {
		defer func() {
			if r := recover(); r != nil {
				f.err = fmt.Errorf("image encoder panicked: %v", r)
			}
		}()
		f.emb, f.err = compute()
	}()
	if f.err == nil && f.emb == nil {
		f.err = errors.New("image encoder returned no embedding")
	}

	c.mu.Lock()
	delete(c.inflight, key)
	if f.err == nil {
		c.add(key, f.emb)
	}
	c.mu.Unlock()
	close(f.done)
	return f.emb, outcomeComputed, f.err
}

// add inserts an embedding and evicts the least recently used ones beyond
// the capacity. An embedding larger than the whole capacity is not kept.
// c.mu must be held.
func (c *embeddingCache) add(key embeddingKey, emb *embedding) {
	if c.entrySize > c.capacity {
		return
	}
	c.items[key] = c.lru.PushFront(&cacheEntry{key: key, emb: emb})
	c.used += c.entrySize
	for c.used > c.capacity {
		c.removeElement(c.lru.Back())
		c.evictions++
	}
}

func (c *embeddingCache) removeElement(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.items, e.key)
	c.used -= c.entrySize
}

// DropImage removes every embedding of an image.
func (c *embeddingCache) DropImage(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.lru.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*cacheEntry).key.image == id {
			c.removeElement(el)
		}
		el = next
	}
}

// Keys returns the cached keys of an image, most recent first.
func (c *embeddingCache) Keys(id string) []embeddingKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []embeddingKey
	for el := c.lru.Front(); el != nil; el = el.Next() {
		if k := el.Value.(*cacheEntry).key; k.image == id {
			out = append(out, k)
		}
	}
	return out
}

// cacheStats is a snapshot of the cache's counters.
type cacheStats struct {
	Capacity, Used, EntrySize       int64
	Entries, InFlight               int
	Hits, Misses, Shared, Evictions uint64
}

func (c *embeddingCache) Stats() cacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cacheStats{
		Capacity: c.capacity, Used: c.used, EntrySize: c.entrySize,
		Entries: c.lru.Len(), InFlight: len(c.inflight),
		Hits: c.hits, Misses: c.misses, Shared: c.shared, Evictions: c.evictions,
	}
}
