package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
)

// Point is a click in image pixels (x right, y down; for a volume, in the
// slice as GET /v1/images/{id}/render shows it). Label is 1 for a positive
// point (the default) and 0 for a negative one.
type Point struct {
	X     float64 `json:"x"`
	Y     float64 `json:"y"`
	Label *int    `json:"label,omitempty"`
}

// PredictRequest is the body of POST /v1/images/{id}/predict.
type PredictRequest struct {
	// Points are clicks; they are shared by every box.
	Points []Point `json:"points,omitempty"`
	// Boxes are [x0, y0, x1, y1] in pixels; each gives one prediction.
	Boxes [][]float64 `json:"boxes,omitempty"`
	// MaskInput is a previous prediction's low_res_logits (base64
	// little-endian float32, low_res_size² values), refining it.
	MaskInput string `json:"mask_input,omitempty"`
	// Multimask asks for 3 candidate masks per prompt (SAM).
	Multimask bool `json:"multimask,omitempty"`
	// Slice ("axial:12") is required for a volume; Window overrides the
	// volume's window for this request.
	Slice  string `json:"slice,omitempty"`
	Window string `json:"window,omitempty"`
	// Format of the masks: "png" (default; base64 8-bit PNG, 255 inside) or
	// "rle" (COCO uncompressed RLE, column-major; see RLE).
	Format string `json:"format,omitempty"`
	// ReturnLowRes adds each mask's low-resolution logits, to send back as
	// mask_input.
	ReturnLowRes bool `json:"return_low_res,omitempty"`
	// Modality ("CT", "MR", ...) turns on the modality prior: the class is
	// chosen among the classes the model's training data had in it.
	Modality string `json:"modality,omitempty"`
}

// Mask is one predicted binary mask in the requested format.
type Mask struct {
	PNG  string `json:"png,omitempty"`
	RLE  *RLE   `json:"rle,omitempty"`
	Area int    `json:"area"` // pixels inside
}

// MaskResult is one candidate mask of a prompt.
type MaskResult struct {
	Mask
	// IoU is the model's predicted IoU of the mask.
	IoU float32 `json:"iou"`
	// LowResLogits (with return_low_res) are the decoder's logits
	// (base64 little-endian float32, low_res_size²).
	LowResLogits string `json:"low_res_logits,omitempty"`
}

// PromptResult is the prediction for one prompt (one box, or the points).
type PromptResult struct {
	Masks []MaskResult `json:"masks"`
	// Best is the index of the mask with the highest predicted IoU.
	Best int `json:"best"`
	// Class, ClassIndex and Confidence (softmax probability) are set when
	// the model predicts classes; ClassProbs gives every class.
	Class      string             `json:"class,omitempty"`
	ClassIndex *int               `json:"class_index,omitempty"`
	Confidence *float32           `json:"confidence,omitempty"`
	ClassProbs map[string]float32 `json:"class_probs,omitempty"`
	// Semantic is the semantic decoder's mask, when the model has one.
	Semantic *Mask `json:"semantic_mask,omitempty"`
}

// Timings are a predict request's times in milliseconds.
type Timings struct {
	// Embedding is "cached" (found in the cache), "computed" (by this
	// request) or "shared" (computed by a concurrent request it waited for).
	Embedding string  `json:"embedding"`
	Encode    float64 `json:"encode"` // image encoder, when not cached
	Wait      float64 `json:"embedding_wait"`
	Decode    float64 `json:"decode"`
	Post      float64 `json:"postprocess"`
	Output    float64 `json:"output"`
	Total     float64 `json:"total"`
}

// PredictResponse is the answer of POST /v1/images/{id}/predict.
type PredictResponse struct {
	ImageID    string         `json:"image_id"`
	Slice      string         `json:"slice,omitempty"`
	Window     string         `json:"window,omitempty"`
	Width      int            `json:"width"`
	Height     int            `json:"height"`
	Format     string         `json:"format"`
	LowResSize int            `json:"low_res_size"`
	Prompts    []PromptResult `json:"prompts"`
	TimingsMS  Timings        `json:"timings_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// newPredictor returns a predictor without an image on the served model.
func (s *Server) newPredictor() *segsam.Predictor {
	if s.model.Model != nil {
		return segsam.NewPredictor(s.model.Model)
	}
	return segsam.NewSAMPredictor(s.model.SAM.Model)
}

// embedding returns the embedding of a view, from the cache or computed
// once for all concurrent requests.
func (s *Server) embedding(ctx context.Context, v view) (*embedding, cacheOutcome, error) {
	return s.cache.Get(ctx, v.key(), func() (*embedding, error) {
		s.encodes <- struct{}{}
		defer func() { <-s.encodes }()
		img, err := v.rgb()
		if err != nil {
			return nil, err
		}
		p := s.newPredictor()
		if err := p.SAM.SetImage(img); err != nil {
			return nil, fmt.Errorf("image encoder: %w", err)
		}
		s.metrics.encode.Observe(p.SAM.Encode.Seconds())
		return &embedding{tensor: p.SAM.Embedding(), h: img.H, w: img.W, encode: p.SAM.Encode}, nil
	})
}

// precompute starts computing an uploaded image's embedding in the
// background: the image itself, or a volume's middle axial slice.
func (s *Server) precompute(img *storedImage) {
	slice := ""
	if img.Kind == kindVolume {
		slice = medimg.SliceSpec{Axis: medimg.Axial, Index: img.Volume.NumSlices(medimg.Axial) / 2}.String()
	}
	v, err := s.resolveView(img, slice, "")
	if err != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if s.bg.Err() != nil {
			return
		}
		if _, _, err := s.embedding(s.bg, v); err != nil && s.bg.Err() == nil {
			s.cfg.Logger.Printf("segsam serve: embedding of %s: %v", img.ID, err)
		}
	}()
}

// prompt checks a request's prompt against the view and the model.
func (s *Server) prompt(req *PredictRequest, v view) (sam.Prompt, error) {
	pr := sam.Prompt{Multimask: req.Multimask}
	if len(req.Points) > s.cfg.MaxPoints {
		return pr, httpErrorf(http.StatusBadRequest, "%d points: at most %d per request", len(req.Points), s.cfg.MaxPoints)
	}
	if len(req.Boxes) > s.cfg.MaxBoxes {
		return pr, httpErrorf(http.StatusBadRequest, "%d boxes: at most %d per request", len(req.Boxes), s.cfg.MaxBoxes)
	}
	for _, p := range req.Points {
		label := sam.LabelPositive
		if p.Label != nil {
			label = *p.Label
		}
		pr.Points = append(pr.Points, sam.Point{X: p.X, Y: p.Y, Label: label})
	}
	for i, b := range req.Boxes {
		if len(b) != 4 {
			return pr, httpErrorf(http.StatusBadRequest, "box %d has %d numbers: want [x0, y0, x1, y1]", i, len(b))
		}
		pr.Boxes = append(pr.Boxes, sam.Box{b[0], b[1], b[2], b[3]})
	}
	if req.MaskInput != "" {
		m, err := decodeFloats(req.MaskInput)
		if err != nil {
			return pr, httpErrorf(http.StatusBadRequest, "mask_input: %v", err)
		}
		pr.MaskInput = m
	}
	if s.model.Model != nil && len(pr.Points) == 0 && len(pr.Boxes) == 0 {
		return pr, httpErrorf(http.StatusBadRequest, "empty prompt: give at least a point or a box (this SEG-SAM model does not take a mask input alone)")
	}
	if err := s.model.SAM.Model.ValidatePrompt(pr, v.h, v.w); err != nil {
		return pr, httpErrorf(http.StatusBadRequest, "%v", err)
	}
	return pr, nil
}

// maskFormat checks a request's mask format: "png" (the default) or "rle".
func maskFormat(f string) (string, error) {
	switch f {
	case "":
		return "png", nil
	case "png", "rle":
		return f, nil
	}
	return "", httpErrorf(http.StatusBadRequest, "format %q: want \"png\" or \"rle\"", f)
}

func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	img, err := s.image(r)
	if err != nil {
		return err
	}
	var req PredictRequest
	if err := decodeJSON(w, r, s.cfg.MaxJSONBytes, &req); err != nil {
		return err
	}
	if req.Format, err = maskFormat(req.Format); err != nil {
		return err
	}
	v, err := s.resolveView(img, req.Slice, req.Window)
	if err != nil {
		return err
	}
	pr, err := s.prompt(&req, v)
	if err != nil {
		return err
	}
	waitStart := time.Now()
	emb, outcome, err := s.embedding(r.Context(), v)
	if err != nil {
		return err
	}
	wait := time.Since(waitStart)
	p := s.newPredictor()
	if err := p.SAM.SetEmbedding(emb.tensor, emb.h, emb.w); err != nil {
		return err
	}
	predStart := time.Now()
	pred, err := p.PredictIn(pr, req.Modality)
	if err != nil {
		return fmt.Errorf("predict: %w", err)
	}
	s.metrics.predict.Observe(time.Since(predStart).Seconds())
	outStart := time.Now()
	resp := PredictResponse{
		ImageID: img.ID, Width: pred.W, Height: pred.H, Format: req.Format, LowResSize: pred.LowResSize,
		TimingsMS: Timings{Embedding: outcome.String(), Wait: ms(wait), Decode: ms(pred.Decode), Post: ms(pred.Post)},
	}
	if outcome == outcomeHit {
		resp.TimingsMS.Embedding = "cached"
	} else {
		resp.TimingsMS.Encode = ms(emb.encode)
	}
	if v.slice != nil {
		resp.Slice, resp.Window = v.slice.String(), v.window.String()
	}
	if resp.Prompts, err = promptResults(pred, req, s.model.Classes()); err != nil {
		return err
	}
	resp.TimingsMS.Output = ms(time.Since(outStart))
	resp.TimingsMS.Total = ms(time.Since(start))
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// encodeMask encodes a row-major mask in the requested format.
func encodeMask(mask []bool, h, w int, format string) (Mask, error) {
	m := Mask{Area: countOn(mask)}
	if format == "rle" {
		rle := EncodeRLE(mask, h, w)
		m.RLE = &rle
		return m, nil
	}
	data, err := maskPNG(mask, h, w)
	if err != nil {
		return m, err
	}
	m.PNG = base64.StdEncoding.EncodeToString(data)
	return m, nil
}

func promptResults(pred *segsam.Prediction, req PredictRequest, classes []string) ([]PromptResult, error) {
	out := make([]PromptResult, pred.B)
	s := pred.LowResSize
	for b := range out {
		pr := &out[b]
		pr.Best = pred.Best(b)
		for c := 0; c < pred.C; c++ {
			m, err := encodeMask(pred.Mask(b, c), pred.H, pred.W, req.Format)
			if err != nil {
				return nil, err
			}
			mr := MaskResult{Mask: m, IoU: pred.IoU[b*pred.C+c]}
			if req.ReturnLowRes {
				i := b*pred.C + c
				mr.LowResLogits = encodeFloats(pred.LowRes[i*s*s : (i+1)*s*s])
			}
			pr.Masks = append(pr.Masks, mr)
		}
		if b < len(pred.Class) {
			pr.Class = pred.Class[b]
			idx, conf := pred.ClassIndex[b], pred.Confidence[b]
			pr.ClassIndex, pr.Confidence = &idx, &conf
			pr.ClassProbs = map[string]float32{}
			for k, p := range pred.ClassProbs[b] {
				if k < len(classes) {
					pr.ClassProbs[classes[k]] = p
				}
			}
		}
		if pred.Semantic != nil {
			m, err := encodeMask(pred.SemanticMask(b), pred.H, pred.W, req.Format)
			if err != nil {
				return nil, err
			}
			pr.Semantic = &m
		}
	}
	return out, nil
}
