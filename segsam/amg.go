package segsam

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/transform"
)

// Automatic mask generation ("label everything"): SAM's automatic mask
// generator (segment_anything/automatic_mask_generator.py) run on a
// SEG-SAM model. A grid of single positive points prompts the decoders in
// batches on one image embedding; masks are kept by predicted IoU and
// stability score, de-duplicated by box non-maximum suppression, and each
// kept mask is named by Dec_saw's class (softmax over the segmentation-
// oriented token's logits). The CO tokens' presence scores can drop masks of
// classes the model thinks absent. labelmap.go turns the objects into one
// label map; volume.go runs it slice by slice over a volume.

// AMGOptions are the automatic mask generator's settings, named after
// SamAutomaticMaskGenerator's arguments.
type AMGOptions struct {
	// PointsPerSide: the grid has PointsPerSide² points on the whole image.
	PointsPerSide int
	// PointsPerBatch points go through the decoders at once.
	PointsPerBatch int
	// PredIoUThresh keeps masks whose predicted IoU is above it (0: keep all).
	PredIoUThresh float64
	// StabilityScoreThresh keeps masks whose stability score is at least
	// it (0: keep all); StabilityScoreOffset is the logit offset of the
	// score (see StabilityScore).
	StabilityScoreThresh, StabilityScoreOffset float64
	// BoxNMSThresh is the box IoU above which the lower-scored of two masks
	// of one crop is dropped.
	BoxNMSThresh float64
	// CropNLayers adds layers of image crops (layer i: 2^i × 2^i crops, each
	// encoded on its own, with PointsPerSide / CropNPointsDownscaleFactor^i
	// points per side); CropOverlapRatio is their overlap and CropNMSThresh
	// the box IoU for the NMS across crops.
	CropNLayers                int
	CropNMSThresh              float64
	CropOverlapRatio           float64
	CropNPointsDownscaleFactor int
	// Presence drops masks whose class has a presence score (CO tokens)
	// below PresenceThresh. The built-in model's presence head is weak, so
	// it is off by default.
	Presence       bool
	PresenceThresh float64
	// Classes, when not empty, keeps only masks named one of these classes
	// (names of the model's vocabulary).
	Classes []string
}

// DefaultAMGOptions are SamAutomaticMaskGenerator's defaults (32 points per
// side, 64 per batch, IoU 0.88, stability 0.95 with offset 1, NMS 0.7, no
// crops) with the presence filter off.
func DefaultAMGOptions() AMGOptions {
	return AMGOptions{
		PointsPerSide: 32, PointsPerBatch: 64,
		PredIoUThresh: 0.88, StabilityScoreThresh: 0.95, StabilityScoreOffset: 1,
		BoxNMSThresh: 0.7, CropNMSThresh: 0.7, CropOverlapRatio: 512.0 / 1500, CropNPointsDownscaleFactor: 1,
		PresenceThresh: 0.5,
	}
}

// Validate checks the options.
func (o AMGOptions) Validate() error {
	switch {
	case o.PointsPerSide < 1 || o.PointsPerSide > 256:
		return fmt.Errorf("points per side %d: want 1..256", o.PointsPerSide)
	case o.PointsPerBatch < 1 || o.PointsPerBatch > 4096:
		return fmt.Errorf("points per batch %d: want 1..4096", o.PointsPerBatch)
	case o.PredIoUThresh < 0 || o.PredIoUThresh >= 1:
		return fmt.Errorf("predicted-IoU threshold %g: want [0, 1)", o.PredIoUThresh)
	case o.StabilityScoreThresh < 0 || o.StabilityScoreThresh > 1:
		return fmt.Errorf("stability-score threshold %g: want [0, 1]", o.StabilityScoreThresh)
	case o.StabilityScoreOffset < 0 || math.IsNaN(o.StabilityScoreOffset):
		return fmt.Errorf("stability-score offset %g: want >= 0", o.StabilityScoreOffset)
	case o.BoxNMSThresh <= 0 || o.BoxNMSThresh > 1:
		return fmt.Errorf("box NMS threshold %g: want (0, 1]", o.BoxNMSThresh)
	case o.CropNLayers < 0 || o.CropNLayers > 3:
		return fmt.Errorf("crop layers %d: want 0..3", o.CropNLayers)
	case o.CropNLayers > 0 && (o.CropNMSThresh <= 0 || o.CropNMSThresh > 1):
		return fmt.Errorf("crop NMS threshold %g: want (0, 1]", o.CropNMSThresh)
	case o.CropNLayers > 0 && (o.CropOverlapRatio < 0 || o.CropOverlapRatio >= 1):
		return fmt.Errorf("crop overlap ratio %g: want [0, 1)", o.CropOverlapRatio)
	case o.CropNLayers > 0 && o.CropNPointsDownscaleFactor < 1:
		return fmt.Errorf("crop points downscale factor %d: want >= 1", o.CropNPointsDownscaleFactor)
	case o.Presence && (o.PresenceThresh < 0 || o.PresenceThresh > 1):
		return fmt.Errorf("presence threshold %g: want [0, 1]", o.PresenceThresh)
	}
	return nil
}

// Object is one mask the generator kept, in original-image pixels.
type Object struct {
	// Box is the mask's tight box x0, y0, x1, y1 (x1, y1 inclusive, as
	// SAM's batched_mask_to_box).
	Box [4]int
	// Mask is the mask inside Box, row-major ((x1-x0+1) × (y1-y0+1)).
	Mask []bool
	// Area is the number of pixels in the mask.
	Area int
	// PredIoU and Stability are the decoder's predicted IoU and the
	// stability score.
	PredIoU, Stability float32
	// Point is the grid point that prompted the mask; Crop the crop it was
	// predicted in.
	Point sam.Point
	Crop  sam.CropBox
	// ClassIndex (-1 for a plain SAM), Class and Confidence: Dec_saw's most
	// probable class and its softmax probability; Presence the CO tokens'
	// presence score of that class (0 without CO tokens).
	ClassIndex int
	Class      string
	Confidence float32
	Presence   float32
}

// Score ranks objects: the predicted IoU, as SAM's NMS ranks masks.
func (o *Object) Score() float32 { return o.PredIoU }

// At reports whether pixel (x, y) of the image is in the mask.
func (o *Object) At(x, y int) bool {
	if x < o.Box[0] || y < o.Box[1] || x > o.Box[2] || y > o.Box[3] {
		return false
	}
	return o.Mask[(y-o.Box[1])*(o.Box[2]-o.Box[0]+1)+x-o.Box[0]]
}

// FullMask returns the mask on the whole h×w image, row-major.
func (o *Object) FullMask(h, w int) []bool {
	out := make([]bool, h*w)
	bw := o.Box[2] - o.Box[0] + 1
	for y := o.Box[1]; y <= o.Box[3]; y++ {
		for x := o.Box[0]; x <= o.Box[2]; x++ {
			if o.Mask[(y-o.Box[1])*bw+x-o.Box[0]] {
				out[y*w+x] = true
			}
		}
	}
	return out
}

// Generated is what Generate finds on one image.
type Generated struct {
	H, W    int
	Objects []Object
	// Presence are the CO tokens' K presence scores of the image (nil
	// without CO tokens).
	Presence []float32
	// Candidates counts the masks the decoders gave before any filter.
	Candidates int
}

// Automatic labels every object of an image or a volume with a model. It is
// safe for concurrent use: each call uses its own predictor.
type Automatic struct {
	// Model is the SEG-SAM model (nil for a plain SAM: masks get no class).
	Model *Model
	// SAM is the SAM part (Model.SAM for a SEG-SAM model).
	SAM  *sam.Model
	Opts AMGOptions
}

// ErrUnknownClass is returned for a class filter naming a class outside
// the model's vocabulary.
var ErrUnknownClass = errors.New("unknown class")

// NewAutomatic returns the automatic segmenter of a loaded predictor's model.
func NewAutomatic(p *Predictor, opts AMGOptions) (*Automatic, error) {
	if p == nil || p.SAM == nil || p.SAM.Model == nil {
		return nil, errors.New("automatic segmentation: no model")
	}
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("automatic segmentation: %w", err)
	}
	a := &Automatic{Model: p.Model, SAM: p.SAM.Model, Opts: opts}
	if len(opts.Classes) > 0 {
		vocab := a.Classes()
		if vocab == nil {
			return nil, fmt.Errorf("a class filter needs a SEG-SAM model with classes; %s predicts masks only", a.SAM.Config.Name)
		}
		var bad []string
		for _, c := range opts.Classes {
			if !slices.Contains(vocab, c) {
				bad = append(bad, c)
			}
		}
		if len(bad) > 0 {
			return nil, fmt.Errorf("%w %s: the model's %d classes are %s", ErrUnknownClass, strings.Join(bad, ", "), len(vocab), strings.Join(vocab, ", "))
		}
	}
	if opts.Presence && (a.Model == nil || !a.Model.Config.Parts.COTokens) {
		return nil, errors.New("the presence filter needs a model with CO tokens")
	}
	return a, nil
}

// Classes is the model's vocabulary (nil for a plain SAM).
func (a *Automatic) Classes() []string {
	if a.Model == nil || !a.Model.Config.HasClasses() {
		return nil
	}
	return a.Model.Config.Classes
}

func (a *Automatic) newPredictor() *Predictor {
	if a.Model != nil {
		return NewPredictor(a.Model)
	}
	return NewSAMPredictor(a.SAM)
}

// Generate encodes an image and finds its objects.
func (a *Automatic) Generate(ctx context.Context, img transform.Image) (*Generated, error) {
	p := a.newPredictor()
	if err := p.SetImage(img); err != nil {
		return nil, err
	}
	return a.GenerateEmbedded(ctx, p, img)
}

// GenerateEmbedded finds the objects of img with p, whose current embedding
// must be img's (e.g. from a cache); crops (CropNLayers > 0) are encoded
// with a predictor of their own.
func (a *Automatic) GenerateEmbedded(ctx context.Context, p *Predictor, img transform.Image) (*Generated, error) {
	if h, w := p.SAM.Size(); h != img.H || w != img.W || p.SAM.Embedding() == nil {
		return nil, fmt.Errorf("automatic segmentation: the predictor's embedding is not of this %dx%d image", img.W, img.H)
	}
	o := a.Opts
	boxes, layers := sam.GenerateCropBoxes(img.H, img.W, o.CropNLayers, o.CropOverlapRatio)
	grids := sam.BuildAllLayerPointGrids(o.PointsPerSide, o.CropNLayers, max(1, o.CropNPointsDownscaleFactor))
	out := &Generated{H: img.H, W: img.W}
	var all []Object
	for i, crop := range boxes {
		cp := p
		if i > 0 {
			cimg, err := cropImage(img, crop)
			if err != nil {
				return nil, err
			}
			cp = a.newPredictor()
			if err := cp.SetImage(cimg); err != nil {
				return nil, fmt.Errorf("crop %v: %w", crop, err)
			}
		}
		objs, presence, n, err := a.processCrop(ctx, cp, crop, grids[layers[i]], img.H, img.W)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			out.Presence = presence
		}
		out.Candidates += n
		all = append(all, objs...)
	}
	if len(boxes) > 1 {
		// Prefer masks from smaller crops (score 1/crop area), as SAM does.
		all = nms(all, o.CropNMSThresh, func(ob *Object) float64 {
			c := ob.Crop
			return 1 / float64(max(1, (c[2]-c[0])*(c[3]-c[1])))
		})
	}
	var keep []Object
	for _, ob := range all {
		if o.Presence && ob.ClassIndex >= 0 && float64(ob.Presence) < o.PresenceThresh {
			continue
		}
		if len(o.Classes) > 0 && !slices.Contains(o.Classes, ob.Class) {
			continue
		}
		keep = append(keep, ob)
	}
	out.Objects = keep
	return out, nil
}

// cropImage cuts crop out of img.
func cropImage(img transform.Image, c sam.CropBox) (transform.Image, error) {
	w, h := c[2]-c[0], c[3]-c[1]
	out, err := transform.NewImage(h, w)
	if err != nil {
		return out, err
	}
	for y := 0; y < h; y++ {
		copy(out.Pix[y*w*3:(y+1)*w*3], img.Pix[((c[1]+y)*img.W+c[0])*3:((c[1]+y)*img.W+c[0]+w)*3])
	}
	return out, nil
}

// maxBatchFloats bounds the up-scaled logits of one batch (B × C × H × W
// float32 values): 64M values, 256 MB.
const maxBatchFloats = 64 << 20

// processCrop runs the point grid of one crop (the predictor holds the
// crop's embedding) and returns its kept objects in image coordinates.
func (a *Automatic) processCrop(ctx context.Context, p *Predictor, crop sam.CropBox, grid [][2]float64, imgH, imgW int) ([]Object, []float32, int, error) {
	o := a.Opts
	cw, ch := crop[2]-crop[0], crop[3]-crop[1]
	points := make([]sam.Point, len(grid))
	for i, g := range grid {
		points[i] = sam.Point{X: g[0] * float64(cw), Y: g[1] * float64(ch), Label: sam.LabelPositive}
	}
	masksPerPoint := a.SAM.Config.NumMaskTokens() - 1
	if a.SAM.Config.Family == sam.FamilySAMMed2D {
		masksPerPoint = 1
	}
	batch := min(o.PointsPerBatch, max(1, maxBatchFloats/(max(1, masksPerPoint)*cw*ch)))
	var objs []Object
	var presence []float32
	candidates := 0
	for start := 0; start < len(points); start += batch {
		if err := ctx.Err(); err != nil {
			return nil, nil, 0, err
		}
		n := min(batch, len(points)-start)
		pts := make([]sam.Point, batch)
		copy(pts, points[start:start+n])
		for i := n; i < batch; i++ { // pad the last batch: one compiled graph per batch size
			pts[i] = points[start+n-1]
		}
		res, classes, pres, err := a.decodePoints(p, pts)
		if err != nil {
			return nil, nil, 0, err
		}
		if presence == nil && pres != nil {
			presence = pres[0]
		}
		for b := 0; b < n; b++ {
			for c := 0; c < res.C; c++ {
				candidates++
				iou := res.IoU[b*res.C+c]
				if o.PredIoUThresh > 0 && float64(iou) <= o.PredIoUThresh {
					continue
				}
				plane := res.Masks[(b*res.C+c)*ch*cw : (b*res.C+c+1)*ch*cw]
				stab := StabilityScore(plane, float32(a.SAM.Config.MaskThreshold), float32(o.StabilityScoreOffset))
				if o.StabilityScoreThresh > 0 && float64(stab) < o.StabilityScoreThresh {
					continue
				}
				ob, ok := objectFromLogits(plane, cw, ch, float32(a.SAM.Config.MaskThreshold))
				if !ok {
					continue
				}
				if crop != (sam.CropBox{0, 0, imgW, imgH}) && nearCropEdge(ob.Box, crop, imgW, imgH) {
					continue
				}
				ob.PredIoU, ob.Stability, ob.Crop = iou, stab, crop
				ob.Point = sam.Point{X: pts[b].X + float64(crop[0]), Y: pts[b].Y + float64(crop[1]), Label: sam.LabelPositive}
				ob.Box = [4]int{ob.Box[0] + crop[0], ob.Box[1] + crop[1], ob.Box[2] + crop[0], ob.Box[3] + crop[1]}
				ob.ClassIndex = -1
				if classes != nil {
					ob.ClassIndex, ob.Confidence = classes[b].index, classes[b].conf
					ob.Class = a.Model.Config.Classes[ob.ClassIndex]
					if pres != nil {
						ob.Presence = pres[b][ob.ClassIndex]
					}
				}
				objs = append(objs, ob)
			}
		}
	}
	objs = nms(objs, o.BoxNMSThresh, func(ob *Object) float64 { return float64(ob.PredIoU) })
	return objs, presence, candidates, nil
}

type classPick struct {
	index int
	conf  float32
}

// decodePoints runs one batch of single-point prompts and returns the
// masks at the crop's size (SAM: the 3 multimask outputs; SAM-Med2D: the
// best of 3, as their predictors' multimask output), and for SEG-SAM each
// prompt's class and the presence scores.
func (a *Automatic) decodePoints(p *Predictor, pts []sam.Point) (*sam.Result, []classPick, [][]float32, error) {
	in, err := p.SAM.PointBatchInputs(pts)
	if err != nil {
		return nil, nil, nil, err
	}
	pr := sam.Prompt{Multimask: true}
	if a.Model == nil {
		masks, iou, err := a.SAM.Decode(in)
		if err != nil {
			return nil, nil, nil, err
		}
		res, err := p.SAM.Finish(pr, masks, iou)
		return res, nil, nil, err
	}
	out, err := a.Model.Infer(in)
	if err != nil {
		return nil, nil, nil, err
	}
	res, err := p.SAM.Finish(pr, out.Binary, out.IoU)
	if err != nil {
		return nil, nil, nil, err
	}
	k := a.Model.Config.NumClasses()
	var classes []classPick
	if out.ClassLogits != nil {
		logits, err := tensors.CopyFlatData[float32](out.ClassLogits) // [B, K]
		if err != nil {
			return nil, nil, nil, err
		}
		for b := range pts {
			probs := softmax(logits[b*k : (b+1)*k])
			best := transform.ArgmaxFirst(probs)
			classes = append(classes, classPick{best, probs[best]})
		}
	}
	var presence [][]float32
	if out.Presence != nil {
		logits, err := tensors.CopyFlatData[float32](out.Presence) // [B, K]
		if err != nil {
			return nil, nil, nil, err
		}
		for b := range pts {
			row := make([]float32, k)
			for i, v := range logits[b*k : (b+1)*k] {
				row[i] = float32(1 / (1 + math.Exp(-float64(v))))
			}
			presence = append(presence, row)
		}
	}
	return res, classes, presence, nil
}

// StabilityScore is SAM's calculate_stability_score: the IoU between the
// masks thresholded at threshold+offset and at threshold-offset (the
// fraction of the looser mask that stays when the threshold moves); 0 for
// an empty looser mask.
func StabilityScore(logits []float32, threshold, offset float32) float32 {
	inter, union := 0, 0
	for _, v := range logits {
		if v > threshold+offset {
			inter++
		}
		if v > threshold-offset {
			union++
		}
	}
	if union == 0 {
		return 0
	}
	return float32(inter) / float32(union)
}

// objectFromLogits thresholds a w×h logit plane and returns the mask inside
// its tight box; false for an empty mask.
func objectFromLogits(plane []float32, w, h int, threshold float32) (Object, bool) {
	x0, y0, x1, y1 := w, h, -1, -1
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if plane[y*w+x] > threshold {
				x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
			}
		}
	}
	if x1 < 0 {
		return Object{}, false
	}
	bw := x1 - x0 + 1
	ob := Object{Box: [4]int{x0, y0, x1, y1}, Mask: make([]bool, bw*(y1-y0+1))}
	for y := y0; y <= y1; y++ {
		for x := x0; x <= x1; x++ {
			if plane[y*w+x] > threshold {
				ob.Mask[(y-y0)*bw+x-x0] = true
				ob.Area++
			}
		}
	}
	return ob, true
}

// nearCropEdge is SAM's is_box_near_crop_edge (20 px): box (crop
// coordinates) touches the crop's edge where that edge is not the image's.
func nearCropEdge(box [4]int, crop sam.CropBox, imgW, imgH int) bool {
	const atol = 20
	b := [4]int{box[0] + crop[0], box[1] + crop[1], box[2] + crop[0], box[3] + crop[1]}
	img := [4]int{0, 0, imgW, imgH}
	for i := range b {
		nearCrop := abs(b[i]-crop[i]) <= atol
		nearImg := abs(b[i]-img[i]) <= atol
		if nearCrop && !nearImg {
			return true
		}
	}
	return false
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// BoxIoU is torchvision's box_iou of two x0, y0, x1, y1 boxes (area
// (x1-x0)·(y1-y0), as SAM feeds it its inclusive boxes).
func BoxIoU(a, b [4]int) float64 {
	area := func(r [4]int) float64 { return float64(max(0, r[2]-r[0])) * float64(max(0, r[3]-r[1])) }
	ix := max(0, min(a[2], b[2])-max(a[0], b[0]))
	iy := max(0, min(a[3], b[3])-max(a[1], b[1]))
	inter := float64(ix) * float64(iy)
	union := area(a) + area(b) - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}

// nms is torchvision's nms: objects by descending score (stable), each
// dropped when its box IoU with a kept one is above thresh.
func nms(objs []Object, thresh float64, score func(*Object) float64) []Object {
	order := make([]int, len(objs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return score(&objs[order[i]]) > score(&objs[order[j]]) })
	var kept []Object
	for _, i := range order {
		ok := true
		for k := range kept {
			if BoxIoU(objs[i].Box, kept[k].Box) > thresh {
				ok = false
				break
			}
		}
		if ok {
			kept = append(kept, objs[i])
		}
	}
	return kept
}
