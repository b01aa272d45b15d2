package segsam

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/checkpoint"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/textembed"
)

// modelWith builds a tiny model of a variant over a vocabulary, seeded.
func modelWith(t *testing.T, variant string, classes []string, seed int) *Model {
	t.Helper()
	cfg, err := NewConfig(tinyBase(t), variant, classes, 8)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Seed(int64(seed)); err != nil {
		t.Fatal(err)
	}
	if cfg.Parts.TextEnhancer {
		s := textembed.Set{Provider: "test", Model: "test", Classes: classes}
		for i := range classes {
			v := make([]float32, 8)
			v[i%8] = 1
			s.Texts, s.Vectors = append(s.Texts, classes[i]), append(s.Vectors, v)
		}
		if err := m.SetTextEmbeddings(s); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func values(t *testing.T, m *Model, key string) ([]float32, []int) {
	t.Helper()
	v := m.SAM.Store.GetVariable(sam.KeyToPath(key))
	if v == nil {
		t.Fatalf("no variable %s", key)
	}
	x, err := v.Value()
	if err != nil {
		t.Fatal(err)
	}
	d, err := tensors.CopyFlatData[float32](x)
	if err != nil {
		t.Fatal(err)
	}
	return d, x.Shape().Dimensions
}

// TestCopyClassRowsByName: a model of a new vocabulary started from one of
// another keeps, for every class both know, that class's rows of every
// class-indexed weight (wherever the class sits in the new order), and new
// classes get fresh rows.
func TestCopyClassRowsByName(t *testing.T) {
	for _, variant := range []string{"seg_sam", "baseline_sem"} {
		t.Run(variant, func(t *testing.T) {
			oldClasses := []string{"kidney", "liver", "spleen"}
			newClasses := []string{"spleen", "polyp", "kidney"} // same size: shapes agree, rows do not
			src := modelWith(t, variant, oldClasses, 1)
			if err := src.Materialize(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "src.safetensors")
			if err := src.Save(path, nil); err != nil {
				t.Fatal(err)
			}
			sd, err := checkpoint.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			dst := modelWith(t, variant, newClasses, 2)
			if _, _, _, err := dst.SetWeightsMatching(sd); err != nil {
				t.Fatal(err)
			}
			if err := dst.Materialize(); err != nil {
				t.Fatal(err)
			}
			shared, ws, err := dst.CopyClassRows(sd)
			if err != nil {
				t.Fatal(err)
			}
			if shared != 2 || len(ws) == 0 {
				t.Fatalf("shared %d classes in %v", shared, ws)
			}
			for _, key := range ws {
				axis := classAxes[key]
				a, dims := values(t, src, key)
				b, _ := values(t, dst, key)
				outer, inner := 1, 1
				for i := 0; i < axis; i++ {
					outer *= dims[i]
				}
				for i := axis + 1; i < len(dims); i++ {
					inner *= dims[i]
				}
				row := func(x []float32, o, k int) []float32 { return x[(o*3+k)*inner : (o*3+k+1)*inner] }
				for o := 0; o < outer; o++ {
					// new 0 = spleen = old 2; new 2 = kidney = old 0; new 1 (polyp) is new.
					if !slices.Equal(row(b, o, 0), row(a, o, 2)) || !slices.Equal(row(b, o, 2), row(a, o, 0)) {
						t.Fatalf("%s: shared class rows not carried by name", key)
					}
					// (biases start at zero: a fresh row equals any zero row)
					if !strings.HasSuffix(key, ".bias") && slices.Equal(row(b, o, 1), row(a, o, 1)) {
						t.Fatalf("%s: the new class polyp took the old liver's row", key)
					}
				}
			}
			// Every other weight carried as it is.
			a, _ := values(t, src, "mask_decoder.iou_token.weight")
			b, _ := values(t, dst, "mask_decoder.iou_token.weight")
			if !slices.Equal(a, b) {
				t.Error("a shared non-class weight was not carried")
			}
		})
	}
}

// TestClassAxesComplete: every weight of every variant with an axis of the
// vocabulary's size is either listed in classAxes or the text embeddings,
// so a new class-indexed weight cannot be silently dropped by
// --init-matching.
func TestClassAxesComplete(t *testing.T) {
	classes := []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6"} // K = 7: no other dimension is 7
	for variant := range Variants {
		cfg, err := NewConfig(tinyBase(t), variant, classes, 8)
		if err != nil {
			t.Fatal(err)
		}
		expected, err := ExpectedVariables(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for name, shape := range expected {
			i := slices.Index(shape, len(classes))
			if i < 0 || sam.KeyToPath(name) == textEmbeddingsPath {
				continue
			}
			if axis, ok := classAxes[name]; !ok || axis != i {
				t.Errorf("%s %s %v: class axis %d not in classAxes", variant, name, shape, i)
			}
		}
	}
}
