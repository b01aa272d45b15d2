package train

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
	"github.com/segsam/segsam/textembed"
)

const subset = "../testdata/dataset/demo_subset"

// tinyConfig is the SAM of the reference fixtures (128 px input, 8×8 tokens).
func tinyConfig(t testing.TB, variant string, classes []string, textDim int) segsam.Config {
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

func openSubset(t testing.TB) *dataset.Dataset {
	t.Helper()
	ds, err := dataset.Open(subset)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func hashedText(t testing.TB, classes []string) *textembed.Set {
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

// TestLossFallsForEveryVariant trains each row of the paper's Table 4 for
// three epochs on the small real subset (fixed seeds) and checks that the
// mean training loss of the last epoch is below the first's.
func TestLossFallsForEveryVariant(t *testing.T) {
	ds := openSubset(t)
	classes := ds.Classes()
	for _, v := range segsam.VariantNames() {
		t.Run(v, func(t *testing.T) {
			cfg := tinyConfig(t, v, classes, 64)
			var text *textembed.Set
			if cfg.Parts.TextEnhancer {
				text = hashedText(t, classes)
			}
			dir := t.TempDir()
			res, err := Run(context.Background(), Options{
				Train: ds, Val: ds, Model: cfg, Text: text, Out: dir,
				Epochs: 3, LearningRate: 1e-3, Seed: 1,
			})
			if err != nil {
				t.Fatal(err)
			}
			first, last := res.History[0].Train["total"], res.History[len(res.History)-1].Train["total"]
			t.Logf("%s: train loss %.4f -> %.4f, val DSC %.3f", v, first, last, res.History[len(res.History)-1].Val["dsc"])
			if !(last < first) {
				t.Errorf("loss did not fall: %.4f -> %.4f", first, last)
			}
			for _, f := range []string{"checkpoint.safetensors", "history.csv", "loss.png", "state.json"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Error(err)
				}
			}
			m, err := segsam.Load(res.Checkpoint, nil)
			if err != nil {
				t.Fatalf("the run's checkpoint does not load: %v", err)
			}
			// The modality prior's table: every object's class under its image's modality.
			for _, e := range ds.Images {
				for _, mk := range e.Masks {
					if !slices.Contains(m.Config.ModalityClasses[e.Modality], mk.Class) {
						t.Errorf("checkpoint's modality_classes[%s] lacks %s", e.Modality, mk.Class)
					}
				}
			}
		})
	}
}

// TestResumeMatchesUninterrupted stops a run after one epoch, resumes it for
// a second, and compares the final weights with an uninterrupted two-epoch
// run: they must be identical (tolerance 0: the sampling of each epoch
// depends only on the seed and the epoch, and the optimizer state is saved).
func TestResumeMatchesUninterrupted(t *testing.T) {
	ds := openSubset(t)
	classes := ds.Classes()
	cfg := tinyConfig(t, "seg_sam", classes, 64)
	text := hashedText(t, classes)
	opts := func(dir string, epochs int) Options {
		return Options{Train: ds, Model: cfg, Text: text, Out: dir, Epochs: epochs, LearningRate: 1e-3, Seed: 3, CacheDir: filepath.Join(dir, "..", "cache")}
	}
	whole := filepath.Join(t.TempDir(), "whole")
	if _, err := Run(context.Background(), opts(whole, 2)); err != nil {
		t.Fatal(err)
	}
	parts := filepath.Join(t.TempDir(), "parts")
	if _, err := Run(context.Background(), opts(parts, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), opts(parts, 2)); err != nil {
		t.Fatal(err)
	}
	a, err := segsam.Load(filepath.Join(whole, "checkpoint.safetensors"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := segsam.Load(filepath.Join(parts, "checkpoint.safetensors"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ta, _ := a.Tensors()
	tb, _ := b.Tensors()
	if len(ta) != len(tb) {
		t.Fatalf("%d vs %d tensors", len(ta), len(tb))
	}
	for i := range ta {
		for j := range ta[i].Data {
			if ta[i].Data[j] != tb[i].Data[j] {
				t.Fatalf("%s[%d]: %v uninterrupted, %v resumed", ta[i].Name, j, ta[i].Data[j], tb[i].Data[j])
			}
		}
	}
	// Resuming with other options is refused.
	o := opts(parts, 3)
	o.LearningRate = 5e-4
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "other options") {
		t.Errorf("resume with another learning rate: %v", err)
	}
}

// TestBadData checks the errors for unusable training data.
func TestBadData(t *testing.T) {
	ds := openSubset(t)
	classes := ds.Classes()
	// A vocabulary without one of the data's classes.
	cfg := tinyConfig(t, "so", classes[1:], 0)
	_, err := Run(context.Background(), Options{Train: ds, Model: cfg, Out: t.TempDir(), Epochs: 1})
	if err == nil || !strings.Contains(err.Error(), "not in the model's vocabulary") {
		t.Errorf("unknown class: %v", err)
	}
	// An empty dataset.
	empty := ds.Subset(func(*dataset.ImageEntry) bool { return false })
	if _, err := Run(context.Background(), Options{Train: empty, Model: tinyConfig(t, "so", classes, 0), Out: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty dataset: %v", err)
	}
	// T2VSE without text embeddings.
	if _, err := Run(context.Background(), Options{Train: ds, Model: tinyConfig(t, "seg_sam", classes, 64), Out: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "text embeddings") {
		t.Errorf("T2VSE without text: %v", err)
	}
	// A mask file that went missing after the set was opened.
	dir := t.TempDir()
	copyDir(t, subset, dir)
	broken, err := dataset.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(broken.Images[0].MaskPath(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), Options{Train: broken, Model: tinyConfig(t, "so", classes, 0), Out: t.TempDir()}); err == nil || !strings.Contains(err.Error(), filepath.Base(broken.Images[0].Masks[0].Path)) {
		t.Errorf("missing mask: %v", err)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
