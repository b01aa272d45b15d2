// Package embcache keeps image embeddings of a frozen image encoder on disk,
// keyed by the image's bytes and a fingerprint of the encoder's weights and
// pre-processing, so that training and evaluation encode each image once.
package embcache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/npy"
	"github.com/segsam/segsam/sam"
)

// Cache is an embedding cache for one encoder.
type Cache struct {
	Dir string
	// Key fingerprints the encoder (weights, family, input size).
	Key          string
	Hits, Misses int
}

// Fingerprint hashes a model's image-encoder weights with its family and
// input size. The encoder must have run once (or have loaded weights).
func Fingerprint(m *sam.Model) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%d|", m.Config.Family, m.Config.ImageEncoder.ImgSize)
	// In path order: the store lists variables in creation order, which
	// differs between a run that built its graphs first and one that
	// reloaded its state (a resumed run must find the cache it wrote).
	var paths []string
	for v := range m.Store.IterVariables() {
		if strings.HasPrefix(v.Path(), "/image_encoder/") {
			paths = append(paths, v.Path())
		}
	}
	sort.Strings(paths)
	n := 0
	for _, p := range paths {
		v := m.Store.GetVariable(p)
		t, err := v.Value()
		if err != nil {
			return "", fmt.Errorf("fingerprint %s: %w", v.Path(), err)
		}
		data, err := tensors.CopyFlatData[float32](t)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s%v", v.Path(), t.Shape().Dimensions)
		buf := make([]byte, 4*len(data))
		for i, f := range data {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(f))
		}
		h.Write(buf)
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("fingerprint: the image encoder has no weights yet")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Open returns the cache of model m's encoder in dir (created).
func Open(dir string, m *sam.Model) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	key, err := Fingerprint(m)
	if err != nil {
		return nil, err
	}
	return &Cache{Dir: dir, Key: key}, nil
}

func (c *Cache) path(image []byte) string {
	h := sha256.New()
	h.Write([]byte(c.Key))
	h.Write(image)
	return filepath.Join(c.Dir, hex.EncodeToString(h.Sum(nil))[:32]+".npy")
}

// Get returns the cached embedding of an image (its file's bytes).
func (c *Cache) Get(image []byte) (*tensors.Tensor, bool) {
	a, err := npy.Read(c.path(image))
	if err != nil {
		c.Misses++
		return nil, false
	}
	c.Hits++
	return tensors.FromFlatDataAndDimensions(a.Float32(), a.Shape...), true
}

// Put stores an embedding (atomically).
func (c *Cache) Put(image []byte, emb *tensors.Tensor) error {
	data, err := tensors.CopyFlatData[float32](emb)
	if err != nil {
		return err
	}
	p := c.path(image)
	tmp := p + ".tmp"
	if err := npy.Write(tmp, emb.Shape().Dimensions, data); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
