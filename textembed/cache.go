package textembed

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// cache stores vectors on disk, one small file per key:
// <dir>/<key[:2]>/<key>.vec holding the magic "SGEV", a uint32 length and
// the float32 values, all little-endian.
type cache struct {
	dir string
}

const cacheMagic = "SGEV"

func openCache(dir string) (*cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	return &cache{dir: dir}, nil
}

// cacheKey hashes its parts, each length-prefixed so that no two different
// part lists collide by concatenation.
func cacheKey(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.LittleEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (c *cache) path(key string) string {
	return filepath.Join(c.dir, key[:2], key+".vec")
}

// get returns the cached vector; a missing or damaged entry is a miss.
func (c *cache) get(key string) ([]float32, bool) {
	data, err := os.ReadFile(c.path(key))
	if err != nil || len(data) < 8 || string(data[:4]) != cacheMagic {
		return nil, false
	}
	n := int(binary.LittleEndian.Uint32(data[4:8]))
	if n == 0 || len(data) != 8+4*n {
		return nil, false
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[8+4*i:]))
	}
	return v, true
}

func (c *cache) put(key string, v []float32) error {
	p := c.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	data := make([]byte, 8+4*len(v))
	copy(data, cacheMagic)
	binary.LittleEndian.PutUint32(data[4:], uint32(len(v)))
	for i, x := range v {
		binary.LittleEndian.PutUint32(data[8+4*i:], math.Float32bits(x))
	}
	if err := writeAtomic(p, data); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}
