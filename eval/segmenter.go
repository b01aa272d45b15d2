package eval

import (
	"context"
	"fmt"
	"math"
)

// Prediction is a model's answer to one prompt.
type Prediction struct {
	// Mask is the binary mask of the semantic-agnostic decoder (Dec_sag),
	// h×w row-major.
	Mask []bool
	// IoUPred is the model's predicted IoU of Mask.
	IoUPred float32
	// Class is the predicted class of the prompted object; "" when the
	// model has no classes.
	Class string
	// Confidence is the probability of Class.
	Confidence float32
	// SemanticMask is the semantic-aware decoder's (Dec_saw) mask of the
	// prompted object, h×w row-major; nil when the model has none, in which
	// case Mask stands in for the semantic DSC.
	SemanticMask []bool
	// LowRes is the model's low-resolution logits of Mask, passed back as
	// Prompt.MaskInput in the next interactive round (Refiners only).
	LowRes []float32
}

// Segmenter is a promptable segmentation model under evaluation.
type Segmenter interface {
	// Name identifies the method in tables and file names.
	Name() string
	// Classes returns the model's class names, or nil for binary-only
	// models (then only DSC is reported).
	Classes() []string
	// Segment answers all prompts of one image (h rows, w columns) in one
	// call, so that the image is encoded once; it returns one Prediction
	// per prompt, in order.
	Segment(ctx context.Context, imagePath string, h, w int, prompts []Prompt) ([]Prediction, error)
}

// IoUPredictor may be implemented by a Segmenter to say whether its
// Prediction.IoUPred is meaningful. A Segmenter that does not implement it is
// assumed to predict IoU (as SAM does).
type IoUPredictor interface {
	PredictsIoU() bool
}

func predictsIoU(s Segmenter) bool {
	if p, ok := s.(IoUPredictor); ok {
		return p.PredictsIoU()
	}
	return true
}

// Baseline shapes.
const (
	ShapeBox     = "box"
	ShapeEllipse = "ellipse"
)

// DefaultPointRadius is the default Baseline.PointRadius: a tenth of the
// image's shorter side.
const DefaultPointRadius = 0.1

// Baseline is a trivial "no model" Segmenter that answers each prompt with a
// fixed shape, so that a model's numbers can be judged against it:
//
//   - box prompt, ShapeBox: the filled box (every pixel whose centre lies in
//     [x0, x1+1) × [y0, y1+1), i.e. exactly the box's pixels);
//   - box prompt, ShapeEllipse: the ellipse inscribed in that box (pixel
//     centres inside the ellipse through the box's edge midpoints);
//   - point prompt: the same shapes built on the square of half-side
//     r = PointRadius × min(h, w) centred on the clicked pixel's centre —
//     a filled square for ShapeBox, a disc of radius r for ShapeEllipse.
//
// Baselines have no classes and make no IoU prediction.
type Baseline struct {
	// Shape is ShapeBox or ShapeEllipse.
	Shape string
	// PointRadius is r as a fraction of the image's shorter side;
	// 0 means DefaultPointRadius.
	PointRadius float64
}

// NewBaseline returns the baseline of the given shape ("box" or "ellipse").
func NewBaseline(shape string) (*Baseline, error) {
	switch shape {
	case ShapeBox, ShapeEllipse:
		return &Baseline{Shape: shape}, nil
	}
	return nil, fmt.Errorf("baseline %q: want %s or %s", shape, ShapeBox, ShapeEllipse)
}

// Name returns "baseline-box" or "baseline-ellipse".
func (b *Baseline) Name() string { return "baseline-" + b.Shape }

// Classes returns nil: baselines are binary-only.
func (b *Baseline) Classes() []string { return nil }

// PredictsIoU returns false.
func (b *Baseline) PredictsIoU() bool { return false }

// Segment draws the baseline shape for every prompt; the image is not read.
func (b *Baseline) Segment(ctx context.Context, imagePath string, h, w int, prompts []Prompt) ([]Prediction, error) {
	if h <= 0 || w <= 0 {
		return nil, fmt.Errorf("%s: image %s: bad size %dx%d", b.Name(), imagePath, w, h)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]Prediction, len(prompts))
	for i, p := range prompts {
		var x0, y0, x1, y1 float64 // continuous extent: [x0, x1) × [y0, y1)
		switch p.Kind {
		case KindBox:
			x0, y0, x1, y1 = p.Box[0], p.Box[1], p.Box[2]+1, p.Box[3]+1
		case KindPoint:
			rf := b.PointRadius
			if rf <= 0 {
				rf = DefaultPointRadius
			}
			r := rf * float64(min(h, w))
			cx, cy := p.Point[0]+0.5, p.Point[1]+0.5
			x0, y0, x1, y1 = cx-r, cy-r, cx+r, cy+r
		default:
			return nil, fmt.Errorf("%s: image %s: prompt %d: unknown kind %q", b.Name(), imagePath, i, p.Kind)
		}
		out[i] = Prediction{Mask: drawShape(b.Shape, h, w, x0, y0, x1, y1)}
	}
	return out, nil
}

// drawShape fills the pixels whose centres lie in the rectangle
// [x0, x1) × [y0, y1) (ShapeBox) or in the ellipse inscribed in it.
func drawShape(shape string, h, w int, x0, y0, x1, y1 float64) []bool {
	m := make([]bool, h*w)
	cx, cy := (x0+x1)/2, (y0+y1)/2
	a, b := (x1-x0)/2, (y1-y0)/2
	if a <= 0 || b <= 0 {
		return m
	}
	xs, xe := max(0, int(math.Floor(x0))), min(w, int(math.Ceil(x1)))
	ys, ye := max(0, int(math.Floor(y0))), min(h, int(math.Ceil(y1)))
	for y := ys; y < ye; y++ {
		py := float64(y) + 0.5
		if py < y0 || py >= y1 {
			continue
		}
		dy := (py - cy) / b
		for x := xs; x < xe; x++ {
			px := float64(x) + 0.5
			if px < x0 || px >= x1 {
				continue
			}
			if shape == ShapeEllipse {
				dx := (px - cx) / a
				if dx*dx+dy*dy > 1 {
					continue
				}
			}
			m[y*w+x] = true
		}
	}
	return m
}
