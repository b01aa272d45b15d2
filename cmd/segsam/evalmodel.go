package main

import (
	"os"
	"path/filepath"

	"github.com/segsam/segsam/eval"
	"github.com/segsam/segsam/models"
	"github.com/segsam/segsam/segsam"
)

func init() {
	modelSegmenter = func(checkpoint, arch string) (eval.Segmenter, error) {
		p, err := loadPredictor(checkpoint, arch, "")
		if err != nil {
			return nil, err
		}
		label := models.DefaultName
		if checkpoint != "" {
			label = segsam.DefaultLabel(checkpoint)
		}
		return segsam.NewSegmenter(p, label, embeddingCacheDir())
	}
}

// embeddingCacheDir is where eval keeps image embeddings between runs:
// $SEGSAM_CACHE, else the user's cache folder; "" (no cache) when neither
// can be found.
func embeddingCacheDir() string {
	if d := os.Getenv("SEGSAM_CACHE"); d != "" {
		return filepath.Join(d, "embeddings")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "segsam", "embeddings")
}
