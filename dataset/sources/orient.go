package sources

import (
	"fmt"
	"image"
	"slices"
)

// Orientations are the values of a pairs source's "orient": the turn that
// brings its stored images (and masks) to the standard view. Some sets are
// slices written straight from a NIfTI array, so they come out transposed,
// mirrored or upside down. "rot90" turns clockwise; "transpose" swaps x
// and y (a mirror about the main diagonal), "transverse" mirrors about the
// other diagonal (transpose then rot180).
var Orientations = []string{"flip_h", "flip_v", "rot90", "rot180", "rot270", "transpose", "transverse"}

func validOrient(o string) bool { return o == "" || slices.Contains(Orientations, o) }

// orientedSize is the size of a w x h image after orient o.
func orientedSize(o string, w, h int) (int, int) {
	switch o {
	case "rot90", "rot270", "transpose", "transverse":
		return h, w
	}
	return w, h
}

// orientSource maps a pixel (x, y) of the oriented w x h image (w, h of the
// result) to the pixel of the stored image it comes from.
func orientSource(o string, x, y, w, h int) (int, int) {
	switch o {
	case "flip_h":
		return w - 1 - x, y
	case "flip_v":
		return x, h - 1 - y
	case "rot90": // clockwise: the result's row y is the source's column y read bottom-up
		return y, w - 1 - x
	case "rot180":
		return w - 1 - x, h - 1 - y
	case "rot270":
		return h - 1 - y, x
	case "transpose":
		return y, x
	case "transverse":
		return h - 1 - y, w - 1 - x
	}
	return x, y
}

// orient applies o to a grey or RGB image ([H, W] -> [H', W']); "" returns
// img itself.
func orient(o string, img image.Image) (image.Image, error) {
	if o == "" {
		return img, nil
	}
	b := img.Bounds()
	w, h := orientedSize(o, b.Dx(), b.Dy())
	switch src := img.(type) {
	case *image.Gray:
		out := image.NewGray(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				sx, sy := orientSource(o, x, y, w, h)
				out.Pix[y*out.Stride+x] = src.Pix[src.PixOffset(b.Min.X+sx, b.Min.Y+sy)]
			}
		}
		return out, nil
	case *image.NRGBA:
		out := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				sx, sy := orientSource(o, x, y, w, h)
				i := src.PixOffset(b.Min.X+sx, b.Min.Y+sy)
				copy(out.Pix[y*out.Stride+4*x:y*out.Stride+4*x+4], src.Pix[i:i+4])
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("orient %q: unsupported image type %T", o, img)
}

// orientMask is orient for a mask ([H, W] -> [H', W']).
func orientMask(o string, g *image.Gray) (*image.Gray, error) {
	img, err := orient(o, g)
	if err != nil {
		return nil, err
	}
	return img.(*image.Gray), nil
}
