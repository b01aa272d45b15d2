package transform

import "fmt"

// PixelMean and PixelStd are SAM's (and SAM-Med2D's) normalisation
// constants, RGB, on the 0..255 scale. They are model buffers, not stored in
// the checkpoints.
var (
	PixelMean = [3]float32{123.675, 116.28, 103.53}
	PixelStd  = [3]float32{58.395, 57.12, 57.375}
)

// PreprocessSAM builds SAM's image-encoder input the way SamPredictor.set_image
// does: ResizeLongestSide(size) with PIL bilinear on the uint8 image, then
// (x - mean) / std in float32 and zero padding at the bottom and right.
// input is [3, size, size] (CHW, row-major); (nh, nw) is the resized size
// before padding (the predictor's input_size), needed by CoordScale and
// PostprocessMasksSAM.
func PreprocessSAM(img Image, size int, mean, std [3]float32) (input []float32, nh, nw int, err error) {
	if err := img.Validate(); err != nil {
		return nil, 0, 0, fmt.Errorf("SAM preprocess: %w", err)
	}
	if size <= 0 || size > MaxImageSide {
		return nil, 0, 0, fmt.Errorf("SAM preprocess: invalid input size %d", size)
	}
	nh, nw = PreprocessShape(img.H, img.W, size)
	resized, err := ResizeBilinearPIL(img, nh, nw)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("SAM preprocess of a %dx%d image: %w", img.H, img.W, err)
	}
	input = make([]float32, 3*size*size)
	for c := range 3 {
		plane := input[c*size*size:]
		for y := range nh {
			for x := range nw {
				v := float32(resized.Pix[(y*nw+x)*3+c])
				plane[y*size+x] = (v - mean[c]) / std[c]
			}
		}
	}
	return input, nh, nw, nil
}

// PreprocessSAMMed2D builds SAM-Med2D's image-encoder input the way
// SammedPredictor.set_image does: normalise first, (uint8 - mean) / std in
// float32, then resize the float image to size x size with OpenCV's
// INTER_NEAREST rule (aspect ratio not kept, no padding). The result is
// [3, size, size] (CHW, row-major).
func PreprocessSAMMed2D(img Image, size int, mean, std [3]float32) ([]float32, error) {
	if err := img.Validate(); err != nil {
		return nil, fmt.Errorf("SAM-Med2D preprocess: %w", err)
	}
	if size <= 0 || size > MaxImageSide {
		return nil, fmt.Errorf("SAM-Med2D preprocess: invalid input size %d", size)
	}
	// Nearest resize only copies values, so normalising each copied
	// sample equals normalising first.
	rows, cols := NearestIndexCV2(img.H, size), NearestIndexCV2(img.W, size)
	input := make([]float32, 3*size*size)
	for c := range 3 {
		plane := input[c*size*size:]
		for y, sy := range rows {
			for x, sx := range cols {
				v := float32(img.Pix[(sy*img.W+sx)*3+c])
				plane[y*size+x] = (v - mean[c]) / std[c]
			}
		}
	}
	return input, nil
}

// CoordScale maps prompt coordinates from original-image pixels to the
// model input frame: x' = x*X, y' = y*Y.
type CoordScale struct {
	X, Y float64
}

// SAMCoordScale is SamPredictor's ResizeLongestSide.apply_coords factor:
// newW/W and newH/H (float64) with the rounded PreprocessShape size.
func SAMCoordScale(origH, origW, size int) CoordScale {
	nh, nw := PreprocessShape(origH, origW, size)
	return CoordScale{X: float64(nw) / float64(origW), Y: float64(nh) / float64(origH)}
}

// SAMMed2DCoordScale is SammedPredictor.apply_coords' factor: the whole image
// is stretched to size x size, so size/W and size/H (float64).
func SAMMed2DCoordScale(origH, origW, size int) CoordScale {
	return CoordScale{X: float64(size) / float64(origW), Y: float64(size) / float64(origH)}
}

// ApplyFloat64 scales (x, y) pairs, flattened as x0, y0, x1, y1, ... (points
// N x 2 or boxes N x 4 alike), in float64 as numpy does in predict.
func (s CoordScale) ApplyFloat64(coords []float64) []float64 {
	out := make([]float64, len(coords))
	for i, v := range coords {
		if i%2 == 0 {
			out[i] = v * s.X
		} else {
			out[i] = v * s.Y
		}
	}
	return out
}

// Apply is the predict path: the float64 transform of ApplyFloat64, then the
// cast to float32 that torch.as_tensor(..., dtype=torch.float) makes.
func (s CoordScale) Apply(coords []float64) []float32 {
	out := make([]float32, len(coords))
	for i, v := range s.ApplyFloat64(coords) {
		out[i] = float32(v)
	}
	return out
}

// ApplyFloat32 is the predict_torch path (apply_coords_torch /
// apply_boxes_torch): a float32 tensor times the Python float factor, which
// torch rounds to float32 before multiplying in float32. It can differ from
// Apply in the last bit.
func (s CoordScale) ApplyFloat32(coords []float32) []float32 {
	fx, fy := float32(s.X), float32(s.Y)
	out := make([]float32, len(coords))
	for i, v := range coords {
		if i%2 == 0 {
			out[i] = v * fx
		} else {
			out[i] = v * fy
		}
	}
	return out
}
