// Package train trains SEG-SAM as the paper does (§3.3, §4.1), following
// SAM-Med2D: 256×256 inputs, 5 objects per image per step, each prompted by
// a jittered box or a random foreground point, frozen image encoder (its
// embeddings computed once and cached on disk), Adam at 1e-4 halved at
// epochs 5 and 10, 15 epochs, loss = eq. 11.
package train

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/internal/embcache"
	"github.com/segsam/segsam/internal/progress"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/transform"
)

// MinMaskFraction is the paper's threshold: masks under 0.153% of the image
// (100 pixels of 256×256) are dropped.
const MinMaskFraction = 100.0 / (256 * 256)

// object is one annotated object in the model-input frame.
type object struct {
	mask  []uint8 // [S*S] 0/1
	class int     // index in the vocabulary
	box   [4]int  // x0, y0, x1, y1 (inclusive) of the mask
	fg    []int32 // indices of its foreground pixels
}

// sample is one image ready for training: its model input (or its cached
// embedding) and its objects.
type sample struct {
	entry *dataset.ImageEntry
	// pix is the model-input frame before normalisation, interleaved RGB
	// [S*S*3] (only when the encoder is trained; augmented per step).
	pix      []uint8
	emb      []float32 // [C*g*g] cached embedding (frozen encoder)
	objects  []object
	presence []float32 // [K] 1 for each class annotated in the image
}

// toModelFrame maps a mask of the original image into the model-input frame
// with the family's geometry: SAM-Med2D stretches to S×S with OpenCV's
// nearest rule; SAM resizes the long side to S (nearest) and pads.
func toModelFrame(mask []uint8, h, w, s int, family sam.Family) ([]uint8, error) {
	if family == sam.FamilySAMMed2D {
		return transform.ResizeNearestCV2(mask, h, w, 1, s, s)
	}
	nh, nw := transform.PreprocessShape(h, w, s)
	small, err := transform.ResizeNearestCV2(mask, h, w, 1, nh, nw)
	if err != nil {
		return nil, err
	}
	out := make([]uint8, s*s)
	for y := 0; y < nh; y++ {
		copy(out[y*s:y*s+nw], small[y*nw:(y+1)*nw])
	}
	return out, nil
}

// newObject builds an object from a model-frame mask; ok is false for a mask
// under MinMaskFraction of the frame.
func newObject(mask []uint8, s, class int) (object, bool) {
	o := object{mask: mask, class: class, box: [4]int{s, s, -1, -1}}
	for i, v := range mask {
		if v == 0 {
			continue
		}
		x, y := i%s, i/s
		o.fg = append(o.fg, int32(i))
		o.box[0], o.box[1] = min(o.box[0], x), min(o.box[1], y)
		o.box[2], o.box[3] = max(o.box[2], x), max(o.box[3], y)
	}
	return o, float64(len(o.fg)) >= MinMaskFraction*float64(s*s)
}

// loadSamples reads every image of ds with its masks, in the model frame.
// With cache set, the frozen encoder's embedding of each image is computed
// once and kept on disk under a key of the image's bytes and the encoder's
// weights.
func loadSamples(ctx context.Context, ds *dataset.Dataset, m *sam.Model, classes map[string]int, enc *embcache.Cache, log io.Writer) ([]*sample, error) {
	s := m.Config.ImageEncoder.ImgSize
	bar := progress.New(log, len(ds.Images), "prepare "+filepath.Base(ds.Dir))
	defer bar.Done()
	var out []*sample
	for _, e := range ds.Images {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		img, err := transform.ReadImage(e.ImagePath())
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", e.Path, err)
		}
		sm := &sample{entry: e, presence: make([]float32, len(classes))}
		for i, me := range e.Masks {
			k, ok := classes[me.Class]
			if !ok {
				return nil, fmt.Errorf("image %s: class %q is not in the model's vocabulary", e.Path, me.Class)
			}
			bits, err := e.LoadMaskBits(i)
			if err != nil {
				return nil, err
			}
			if len(bits) != img.H*img.W {
				return nil, fmt.Errorf("mask %s is %d pixels, its image %dx%d", me.Path, len(bits), img.W, img.H)
			}
			raw := make([]uint8, len(bits))
			for j, b := range bits {
				if b {
					raw[j] = 1
				}
			}
			frame, err := toModelFrame(raw, img.H, img.W, s, m.Config.Family)
			if err != nil {
				return nil, err
			}
			// Presence counts the classes of the objects kept: a class whose
			// every mask is too small at the model's resolution is not
			// visible to the model either.
			if o, ok := newObject(frame, s, k); ok {
				sm.objects = append(sm.objects, o)
				sm.presence[k] = 1
			}
		}
		if len(sm.objects) == 0 {
			bar.Add(1)
			continue // every mask too small at the model's resolution
		}
		input, _, _, err := m.Preprocess(img)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", e.Path, err)
		}
		if enc != nil {
			if sm.emb, err = cachedEmbedding(enc, m, e.ImagePath(), input); err != nil {
				return nil, fmt.Errorf("image %s: %w", e.Path, err)
			}
		} else {
			sm.pix = framePixels(input, m.Config.PixelMean, m.Config.PixelStd)
		}
		out = append(out, sm)
		bar.Add(1)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dataset %s has no usable object (images with masks of at least %.3f%% of the image)", ds.Dir, 100*MinMaskFraction)
	}
	return out, nil
}

// newEncoderCache opens the embedding cache of m's frozen encoder, running
// the encoder once first so that a fresh encoder has its weights.
func newEncoderCache(m *sam.Model, dir string) (*embcache.Cache, error) {
	s := m.Config.ImageEncoder.ImgSize
	if _, err := m.Encode(tensors.FromFlatDataAndDimensions(make([]float32, 3*s*s), 1, 3, s, s)); err != nil {
		return nil, err
	}
	return embcache.Open(dir, m)
}

// cachedEmbedding returns the embedding of an image through the cache.
func cachedEmbedding(c *embcache.Cache, m *sam.Model, imagePath string, input *tensors.Tensor) ([]float32, error) {
	data, err := os.ReadFile(imagePath)
	if err != nil {
		return nil, err
	}
	emb, ok := c.Get(data)
	if !ok {
		if emb, err = m.Encode(input); err != nil {
			return nil, err
		}
		if err := c.Put(data, emb); err != nil {
			return nil, err
		}
	}
	return tensors.CopyFlatData[float32](emb)
}

// prompt is one object's prompt in the model frame: a box (two corners) or a
// point plus SAM's padding point; both are two prompt tokens.
type prompt struct {
	coords [4]float32
	labels [2]int32
	point  bool
}

// framePixels turns a normalised model input [1, 3, S, S] back into the
// interleaved RGB bytes it was made from (exact for SAM-Med2D's nearest
// resize; SAM's bilinear resize rounds to the nearest level).
func framePixels(input *tensors.Tensor, mean, std [3]float32) []uint8 {
	data, _ := tensors.CopyFlatData[float32](input)
	n := len(data) / 3
	pix := make([]uint8, 3*n)
	for c := range 3 {
		for i := range n {
			v := data[c*n+i]*std[c] + mean[c]
			pix[3*i+c] = uint8(min(255, max(0, math.Round(float64(v)))))
		}
	}
	return pix
}

// normalisePixels is the model input [3*S*S] (planar) of interleaved RGB bytes.
func normalisePixels(pix []uint8, mean, std [3]float32, dst []float32) []float32 {
	n := len(pix) / 3
	for c := range 3 {
		for i := range n {
			dst = append(dst, (float32(pix[3*i+c])-mean[c])/std[c])
		}
	}
	return dst
}

// boxPrompt is the object's box shifted as SAM-Med2D's get_boxes_from_mask
// does: both corners move by the same random offset, up to
// min(5 px, half the box's shorter side) along each axis (numpy's randint
// range, [-n, n)).
func boxPrompt(o object, s int, rng *rand.Rand) prompt {
	b := o.box
	n := min(5, min(b[2]-b[0]+1, b[3]-b[1]+1)/2)
	dx, dy := 0, 0
	if n > 0 {
		dx, dy = rng.IntN(2*n)-n, rng.IntN(2*n)-n
	}
	clip := func(v int) float32 { return float32(min(max(v, 0), s-1)) }
	return prompt{coords: [4]float32{clip(b[0] + dx), clip(b[1] + dy), clip(b[2] + dx), clip(b[3] + dy)}, labels: [2]int32{sam.LabelBoxTopLeft, sam.LabelBoxBotRight}}
}

// pointPrompt is one uniformly random foreground pixel.
func pointPrompt(o object, s int, rng *rand.Rand) prompt {
	i := int(o.fg[rng.IntN(len(o.fg))])
	return prompt{coords: [4]float32{float32(i % s), float32(i / s), 0, 0}, labels: [2]int32{sam.LabelPositive, sam.LabelPadding}, point: true}
}
