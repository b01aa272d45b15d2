package transform

import (
	"fmt"
	"math"
)

// LiteMedSAM's own pre- and post-processing, the steps of the official
// CVPR24_LiteMedSAM_infer.py (bowang-lab/MedSAM, branch LiteMedSAM).

// PreprocessLiteMedSAM builds LiteMedSAM's image-encoder input: the uint8
// image resized to long side size with OpenCV INTER_AREA (resize_longest_side,
// sides int(side*scale + 0.5) as PreprocessShape), min-max normalised to
// [0, 1] over the whole resized image in float64 ((v - min) / max(max - min,
// 1e-8)), cast to float32, zero padded bottom/right to size x size; no
// mean/std. input is [3, size, size] (CHW, row-major); (nh, nw) is the
// resized size before padding.
func PreprocessLiteMedSAM(img Image, size int) (input []float32, nh, nw int, err error) {
	if err := img.Validate(); err != nil {
		return nil, 0, 0, fmt.Errorf("LiteMedSAM preprocess: %w", err)
	}
	if size <= 0 || size > MaxImageSide {
		return nil, 0, 0, fmt.Errorf("LiteMedSAM preprocess: invalid input size %d", size)
	}
	nh, nw = PreprocessShape(img.H, img.W, size)
	if nh <= 0 || nw <= 0 {
		return nil, 0, 0, fmt.Errorf("LiteMedSAM preprocess: a %dx%d image resizes to %dx%d (too thin)", img.H, img.W, nh, nw)
	}
	resized, err := ResizeAreaCV2(img.Pix, img.H, img.W, 3, nh, nw)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("LiteMedSAM preprocess of a %dx%d image: %w", img.H, img.W, err)
	}
	lo, hi := uint8(255), uint8(0)
	for _, v := range resized {
		lo, hi = min(lo, v), max(hi, v)
	}
	den := math.Max(float64(hi-lo), 1e-8)
	input = make([]float32, 3*size*size)
	for c := range 3 {
		plane := input[c*size*size:]
		for y := range nh {
			for x := range nw {
				v := resized[(y*nw+x)*3+c]
				plane[y*size+x] = float32(float64(v-lo) / den)
			}
		}
	}
	return input, nh, nw, nil
}

// LiteMedSAMBox is resize_box_to_256 generalised to an input size: each
// coordinate becomes int(v * (size / max(H, W))) (float64, truncated), as
// float32. The prompt encoder then adds its +0.5.
func LiteMedSAMBox(box [4]float64, origH, origW, size int) [4]float32 {
	ratio := float64(size) / float64(max(origH, origW))
	var out [4]float32
	for i, v := range box {
		out[i] = float32(math.Trunc(v * ratio))
	}
	return out
}

// LiteMedSAMPoints maps (x, y) pairs to the model frame as the reference
// does for point prompts (the official script has none): x * size /
// max(H, W) in float32, no rounding.
func LiteMedSAMPoints(coords []float64, origH, origW, size int) []float32 {
	out := make([]float32, len(coords))
	s, m := float32(size), float32(max(origH, origW))
	for i, v := range coords {
		out[i] = float32(float32(v)*s) / m
	}
	return out
}

// PostprocessMasksLiteMedSAM is MedSAM_Lite.postprocess_masks: the decoder's
// low-res logits low ([B, C, s, s], a token slice of a [B, 4, s, s] tensor)
// cropped to the resized image [:nh, :nw] and resized in one bilinear step
// (align_corners=False, no antialias) to origH x origW, with torch 1.13's
// CPU float32 kernels (see upsampleBilinear). The result is [B, C, origH,
// origW] logits.
func PostprocessMasksLiteMedSAM(low Masks, nh, nw, origH, origW int) (Masks, error) {
	if err := low.Validate(); err != nil {
		return Masks{}, fmt.Errorf("LiteMedSAM postprocess: %w", err)
	}
	if low.C > samMaskTokens {
		return Masks{}, fmt.Errorf("LiteMedSAM postprocess: %d masks per prompt, the decoder has %d", low.C, samMaskTokens)
	}
	if nh <= 0 || nw <= 0 || nh > low.H || nw > low.W {
		return Masks{}, fmt.Errorf("LiteMedSAM postprocess: resized size %dx%d must lie within the %dx%d logits", nh, nw, low.H, low.W)
	}
	if err := checkOutSize(origH, origW, low.B*low.C); err != nil {
		return Masks{}, fmt.Errorf("LiteMedSAM postprocess: %w", err)
	}
	b, c, h, w := low.B, low.C, low.H, low.W
	// masks[:, slice][..., :nh, :nw]: a strided view of the [B, 4, h, w] output.
	cl := channelsLastContiguous([4]int{b, c, nh, nw}, [4]int{samMaskTokens * h * w, h * w, w, 1})
	out := upsampleBilinear(low.Data, b*c, nh, nw, w, h*w, origH, origW, cl)
	return Masks{B: b, C: c, H: origH, W: origW, Data: out}, nil
}
