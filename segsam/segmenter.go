package segsam

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/segsam/segsam/eval"
	"github.com/segsam/segsam/internal/embcache"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/transform"
)

// Segmenter evaluates a model with package eval: one image encoding per
// image (reused from an on-disk cache when CacheDir is set), then one
// prediction per prompt. Box prompts use the single-mask output; a single
// point uses the multimask output and keeps the mask with the highest
// predicted IoU (as SAM recommends for ambiguous prompts).
type Segmenter struct {
	P *Predictor
	// Label names the model in tables.
	Label string
	// ModalityPrior chooses each object's class among the classes the
	// training data had in the image's modality (Predictor.PredictIn).
	ModalityPrior bool
	cache         *embcache.Cache
	// auto and merge, set by EnableAuto, label whole images (segmenter_auto.go).
	auto  *Automatic
	merge MergeOptions
}

// NewSegmenter wraps a predictor for evaluation; with cacheDir set, image
// embeddings are cached on disk.
func NewSegmenter(p *Predictor, label, cacheDir string) (*Segmenter, error) {
	s := &Segmenter{P: p, Label: label}
	if cacheDir != "" {
		m := p.SAM.Model
		// Make sure a fresh encoder has its weights before fingerprinting.
		if _, err := embcache.Fingerprint(m); err != nil {
			img, _ := transform.NewImage(8, 8)
			if err := p.SAM.SetImage(img); err != nil {
				return nil, err
			}
		}
		c, err := embcache.Open(cacheDir, m)
		if err != nil {
			return nil, err
		}
		s.cache = c
	}
	return s, nil
}

// UseModalityPrior turns on the modality prior (see ModalityPrior); it is
// an error for a model that records no classes per modality.
func (s *Segmenter) UseModalityPrior() error {
	if s.P.Model == nil || !s.P.Model.Config.HasClasses() {
		return fmt.Errorf("the modality prior needs a SEG-SAM model with classes; %s predicts masks only", s.Label)
	}
	if len(s.P.Model.Config.ModalityClasses) == 0 {
		return fmt.Errorf("%s records no classes per modality (a checkpoint trained before segsam wrote modality_classes; see segsam model --modality-classes)", s.Label)
	}
	s.ModalityPrior = true
	return nil
}

// Name implements eval.Segmenter.
func (s *Segmenter) Name() string { return s.Label }

// Classes implements eval.Segmenter.
func (s *Segmenter) Classes() []string { return s.P.Classes() }

// AcceptsClicks implements eval.Refiner: corrective clicks and a mask
// prompt are a SAM model's interactive use.
func (s *Segmenter) AcceptsClicks() bool { return true }

// Segment implements eval.Segmenter.
func (s *Segmenter) Segment(ctx context.Context, imagePath string, h, w int, prompts []eval.Prompt) ([]eval.Prediction, error) {
	data, err := os.ReadFile(imagePath)
	if err != nil {
		return nil, err
	}
	img, err := transform.DecodeImage(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", imagePath, err)
	}
	if img.H != h || img.W != w {
		return nil, fmt.Errorf("%s is %dx%d, expected %dx%d", imagePath, img.W, img.H, w, h)
	}
	if err := s.setImage(img, data); err != nil {
		return nil, err
	}
	out := make([]eval.Prediction, 0, len(prompts))
	for _, pr := range prompts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var q sam.Prompt
		switch pr.Kind {
		case eval.KindBox:
			q.Boxes = []sam.Box{{pr.Box[0], pr.Box[1], pr.Box[2], pr.Box[3]}}
		case eval.KindPoint:
			q.Points = []sam.Point{{X: pr.Point[0], Y: pr.Point[1], Label: sam.LabelPositive}}
			q.Multimask = true
		default:
			return nil, fmt.Errorf("unknown prompt kind %q", pr.Kind)
		}
		// Corrective clicks (interactive evaluation): more points, the
		// previous low-res logits as mask prompt, and one mask, as SAM's
		// interactive use has it once the prompt is no longer ambiguous.
		for _, c := range pr.Clicks {
			label := sam.LabelNegative
			if c.Positive {
				label = sam.LabelPositive
			}
			q.Points = append(q.Points, sam.Point{X: c.X, Y: c.Y, Label: label})
			q.Multimask = false
		}
		q.MaskInput = pr.MaskInput
		modality := ""
		if s.ModalityPrior {
			modality = pr.Modality
		}
		res, err := s.P.PredictIn(q, modality)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", imagePath, err)
		}
		best := res.Best(0)
		p := eval.Prediction{Mask: res.Mask(0, best), IoUPred: res.IoU[best]}
		if r := res.LowResSize; r > 0 && len(res.LowRes) >= (best+1)*r*r {
			p.LowRes = res.LowRes[best*r*r : (best+1)*r*r]
		}
		if res.Class != nil {
			p.Class, p.Confidence = res.Class[0], res.Confidence[0]
		}
		if res.Semantic != nil {
			p.SemanticMask = res.SemanticMask(0)
		}
		out = append(out, p)
	}
	return out, nil
}

func (s *Segmenter) setImage(img transform.Image, data []byte) error {
	if s.cache == nil {
		return s.P.SetImage(img)
	}
	if emb, ok := s.cache.Get(data); ok {
		return s.P.SAM.SetEmbedding(emb, img.H, img.W)
	}
	if err := s.P.SetImage(img); err != nil {
		return err
	}
	return s.cache.Put(data, s.P.SAM.Embedding())
}

// DefaultLabel names a checkpoint in evaluation tables: its file name
// without extension.
func DefaultLabel(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}
