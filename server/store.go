package server

import (
	"container/list"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/transform"
)

// imageKind says whether an uploaded image is a 2-D picture or a volume.
type imageKind string

const (
	kind2D     imageKind = "image"
	kindVolume imageKind = "volume"
)

// storedImage is an uploaded image: a 2-D RGB picture or a 3-D volume with
// its default intensity window.
type storedImage struct {
	ID      string
	Name    string
	Kind    imageKind
	Format  string // png, jpeg, npy, nifti
	Created time.Time
	// Image is set for 2-D pictures.
	Image transform.Image
	// Volume and Window are set for volumes.
	Volume *medimg.Volume
	Window medimg.Window
	// Bytes is the memory the decoded image holds.
	Bytes int64
}

// imageStore keeps uploaded images, bounded by a count and a total size;
// beyond them the least recently used images are dropped.
type imageStore struct {
	maxImages int
	maxBytes  int64
	onEvict   func(id string)

	mu    sync.Mutex
	used  int64
	lru   *list.List // of *storedImage, most recent first
	items map[string]*list.Element

	evictions uint64
}

func newImageStore(maxImages int, maxBytes int64, onEvict func(id string)) *imageStore {
	return &imageStore{maxImages: maxImages, maxBytes: maxBytes, onEvict: onEvict, lru: list.New(), items: map[string]*list.Element{}}
}

// newID returns a random 128-bit identifier in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Add stores an image under a new id and returns it, dropping the least
// recently used images if the store is over its bounds. It reports false
// when the image alone exceeds the size bound.
func (s *imageStore) Add(img *storedImage) bool {
	if img.Bytes > s.maxBytes {
		return false
	}
	img.ID = newID()
	var evicted []string
	s.mu.Lock()
	s.items[img.ID] = s.lru.PushFront(img)
	s.used += img.Bytes
	for s.lru.Len() > 1 && (s.used > s.maxBytes || s.lru.Len() > s.maxImages) {
		old := s.lru.Back().Value.(*storedImage)
		s.remove(old.ID)
		s.evictions++
		evicted = append(evicted, old.ID)
	}
	s.mu.Unlock()
	for _, id := range evicted {
		s.onEvict(id)
	}
	return true
}

// Get returns an image and marks it as recently used.
func (s *imageStore) Get(id string) (*storedImage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.items[id]
	if !ok {
		return nil, false
	}
	s.lru.MoveToFront(el)
	return el.Value.(*storedImage), true
}

// Delete removes an image; it reports whether it was there.
func (s *imageStore) Delete(id string) bool {
	s.mu.Lock()
	ok := s.remove(id)
	s.mu.Unlock()
	if ok {
		s.onEvict(id)
	}
	return ok
}

func (s *imageStore) remove(id string) bool {
	el, ok := s.items[id]
	if !ok {
		return false
	}
	s.used -= el.Value.(*storedImage).Bytes
	s.lru.Remove(el)
	delete(s.items, id)
	return true
}

// List returns the stored images, most recently used first.
func (s *imageStore) List() []*storedImage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*storedImage, 0, s.lru.Len())
	for el := s.lru.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*storedImage))
	}
	return out
}

// Stats returns the number of images, their bytes and the evictions so far.
func (s *imageStore) Stats() (n int, bytes int64, evictions uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len(), s.used, s.evictions
}
