package train

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
	"github.com/segsam/segsam/textembed"
)

const subset = "../testdata/dataset/demo_subset"

// tinyConfig is the SAM of the reference fixtures (128 px input, 8×8 tokens).
func tinyConfig(t *testing.T, variant string, classes []string, textDim int) segsam.Config {
	t.Helper()
	base, err := sam.LoadConfig("../testdata/fixtures/sam_tiny/config.json")
	if err != nil {
		t.Fatal(err)
	}
	base.Family = sam.FamilySAMMed2D // stretch to S×S as SAM-Med2D trains
	cfg, err := segsam.NewConfig(base, variant, classes, textDim)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func openSubset(t *testing.T) *dataset.Dataset {
	t.Helper()
	ds, err := dataset.Open(subset)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func hashedText(t *testing.T, classes []string) *textembed.Set {
	t.Helper()
	p, err := textembed.NewHashed(64)
	if err != nil {
		t.Fatal(err)
	}
	set, err := textembed.Build(context.Background(), p, classes)
	if err != nil {
		t.Fatal(err)
	}
	return &set
}

func TestTrainSmoke(t *testing.T) {
	ds := openSubset(t)
	classes := ds.Classes()
	cfg := tinyConfig(t, "seg_sam", classes, 64)
	dir := t.TempDir()
	res, err := Run(context.Background(), Options{
		Train: ds, Val: ds, Model: cfg, Text: hashedText(t, classes), Out: dir,
		Epochs: 3, LearningRate: 1e-3, Seed: 1, Log: os.Stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range res.History {
		t.Logf("epoch %d: %v / %v", h.Epoch, h.Train["total"], h.Val["dsc"])
	}
	if _, err := os.Stat(filepath.Join(dir, "loss.png")); err != nil {
		t.Error(err)
	}
}
