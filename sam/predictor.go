package sam

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/transform"
)

// Point is a click in original-image pixels (x right, y down) with its label:
// 1 positive (foreground), 0 negative (background).
type Point struct {
	X, Y  float64
	Label int
}

// Box is x0, y0, x1, y1 in original-image pixels.
type Box [4]float64

// Prompt is what the user gives for one predict call.
type Prompt struct {
	Points []Point
	// Boxes: zero, one, or several boxes; several boxes give one prediction
	// each (the points, if any, are shared by every box).
	Boxes []Box
	// MaskInput is an optional low-resolution mask prompt [4g*4g] (4g = 256
	// for SAM at 1024, 64 for SAM-Med2D at 256), usually the LowRes logits
	// of a previous call.
	MaskInput []float32
	// Multimask asks for 3 candidate masks (SAM) or the best of 3 (SAM-Med2D)
	// instead of the single-output token.
	Multimask bool
}

// Empty reports whether the prompt has no point, no box and no mask input.
// Predict still answers it, as SamPredictor / SammedPredictor.predict() do
// with no prompt: the prompt encoder gives an empty sparse embedding
// [1, 0, C] and the no_mask_embed dense embedding, so the decoder sees only
// the IoU and mask tokens (the official default, Multimask true, gives SAM's
// 3 candidates or SAM-Med2D's best of 3).
func (pr Prompt) Empty() bool {
	return len(pr.Points) == 0 && len(pr.Boxes) == 0 && pr.MaskInput == nil
}

// Result holds a prediction for B prompts (B = number of boxes, or 1) with
// C masks each.
type Result struct {
	B, C int
	// H, W is the original image size; LowResSize the side of LowRes.
	H, W, LowResSize int
	// Masks are logits at the original size [B, C, H, W]; a pixel is in the
	// mask when its logit is > 0.
	Masks []float32
	// IoU is the predicted IoU of each mask [B, C].
	IoU []float32
	// LowRes are the decoder's logits [B, C, 4g, 4g] (feed one back as MaskInput).
	LowRes []float32
	// Decode is the time of the prompt encoder + mask decoder; Post that of
	// the mask post-processing.
	Decode, Post time.Duration
}

// Mask returns prompt b's mask c as a binary plane [H*W].
func (r *Result) Mask(b, c int) []bool {
	plane := r.Masks[(b*r.C+c)*r.H*r.W : (b*r.C+c+1)*r.H*r.W]
	out := make([]bool, len(plane))
	for i, v := range plane {
		out[i] = v > 0
	}
	return out
}

// Best returns, for prompt b, the index of the mask with the highest
// predicted IoU (the first one on ties).
func (r *Result) Best(b int) int {
	return transform.ArgmaxFirst(r.IoU[b*r.C : (b+1)*r.C])
}

// Predictor runs a model the way the official predictors do
// (SamPredictor, or SammedPredictor for SAM-Med2D models): set an image once,
// then predict masks for any number of prompts on its cached embedding.
type Predictor struct {
	Model *Model

	embedding    *tensors.Tensor // [1, C, g, g]
	origH, origW int
	inH, inW     int // the resized image inside the model input (SAM) or S, S
	scale        transform.CoordScale
	// Encode is the time the last SetImage spent in the image encoder.
	Encode time.Duration
}

// NewPredictor returns a predictor for m.
func NewPredictor(m *Model) *Predictor { return &Predictor{Model: m} }

// ErrNoImage is returned by Predict before SetImage.
var ErrNoImage = errors.New("no image set: call SetImage first")

// Preprocess turns an image into the model input [1, 3, S, S] with the
// family's pre-processing, and returns the size of the image inside it.
func (m *Model) Preprocess(img transform.Image) (input *tensors.Tensor, inH, inW int, err error) {
	if err := img.Validate(); err != nil {
		return nil, 0, 0, err
	}
	s := m.Config.ImageEncoder.ImgSize
	var data []float32
	switch m.Config.Family {
	case FamilySAMMed2D:
		data, err = transform.PreprocessSAMMed2D(img, s, m.Config.PixelMean, m.Config.PixelStd)
		inH, inW = s, s
	case FamilyLiteMedSAM:
		data, inH, inW, err = transform.PreprocessLiteMedSAM(img, s)
	default:
		data, inH, inW, err = transform.PreprocessSAM(img, s, m.Config.PixelMean, m.Config.PixelStd)
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("pre-process: %w", err)
	}
	return tensors.FromFlatDataAndDimensions(data, 1, 3, s, s), inH, inW, nil
}

// SetImage pre-processes and encodes an image; its embedding is kept for
// the following Predict calls.
func (p *Predictor) SetImage(img transform.Image) error {
	input, _, _, err := p.Model.Preprocess(img)
	if err != nil {
		return err
	}
	start := time.Now()
	emb, err := p.Model.Encode(input)
	if err != nil {
		return err
	}
	p.Encode = time.Since(start)
	return p.SetEmbedding(emb, img.H, img.W)
}

// SetEmbedding sets a cached image embedding [1, C, g, g] of an image of the
// given original size (as returned by Embedding), skipping the encoder.
func (p *Predictor) SetEmbedding(emb *tensors.Tensor, origH, origW int) error {
	cfg := p.Model.Config
	g := cfg.TokenGrid()
	c := p.Model.embeddingChannels()
	if d := emb.Shape().Dimensions; len(d) != 4 || d[0] != 1 || d[1] != c || d[2] != g || d[3] != g {
		return fmt.Errorf("embedding shape %v, want [1 %d %d %d]", d, c, g, g)
	}
	if origH <= 0 || origW <= 0 {
		return fmt.Errorf("invalid image size %dx%d", origW, origH)
	}
	s := cfg.ImageEncoder.ImgSize
	p.embedding, p.origH, p.origW = emb, origH, origW
	if cfg.Family == FamilySAMMed2D {
		p.inH, p.inW = s, s
		p.scale = transform.SAMMed2DCoordScale(origH, origW, s)
	} else {
		p.inH, p.inW = transform.PreprocessShape(origH, origW, s)
		p.scale = transform.SAMCoordScale(origH, origW, s)
	}
	return nil
}

// Embedding returns the current image embedding [1, C, g, g] (nil before SetImage).
func (p *Predictor) Embedding() *tensors.Tensor { return p.embedding }

// Size returns the original size of the current image.
func (p *Predictor) Size() (h, w int) { return p.origH, p.origW }

// ValidatePrompt checks a prompt against an image of size h×w and a model:
// points and boxes inside the image, labels 0 or 1 and a mask input of the
// right size. An empty prompt is valid: like the official predictors'
// predict() with no argument, it decodes with no sparse prompt token and
// the no_mask_embed dense embedding (see Prompt.Empty).
func (m *Model) ValidatePrompt(pr Prompt, h, w int) error {
	if err := ValidatePromptGeometry(pr, h, w); err != nil {
		return err
	}
	if pr.MaskInput != nil {
		n := m.Config.LowResSize()
		if len(pr.MaskInput) != n*n {
			return fmt.Errorf("mask input has %d values, want %dx%d", len(pr.MaskInput), n, n)
		}
	}
	return nil
}

// ValidatePromptGeometry is the part of ValidatePrompt that needs no model:
// points and boxes inside the h×w image, point labels, box corners in order.
// Callers check it before loading a checkpoint, so a bad prompt fails at once.
func ValidatePromptGeometry(pr Prompt, h, w int) error {
	inside := func(x, y float64) bool {
		return !math.IsNaN(x) && !math.IsNaN(y) && x >= 0 && y >= 0 && x <= float64(w) && y <= float64(h)
	}
	for i, pt := range pr.Points {
		if !inside(pt.X, pt.Y) {
			return fmt.Errorf("point %d (%g,%g) is outside the %dx%d image", i, pt.X, pt.Y, w, h)
		}
		if pt.Label != LabelPositive && pt.Label != LabelNegative {
			return fmt.Errorf("point %d has label %d: use 1 (positive) or 0 (negative)", i, pt.Label)
		}
	}
	for i, b := range pr.Boxes {
		if !inside(b[0], b[1]) || !inside(b[2], b[3]) {
			return fmt.Errorf("box %d %v is outside the %dx%d image", i, b, w, h)
		}
		if b[0] > b[2] || b[1] > b[3] {
			return fmt.Errorf("box %d %v: want x0 <= x1 and y0 <= y1", i, b)
		}
	}
	return nil
}

// Predict computes masks for a prompt on the current image.
func (p *Predictor) Predict(pr Prompt) (*Result, error) {
	in, err := p.DecoderInputs(pr)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	masks, iou, err := p.Model.Decode(in)
	if err != nil {
		return nil, err
	}
	decode := time.Since(start)
	res, err := p.Finish(pr, masks, iou)
	if err != nil {
		return nil, err
	}
	res.Decode = decode
	return res, nil
}

// DecoderInputs validates a prompt and turns it into decoder inputs in the
// model-input frame: the points, then (with a box) its two corners, or SAM's
// padding point for point-only prompts; one batch entry per box. An empty
// prompt gives one batch entry with neither coordinates nor mask.
func (p *Predictor) DecoderInputs(pr Prompt) (DecoderInputs, error) {
	if p.embedding == nil {
		return DecoderInputs{}, ErrNoImage
	}
	m := p.Model
	cfg := m.Config
	if err := m.ValidatePrompt(pr, p.origH, p.origW); err != nil {
		return DecoderInputs{}, err
	}
	batch := max(1, len(pr.Boxes))
	in := DecoderInputs{Embedding: p.embedding}
	if len(pr.Points) > 0 || len(pr.Boxes) > 0 {
		n := len(pr.Points)
		switch {
		case len(pr.Boxes) > 0:
			n += 2
		case n > 0:
			n++ // padding point
		}
		coords := make([]float32, 0, batch*n*2)
		labels := make([]int32, 0, batch*n)
		xy := make([]float64, 0, 2*len(pr.Points))
		for _, pt := range pr.Points {
			xy = append(xy, pt.X, pt.Y)
		}
		pts := p.pointsToModel(xy)
		for b := 0; b < batch; b++ {
			coords = append(coords, pts...)
			for _, pt := range pr.Points {
				labels = append(labels, int32(pt.Label))
			}
			if len(pr.Boxes) > 0 {
				box := pr.Boxes[b]
				coords = append(coords, p.boxToModel(box)...)
				labels = append(labels, LabelBoxTopLeft, LabelBoxBotRight)
			} else {
				coords = append(coords, 0, 0)
				labels = append(labels, LabelPadding)
			}
		}
		in.Coords = tensors.FromFlatDataAndDimensions(coords, batch, n, 2)
		in.Labels = tensors.FromFlatDataAndDimensions(labels, batch, n)
	}
	if pr.MaskInput != nil {
		s := cfg.LowResSize()
		mask := make([]float32, 0, batch*s*s)
		for b := 0; b < batch; b++ {
			mask = append(mask, pr.MaskInput...)
		}
		in.Mask = tensors.FromFlatDataAndDimensions(mask, batch, 1, s, s)
	}
	return in, nil
}

// Finish turns the decoder's outputs for all mask tokens (masks [B, M, 4g,
// 4g], iou [B, M]) into a Result: it picks the tokens the official
// predictor returns (SAM: 1..M-1 with Multimask, else 0; SAM-Med2D: the best
// of 1..M-1 by predicted IoU, else 0) and post-processes them to the
// original image size.
func (p *Predictor) Finish(pr Prompt, masks, iou *tensors.Tensor) (*Result, error) {
	start := time.Now()
	cfg := p.Model.Config
	lowAll, err := tensors.CopyFlatData[float32](masks) // [B, M, s, s]
	if err != nil {
		return nil, err
	}
	iouAll, err := tensors.CopyFlatData[float32](iou) // [B, M]
	if err != nil {
		return nil, err
	}
	batch := masks.Shape().Dim(0)
	mTok := cfg.NumMaskTokens()
	s := cfg.LowResSize()
	pick := make([][]int, batch)
	for b := range pick {
		switch {
		case !pr.Multimask:
			pick[b] = []int{0}
		case cfg.Family == FamilySAMMed2D:
			pick[b] = []int{1 + transform.ArgmaxFirst(iouAll[b*mTok+1:(b+1)*mTok])}
		default:
			for t := 1; t < mTok; t++ {
				pick[b] = append(pick[b], t)
			}
		}
	}
	c := len(pick[0])
	low := transform.Masks{B: batch, C: c, H: s, W: s, Data: make([]float32, 0, batch*c*s*s)}
	res := &Result{B: batch, C: c, H: p.origH, W: p.origW, LowResSize: s}
	for b, toks := range pick {
		for _, t := range toks {
			off := (b*mTok + t) * s * s
			low.Data = append(low.Data, lowAll[off:off+s*s]...)
			res.IoU = append(res.IoU, iouAll[b*mTok+t])
		}
	}
	res.LowRes = low.Data
	up, err := p.Upscale(low)
	if err != nil {
		return nil, err
	}
	res.Masks = up.Data
	res.Post = time.Since(start)
	return res, nil
}

// Upscale post-processes low-resolution logits [B, C, 4g, 4g] to the
// original image size as the family's predictor does.
func (p *Predictor) Upscale(low transform.Masks) (transform.Masks, error) {
	cfg := p.Model.Config
	var up transform.Masks
	var err error
	switch cfg.Family {
	case FamilySAMMed2D:
		up, err = transform.PostprocessMasksSAMMed2D(low, cfg.ImageEncoder.ImgSize, p.origH, p.origW)
	case FamilyLiteMedSAM:
		up, err = transform.PostprocessMasksLiteMedSAM(low, p.inH, p.inW, p.origH, p.origW)
	default:
		up, err = transform.PostprocessMasksSAM(low, cfg.ImageEncoder.ImgSize, p.inH, p.inW, p.origH, p.origW)
	}
	if err != nil {
		return transform.Masks{}, fmt.Errorf("post-process: %w", err)
	}
	return up, nil
}

// pointsToModel maps (x, y) pairs from original-image pixels to the model
// input frame: SAM's / SAM-Med2D's apply_coords, or LiteMedSAM's
// x * S / max(H, W).
func (p *Predictor) pointsToModel(xy []float64) []float32 {
	if p.Model.Config.Family == FamilyLiteMedSAM {
		return transform.LiteMedSAMPoints(xy, p.origH, p.origW, p.Model.Config.ImageEncoder.ImgSize)
	}
	return p.scale.Apply(xy)
}

// boxToModel maps a box to the model input frame: apply_boxes, or
// LiteMedSAM's resize_box_to_256 (integer coordinates).
func (p *Predictor) boxToModel(b Box) []float32 {
	if p.Model.Config.Family == FamilyLiteMedSAM {
		v := transform.LiteMedSAMBox(b, p.origH, p.origW, p.Model.Config.ImageEncoder.ImgSize)
		return v[:]
	}
	return p.scale.Apply(b[:])
}
