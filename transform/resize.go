package transform

import (
	"fmt"
	"math"
)

// PreprocessShape is SAM's ResizeLongestSide.get_preprocess_shape: the size
// (nh, nw) an h x w image takes when its long side is scaled to long, each
// side rounded as int(side*scale + 0.5) in float64 with
// scale = long/max(h, w). A side can round to 0 for extreme aspect ratios
// (e.g. 3x2048 -> 0x256), exactly as in Python.
func PreprocessShape(h, w, long int) (nh, nw int) {
	scale := float64(long) * 1.0 / float64(max(h, w))
	newh, neww := float64(h)*scale, float64(w)*scale
	return int(newh + 0.5), int(neww + 0.5)
}

// PIL's fixed-point precision for 8-bit resampling (Resample.c).
const (
	pilPrecisionBits = 32 - 8 - 2
	pilHalf          = 1 << (pilPrecisionBits - 1)
)

// pilCoeffs is PIL's precompute_coeffs followed by normalize_coeffs_8bpc for
// the bilinear (triangle, support 1) filter: for output index i, taps
// bounds[2i] .. bounds[2i]+bounds[2i+1]-1 with weights kk[i*ksize:].
func pilCoeffs(inSize, outSize int) (ksize int, bounds []int, kk []int32) {
	// Box (0, 0, in, 0): in1 - in0 is a C float, exact for these sizes.
	scale := float64(float32(inSize)) / float64(outSize)
	filterscale := scale
	if filterscale < 1.0 {
		filterscale = 1.0
	}
	support := 1.0 * filterscale
	ksize = int(math.Ceil(support))*2 + 1
	bounds = make([]int, 2*outSize)
	kk = make([]int32, outSize*ksize)
	w := make([]float64, ksize)
	for xx := range outSize {
		center := (float64(xx) + 0.5) * scale
		ss := 1.0 / filterscale
		xmin := int(center - support + 0.5) // C (int) truncates toward zero
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		ww := 0.0
		for x := range xmax {
			v := triangle((float64(x+xmin) - center + 0.5) * ss)
			w[x] = v
			ww += v
		}
		for x := range xmax {
			v := w[x]
			if ww != 0.0 {
				v /= ww
			}
			// Round half away from zero to 22-bit fixed point.
			if v < 0 {
				kk[xx*ksize+x] = int32(-0.5 + v*(1<<pilPrecisionBits))
			} else {
				kk[xx*ksize+x] = int32(0.5 + v*(1<<pilPrecisionBits))
			}
		}
		bounds[2*xx] = xmin
		bounds[2*xx+1] = xmax
	}
	return ksize, bounds, kk
}

func triangle(x float64) float64 {
	if x < 0.0 {
		x = -x
	}
	if x < 1.0 {
		return 1.0 - x
	}
	return 0.0
}

// pilClip8 is PIL's clip8: the fixed-point sum back to a byte.
func pilClip8(v int32) uint8 {
	if v >= 1<<pilPrecisionBits<<8 {
		return 255
	}
	if v <= 0 {
		return 0
	}
	return uint8(v >> pilPrecisionBits)
}

// ResizeBilinearPIL resizes an RGB image to nh x nw exactly as Pillow 9's
// Image.resize((nw, nh), Image.BILINEAR) does on an 8-bit RGB image (the
// resize torchvision applies to a PIL image, used by SAM's
// ResizeLongestSide.apply_image). It is separable: a horizontal pass over
// only the rows the vertical pass needs, rounded to uint8, then a vertical
// pass; the triangle filter's support grows with the shrink factor
// (antialiasing); weights are 22-bit fixed point.
func ResizeBilinearPIL(img Image, nh, nw int) (Image, error) {
	if err := img.Validate(); err != nil {
		return Image{}, fmt.Errorf("resize: %w", err)
	}
	out, err := NewImage(nh, nw)
	if err != nil {
		return Image{}, fmt.Errorf("resize to %dx%d: %w", nh, nw, err)
	}
	needH := nw != img.W
	needV := nh != img.H
	if !needH && !needV {
		copy(out.Pix, img.Pix)
		return out, nil
	}
	ksizeV, boundsV, kkV := pilCoeffs(img.H, nh)
	src := img
	if needH {
		// Rows first..last-1 of the input are all the vertical pass reads.
		first := boundsV[0]
		last := boundsV[2*nh-2] + boundsV[2*nh-1]
		for i := range nh {
			boundsV[2*i] -= first
		}
		ksizeH, boundsH, kkH := pilCoeffs(img.W, nw)
		tmp := Image{H: last - first, W: nw, Pix: make([]uint8, (last-first)*nw*3)}
		for yy := range tmp.H {
			in := img.Pix[(yy+first)*img.W*3:]
			o := tmp.Pix[yy*nw*3:]
			for xx := range nw {
				xmin, n := boundsH[2*xx], boundsH[2*xx+1]
				k := kkH[xx*ksizeH : xx*ksizeH+n]
				ss0, ss1, ss2 := int32(pilHalf), int32(pilHalf), int32(pilHalf)
				p := in[xmin*3:]
				for x, kx := range k {
					ss0 += int32(p[3*x]) * kx
					ss1 += int32(p[3*x+1]) * kx
					ss2 += int32(p[3*x+2]) * kx
				}
				o[3*xx], o[3*xx+1], o[3*xx+2] = pilClip8(ss0), pilClip8(ss1), pilClip8(ss2)
			}
		}
		src = tmp
		if !needV {
			return tmp, nil
		}
	}
	row := src.W * 3
	for yy := range nh {
		ymin, n := boundsV[2*yy], boundsV[2*yy+1]
		k := kkV[yy*ksizeV : yy*ksizeV+n]
		o := out.Pix[yy*row : (yy+1)*row]
		for i := range o {
			ss := int32(pilHalf)
			for y, ky := range k {
				ss += int32(src.Pix[(ymin+y)*row+i]) * ky
			}
			o[i] = pilClip8(ss)
		}
	}
	return out, nil
}

// NearestIndexCV2 returns, for each of dst destination indices, the source
// index OpenCV's cv2.resize with INTER_NEAREST reads along an axis of src
// samples: min(floor(d * (1.0/(dst/src))), src-1) in IEEE double. This is not
// pixel-centre nearest: there is no +0.5, and 1.0/(dst/src) can differ from
// src/dst in the last bit (22 -> 100 reads source 10, not 11, for d = 50).
func NearestIndexCV2(src, dst int) []int {
	inv := 1.0 / (float64(dst) / float64(src))
	idx := make([]int, dst)
	for d := range idx {
		idx[d] = min(int(math.Floor(float64(d)*inv)), src-1)
	}
	return idx
}

// ResizeNearestCV2 resizes an h x w x c (HWC, row-major) array to
// nh x nw x c with OpenCV's INTER_NEAREST rule (see NearestIndexCV2), as
// SAM-Med2D's albumentations Resize(S, S, cv2.INTER_NEAREST) does.
func ResizeNearestCV2[T any](src []T, h, w, c, nh, nw int) ([]T, error) {
	if h <= 0 || w <= 0 || c <= 0 || nh <= 0 || nw <= 0 {
		return nil, fmt.Errorf("nearest resize %dx%dx%d -> %dx%d: sizes must be positive", h, w, c, nh, nw)
	}
	if len(src) != h*w*c {
		return nil, fmt.Errorf("nearest resize: %dx%dx%d array needs %d values, has %d", h, w, c, h*w*c, len(src))
	}
	if nh > MaxImageSide || nw > MaxImageSide || nh*nw > MaxImagePixels {
		return nil, fmt.Errorf("nearest resize to %dx%d: %w", nh, nw, ErrImageTooLarge)
	}
	rows, cols := NearestIndexCV2(h, nh), NearestIndexCV2(w, nw)
	out := make([]T, nh*nw*c)
	i := 0
	for _, sy := range rows {
		for _, sx := range cols {
			i += copy(out[i:i+c], src[(sy*w+sx)*c:])
		}
	}
	return out, nil
}
