package sam

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/core/tensors"
)

// Point grids and crop boxes of SAM's automatic mask generator
// (segment_anything/utils/amg.py: build_point_grid, build_all_layer_point_grids,
// generate_crop_boxes), and the batched single-point prompts it sends to the
// decoder.

// BuildPointGrid returns n×n points evenly spread over [0, 1]², at the
// centres of an n×n grid of cells, x varying fastest (as build_point_grid).
func BuildPointGrid(n int) [][2]float64 {
	if n < 1 {
		return nil
	}
	offset := 1 / (2 * float64(n))
	pts := make([][2]float64, 0, n*n)
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			pts = append(pts, [2]float64{offset + float64(x)*(1-2*offset)/float64(max(n-1, 1)), offset + float64(y)*(1-2*offset)/float64(max(n-1, 1))})
		}
	}
	if n == 1 {
		pts[0] = [2]float64{0.5, 0.5}
	}
	return pts
}

// BuildAllLayerPointGrids returns the point grid of each crop layer: layer i
// has nPerSide / scaleDown^i points per side (as build_all_layer_point_grids).
func BuildAllLayerPointGrids(nPerSide, nLayers, scaleDown int) [][][2]float64 {
	out := make([][][2]float64, 0, nLayers+1)
	for i := 0; i <= nLayers; i++ {
		n := int(float64(nPerSide) / math.Pow(float64(scaleDown), float64(i)))
		out = append(out, BuildPointGrid(n))
	}
	return out
}

// CropBox is x0, y0, x1, y1 (exclusive) in original-image pixels.
type CropBox [4]int

// GenerateCropBoxes returns the crop boxes of SAM's automatic mask generator
// for an h×w image: the whole image (layer 0), then for layer i ≥ 1 a
// 2^i × 2^i grid of crops overlapping by overlapRatio of the short side
// (scaled by the layer), with the layer index of each box.
func GenerateCropBoxes(h, w, nLayers int, overlapRatio float64) ([]CropBox, []int) {
	boxes := []CropBox{{0, 0, w, h}}
	layers := []int{0}
	short := min(h, w)
	for i := 1; i <= nLayers; i++ {
		perSide := 1 << i
		overlap := int(overlapRatio * float64(short) * (2 / float64(perSide)))
		cropW := int(math.Ceil(float64(overlap*(perSide-1)+w) / float64(perSide)))
		cropH := int(math.Ceil(float64(overlap*(perSide-1)+h) / float64(perSide)))
		for xi := 0; xi < perSide; xi++ { // x outer, y inner, as itertools.product
			x0 := (cropW - overlap) * xi
			for yi := 0; yi < perSide; yi++ {
				y0 := (cropH - overlap) * yi
				boxes = append(boxes, CropBox{x0, y0, min(x0+cropW, w), min(y0+cropH, h)})
				layers = append(layers, i)
			}
		}
	}
	return boxes, layers
}

// PointBatchInputs turns single positive points (original-image pixels) into
// decoder inputs with one batch entry per point: the point and SAM's padding
// point, coords [B, 2, 2] and labels [B, 2], as the automatic mask generator
// prompts the decoder (one point per mask, points_per_batch at a time).
func (p *Predictor) PointBatchInputs(points []Point) (DecoderInputs, error) {
	if p.embedding == nil {
		return DecoderInputs{}, ErrNoImage
	}
	if len(points) == 0 {
		return DecoderInputs{}, fmt.Errorf("no points")
	}
	b := len(points)
	xy := make([]float64, 0, 2*b)
	for i, pt := range points {
		if err := p.Model.ValidatePrompt(Prompt{Points: []Point{pt}}, p.origH, p.origW); err != nil {
			return DecoderInputs{}, fmt.Errorf("grid point %d: %w", i, err)
		}
		xy = append(xy, pt.X, pt.Y)
	}
	scaled := p.scale.Apply(xy) // [B*2]
	coords := make([]float32, 0, b*4)
	labels := make([]int32, 0, b*2)
	for i, pt := range points {
		coords = append(coords, scaled[2*i], scaled[2*i+1], 0, 0)
		labels = append(labels, int32(pt.Label), LabelPadding)
	}
	return DecoderInputs{
		Embedding: p.embedding,
		Coords:    tensors.FromFlatDataAndDimensions(coords, b, 2, 2), // [B, 2, 2]
		Labels:    tensors.FromFlatDataAndDimensions(labels, b, 2),    // [B, 2]
	}, nil
}
