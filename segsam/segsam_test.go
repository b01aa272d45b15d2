package segsam

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/checkpoint"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/textembed"
	"github.com/segsam/segsam/transform"
)

var testClasses = []string{"kidney", "liver", "spleen"}

func tinyBase(t *testing.T) sam.Config {
	t.Helper()
	c, err := sam.LoadConfig("../testdata/fixtures/sam_tiny/config.json")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func textSet(dim int) textembed.Set {
	s := textembed.Set{Provider: "test", Model: "test", Classes: testClasses}
	for i := range testClasses {
		v := make([]float32, dim)
		v[i] = 1
		s.Texts = append(s.Texts, testClasses[i])
		s.Vectors = append(s.Vectors, v)
	}
	return s
}

func tinyModel(t *testing.T, variant string) *Model {
	t.Helper()
	cfg, err := NewConfig(tinyBase(t), variant, testClasses, 8)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Seed(7); err != nil {
		t.Fatal(err)
	}
	if cfg.Parts.TextEnhancer {
		if err := m.SetTextEmbeddings(textSet(8)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Materialize(); err != nil {
		t.Fatal(err)
	}
	return m
}

func fixtureImage(t *testing.T) transform.Image {
	t.Helper()
	img, err := transform.ReadImage("../testdata/fixtures/sam_tiny/image.png")
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestVariantsOutputShapes runs every variant of the paper's Table 4 and
// checks the shapes of what the predictor returns.
func TestVariantsOutputShapes(t *testing.T) {
	img := fixtureImage(t)
	for _, v := range VariantNames() {
		t.Run(v, func(t *testing.T) {
			m := tinyModel(t, v)
			p := NewPredictor(m)
			if err := p.SetImage(img); err != nil {
				t.Fatal(err)
			}
			res, err := p.Predict(sam.Prompt{Boxes: []sam.Box{{30, 25, 85, 85}, {5, 5, 40, 60}}, Multimask: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.B != 2 || res.C != 3 || len(res.Masks) != 2*3*img.H*img.W || len(res.IoU) != 6 {
				t.Fatalf("binary result B=%d C=%d masks %d iou %d", res.B, res.C, len(res.Masks), len(res.IoU))
			}
			parts := m.Config.Parts
			if got := res.Class != nil; got != m.Config.HasClasses() {
				t.Errorf("class returned: %v, want %v", got, m.Config.HasClasses())
			}
			if res.Class != nil {
				for b := range 2 {
					if _, ok := m.Config.ClassIndex(res.Class[b]); !ok || res.Confidence[b] <= 0 || res.Confidence[b] > 1 {
						t.Errorf("prompt %d: class %q confidence %v", b, res.Class[b], res.Confidence[b])
					}
					if len(res.ClassProbs[b]) != len(testClasses) {
						t.Errorf("class probabilities %d, want %d", len(res.ClassProbs[b]), len(testClasses))
					}
				}
			}
			if got := res.Semantic != nil; got != parts.SemanticDecoder {
				t.Errorf("semantic mask returned: %v, want %v", got, parts.SemanticDecoder)
			} else if got && len(res.Semantic) != 2*img.H*img.W {
				t.Errorf("semantic masks have %d values", len(res.Semantic))
			}
			if got := res.Presence != nil; got != parts.COTokens {
				t.Errorf("presence returned: %v, want %v", got, parts.COTokens)
			} else if got && len(res.Presence[0]) != len(testClasses) {
				t.Errorf("presence scores %d", len(res.Presence[0]))
			}
		})
	}
}

// TestCheckpointRoundTrip saves a model and checks that the reloaded one
// answers identically and carries its configuration.
func TestCheckpointRoundTrip(t *testing.T) {
	m := tinyModel(t, "seg_sam")
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := m.Save(path, map[string]string{"note": "test"}); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(m2.Config.Classes, ",") != strings.Join(testClasses, ",") || !m2.Config.Parts.CMSA || m2.Config.TextDim != 8 {
		t.Fatalf("reloaded config %+v", m2.Config)
	}
	img := fixtureImage(t)
	pr := sam.Prompt{Points: []sam.Point{{X: 52, Y: 55, Label: 1}}}
	var outs [2]*Prediction
	for i, mm := range []*Model{m, m2} {
		p := NewPredictor(mm)
		if err := p.SetImage(img); err != nil {
			t.Fatal(err)
		}
		if outs[i], err = p.Predict(pr); err != nil {
			t.Fatal(err)
		}
	}
	for i := range outs[0].Masks {
		if outs[0].Masks[i] != outs[1].Masks[i] {
			t.Fatalf("mask logit %d: %v before, %v after the round trip", i, outs[0].Masks[i], outs[1].Masks[i])
		}
	}
	for i := range outs[0].Semantic {
		if outs[0].Semantic[i] != outs[1].Semantic[i] {
			t.Fatalf("semantic logit %d differs after the round trip", i)
		}
	}
	if outs[0].Class[0] != outs[1].Class[0] || outs[0].Confidence[0] != outs[1].Confidence[0] {
		t.Fatalf("class %s/%v vs %s/%v", outs[0].Class[0], outs[0].Confidence[0], outs[1].Class[0], outs[1].Confidence[0])
	}
}

func TestLoadAnyAndErrors(t *testing.T) {
	// An official SAM checkpoint loads as a plain SAM (no classes).
	p, err := LoadAny("../testdata/fixtures/sam_tiny/sam_tiny.pth", "", "../testdata/fixtures/sam_tiny/config.json")
	if err != nil {
		t.Fatal(err)
	}
	if p.Model != nil || p.Classes() != nil {
		t.Fatal("a SAM checkpoint should give a plain SAM predictor")
	}
	// A segsam checkpoint refuses an architecture flag.
	m := tinyModel(t, "so")
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := m.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAny(path, "vit_b", ""); err == nil || !strings.Contains(err.Error(), "carries its architecture") {
		t.Errorf("arch with a segsam checkpoint: %v", err)
	}
	// A SAM file is not a segsam checkpoint.
	if _, err := Load("../testdata/fixtures/sam_tiny/sam_tiny.pth", nil); !errors.Is(err, ErrNotSEGSAM) {
		t.Errorf("Load of a SAM .pth: %v, want ErrNotSEGSAM", err)
	}
	// A tensor missing from a segsam checkpoint is named.
	sd, err := checkpoint.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var kept []*checkpoint.Tensor
	for _, tt := range sd.Tensors {
		if tt.Name != "semantic_decoder.so_token.weight" {
			kept = append(kept, tt)
		}
	}
	broken := filepath.Join(t.TempDir(), "broken.safetensors")
	if err := checkpoint.SaveSafetensors(broken, kept, sd.Metadata); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(broken, nil); err == nil || !strings.Contains(err.Error(), "semantic_decoder.so_token.weight") {
		t.Errorf("missing tensor: %v", err)
	}
	// Text embeddings for another vocabulary are refused.
	cfg, _ := NewConfig(tinyBase(t), "seg_sam", testClasses, 8)
	m3, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := textSet(8)
	other.Classes = []string{"liver", "kidney", "spleen"}
	if err := m3.SetTextEmbeddings(other); err == nil {
		t.Error("text embeddings in another class order were accepted")
	}
	if _, err := NewConfig(tinyBase(t), "nope", testClasses, 0); err == nil {
		t.Error("unknown variant accepted")
	}
	if _, err := NewConfig(tinyBase(t), "seg_sam", testClasses, 0); err == nil {
		t.Error("T2VSE without text embeddings accepted")
	}
	_ = os.Remove(broken)
}

// TestInferNeedsSparsePrompt checks the mask-only prompt error.
func TestInferNeedsSparsePrompt(t *testing.T) {
	m := tinyModel(t, "so")
	g := m.Config.SAM.LowResSize()
	_, err := m.Infer(sam.DecoderInputs{Embedding: tensors.FromFlatDataAndDimensions(make([]float32, 32*8*8), 1, 32, 8, 8), Mask: tensors.FromFlatDataAndDimensions(make([]float32, g*g), 1, 1, g, g)})
	if err == nil {
		t.Fatal("mask-only prompt accepted")
	}
}

// TestPromptFreeRefused: a SEG-SAM checkpoint answers a prompt with no point
// and no box (no prompt, or a mask input alone) with ErrNeedsPointOrBox; the
// plain SAM path answers it as the official predictors do.
func TestPromptFreeRefused(t *testing.T) {
	m := tinyModel(t, "seg_sam")
	img := fixtureImage(t)
	p := NewPredictor(m)
	if err := p.SetImage(img); err != nil {
		t.Fatal(err)
	}
	n := m.Config.SAM.LowResSize()
	for _, pr := range []sam.Prompt{{}, {Multimask: true}, {MaskInput: make([]float32, n*n)}} {
		if _, err := p.Predict(pr); !errors.Is(err, ErrNeedsPointOrBox) {
			t.Errorf("prompt %+v: error %v, want ErrNeedsPointOrBox", pr, err)
		}
	}
	plain := NewSAMPredictor(m.SAM)
	if err := plain.SetImage(img); err != nil {
		t.Fatal(err)
	}
	res, err := plain.Predict(sam.Prompt{Multimask: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.B != 1 || res.C != 3 || len(res.Masks) != 3*img.H*img.W {
		t.Errorf("prompt-free plain SAM result B=%d C=%d masks %d", res.B, res.C, len(res.Masks))
	}
}
