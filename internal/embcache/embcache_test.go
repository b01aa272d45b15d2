package embcache

import (
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/sam"
)

func tinyModel(t *testing.T, seed int64) *sam.Model {
	t.Helper()
	cfg, err := sam.LoadConfig("../../testdata/fixtures/sam_tiny/config.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := sam.NewModel(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Store.SetRNGStateFromSeed(seed); err != nil {
		t.Fatal(err)
	}
	s := cfg.ImageEncoder.ImgSize
	if _, err := m.Encode(tensors.FromFlatDataAndDimensions(make([]float32, 3*s*s), 1, 3, s, s)); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCache(t *testing.T) {
	dir := t.TempDir()
	a, b := tinyModel(t, 1), tinyModel(t, 2)
	ca, err := Open(dir, a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := Open(dir, b)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Key == cb.Key {
		t.Fatal("encoders with different weights share a fingerprint")
	}
	image := []byte("image bytes")
	if _, ok := ca.Get(image); ok {
		t.Fatal("hit in an empty cache")
	}
	emb := tensors.FromFlatDataAndDimensions([]float32{1, 2, 3, 4}, 1, 4, 1, 1)
	if err := ca.Put(image, emb); err != nil {
		t.Fatal(err)
	}
	got, ok := ca.Get(image)
	if !ok {
		t.Fatal("miss after Put")
	}
	if d := tensors.MustCopyFlatData[float32](got); d[3] != 4 || got.Shape().Rank() != 4 {
		t.Errorf("got %v %v", got.Shape(), d)
	}
	if _, ok := cb.Get(image); ok {
		t.Error("another encoder's embedding was returned")
	}
	if _, ok := ca.Get([]byte("other image")); ok {
		t.Error("another image's embedding was returned")
	}
	if ca.Hits != 1 || ca.Misses != 2 {
		t.Errorf("hits %d misses %d", ca.Hits, ca.Misses)
	}
}
