package segsam

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/transform"
)

// Predictor answers prompts on an image with any segsam-loadable model: a
// plain SAM / SAM-Med2D checkpoint (binary masks only) or a SEG-SAM
// checkpoint (binary mask from Dec_sag, plus the object's class with its
// confidence, the semantic mask from Dec_saw and the class presence scores).
type Predictor struct {
	// SAM does the pre-processing, keeps the image embedding and does the
	// mask post-processing.
	SAM *sam.Predictor
	// Model is the SEG-SAM model, nil for a plain SAM.
	Model *Model
}

// NewPredictor returns a predictor for a SEG-SAM model.
func NewPredictor(m *Model) *Predictor {
	return &Predictor{SAM: sam.NewPredictor(m.SAM), Model: m}
}

// NewSAMPredictor returns a predictor for a plain SAM model.
func NewSAMPredictor(m *sam.Model) *Predictor { return &Predictor{SAM: sam.NewPredictor(m)} }

// Classes is the model's vocabulary (nil for a plain SAM).
func (p *Predictor) Classes() []string {
	if p.Model == nil || !p.Model.Config.HasClasses() {
		return nil
	}
	return p.Model.Config.Classes
}

// SetImage encodes an image (see sam.Predictor.SetImage).
func (p *Predictor) SetImage(img transform.Image) error { return p.SAM.SetImage(img) }

// Prediction is a sam.Result plus, for SEG-SAM, per prompt b:
type Prediction struct {
	*sam.Result
	// Class, ClassIndex, Confidence: the most probable class and its softmax
	// probability; ClassProbs all K probabilities.
	Class      []string
	ClassIndex []int
	Confidence []float32
	ClassProbs [][]float32
	// Semantic are Dec_saw's mask logits at the original size [B, H, W]
	// (nil without the semantic decoder); SemanticLowRes [B, 4g, 4g].
	Semantic, SemanticLowRes []float32
	// Presence are the K class-presence scores (sigmoid) of the image.
	Presence [][]float32
}

// SemanticMask returns prompt b's semantic mask as a binary plane [H*W].
func (r *Prediction) SemanticMask(b int) []bool {
	n := r.H * r.W
	out := make([]bool, n)
	for i, v := range r.Semantic[b*n : (b+1)*n] {
		out[i] = v > 0
	}
	return out
}

// ErrNeedsPointOrBox is returned by Predict when a SEG-SAM checkpoint gets
// no point and no box. Plain SAM / SAM-Med2D checkpoints answer such a call
// (a mask input alone, or no prompt at all, as the official predictors do);
// SEG-SAM's decoders do not: Dec_saw, the class head and T2VSE are trained on
// the embedding of a point or box prompt, and a prompt-free call would give
// a class and a semantic mask for an object nobody chose.
var ErrNeedsPointOrBox = errors.New("a SEG-SAM checkpoint needs a point or a box (a mask input alone or no prompt works only with plain SAM / SAM-Med2D checkpoints)")

// Predict answers a prompt on the current image.
func (p *Predictor) Predict(pr sam.Prompt) (*Prediction, error) { return p.PredictIn(pr, "") }

// PredictIn answers a prompt on the current image, an image of the given
// modality ("CT", "MR", ...; "" for unknown): with the modality prior, the
// class is chosen among the classes the model's training data had in that
// modality (Config.ModalityClasses; see modality.go). Masks do not depend
// on it.
func (p *Predictor) PredictIn(pr sam.Prompt, modality string) (*Prediction, error) {
	if p.Model != nil && len(pr.Points) == 0 && len(pr.Boxes) == 0 {
		return nil, ErrNeedsPointOrBox
	}
	if p.Model == nil {
		res, err := p.SAM.Predict(pr)
		if err != nil {
			return nil, err
		}
		return &Prediction{Result: res}, nil
	}
	in, err := p.SAM.DecoderInputs(pr)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	out, err := p.Model.Infer(in)
	if err != nil {
		return nil, err
	}
	decode := time.Since(start)
	res, err := p.SAM.Finish(pr, out.Binary, out.IoU)
	if err != nil {
		return nil, err
	}
	res.Decode = decode
	pred := &Prediction{Result: res}
	cfg := p.Model.Config
	if out.ClassLogits != nil {
		logits, err := tensors.CopyFlatData[float32](out.ClassLogits)
		if err != nil {
			return nil, err
		}
		k := cfg.NumClasses()
		allowed := cfg.ClassesOfModality(modality)
		for b := 0; b < res.B; b++ {
			probs := restrictClasses(softmax(logits[b*k:(b+1)*k]), allowed)
			best := transform.ArgmaxFirst(probs)
			pred.ClassIndex = append(pred.ClassIndex, best)
			pred.Class = append(pred.Class, cfg.Classes[best])
			pred.Confidence = append(pred.Confidence, probs[best])
			pred.ClassProbs = append(pred.ClassProbs, probs)
		}
	}
	if out.Semantic != nil {
		low, err := tensors.CopyFlatData[float32](out.Semantic)
		if err != nil {
			return nil, err
		}
		s := cfg.SAM.LowResSize()
		up, err := p.SAM.Upscale(transform.Masks{B: res.B, C: 1, H: s, W: s, Data: low})
		if err != nil {
			return nil, err
		}
		pred.SemanticLowRes, pred.Semantic = low, up.Data
	}
	if out.Presence != nil {
		logits, err := tensors.CopyFlatData[float32](out.Presence)
		if err != nil {
			return nil, err
		}
		k := cfg.NumClasses()
		for b := 0; b < res.B; b++ {
			row := make([]float32, k)
			for i, v := range logits[b*k : (b+1)*k] {
				row[i] = float32(1 / (1 + math.Exp(-float64(v))))
			}
			pred.Presence = append(pred.Presence, row)
		}
	}
	return pred, nil
}

func softmax(x []float32) []float32 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	out := make([]float32, len(x))
	var sum float64
	for i, v := range x {
		e := math.Exp(float64(v) - m)
		out[i] = float32(e)
		sum += e
	}
	for i := range out {
		out[i] = float32(float64(out[i]) / sum)
	}
	return out
}

// LoadAny loads what a user may give as --checkpoint: a segsam checkpoint,
// or an official SAM / SAM-Med2D / MedSAM checkpoint with an architecture
// (a preset name, a config, or inferred from the weights when both are
// empty).
func LoadAny(path, arch, configPath string) (*Predictor, error) {
	sd, err := loadStateDict(path)
	if err != nil {
		return nil, err
	}
	if IsCheckpoint(sd) {
		if arch != "" || configPath != "" {
			return nil, fmt.Errorf("%s is a segsam checkpoint: it carries its architecture (drop --arch / --config)", path)
		}
		m, err := FromStateDict(sd, nil)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", path, err)
		}
		return NewPredictor(m), nil
	}
	var cfg sam.Config
	switch {
	case arch != "" && configPath != "":
		return nil, fmt.Errorf("give an architecture name or a config file, not both")
	case arch != "":
		if cfg, err = sam.Preset(arch); err != nil {
			return nil, err
		}
	case configPath != "":
		if cfg, err = sam.LoadConfig(configPath); err != nil {
			return nil, err
		}
	default:
		if cfg, err = sam.InferConfig(sd); err != nil {
			return nil, fmt.Errorf("load %s: %w (give the architecture if it cannot be inferred)", path, err)
		}
	}
	m, err := sam.NewModel(cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := m.SetWeights(sd); err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return NewSAMPredictor(m), nil
}
