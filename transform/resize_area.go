package transform

import (
	"fmt"
	"math"
)

// ResizeAreaCV2 resizes an h x w x c uint8 array (HWC, row-major) to
// nh x nw x c as OpenCV 4.6's cv2.resize(..., interpolation=INTER_AREA)
// does on the CPU without IPP (LiteMedSAM's resize_longest_side). OpenCV
// picks one of three algorithms from the scale factors src/dst:
//
//   - both factors integers (within DBL_EPSILON): block averages
//     (resizeAreaFast_); 2x2 blocks round as (sum + 2) >> 2, other blocks as
//     cvRound(sum * (1.f/area));
//   - both factors >= 1: the exact area-coverage weights of
//     computeResizeAreaTab, accumulated in float32, then cvRound;
//   - otherwise (an upscale along an axis): OpenCV's bilinear kernel with
//     "area" source coordinates and 11-bit fixed-point weights, whose
//     vertical pass rounds as ((b0*(S0>>4))>>16 + (b1*(S1>>4))>>16 + 2) >> 2.
//
// An identical size is a copy.
func ResizeAreaCV2(src []uint8, h, w, c, nh, nw int) ([]uint8, error) {
	if h <= 0 || w <= 0 || c <= 0 || nh <= 0 || nw <= 0 {
		return nil, fmt.Errorf("area resize %dx%dx%d -> %dx%d: sizes must be positive", h, w, c, nh, nw)
	}
	if len(src) != h*w*c {
		return nil, fmt.Errorf("area resize: %dx%dx%d array needs %d values, has %d", h, w, c, h*w*c, len(src))
	}
	if nh > MaxImageSide || nw > MaxImageSide || nh*nw > MaxImagePixels {
		return nil, fmt.Errorf("area resize to %dx%d: %w", nh, nw, ErrImageTooLarge)
	}
	if nh == h && nw == w {
		return append([]uint8(nil), src...), nil
	}
	// cv::resize: inv_scale = dst/src, scale = 1/inv_scale (double).
	invX, invY := float64(nw)/float64(w), float64(nh)/float64(h)
	scaleX, scaleY := 1/invX, 1/invY
	iscaleX, iscaleY := int(math.RoundToEven(scaleX)), int(math.RoundToEven(scaleY))
	fast := math.Abs(scaleX-float64(iscaleX)) < dblEpsilon && math.Abs(scaleY-float64(iscaleY)) < dblEpsilon
	switch {
	case scaleX >= 1 && scaleY >= 1 && fast:
		return areaFast(src, h, w, c, nh, nw, iscaleX, iscaleY), nil
	case scaleX >= 1 && scaleY >= 1:
		return areaGeneral(src, h, w, c, nh, nw, scaleX, scaleY), nil
	default:
		return areaLinear(src, h, w, c, nh, nw, scaleX, scaleY, invX, invY), nil
	}
}

const dblEpsilon = 2.220446049250313e-16

// cvRound is OpenCV's saturate_cast<uchar>(float): round half to even, clamp.
func cvRoundU8(v float32) uint8 {
	r := math.RoundToEven(float64(v))
	return uint8(min(max(r, 0), 255))
}

// areaFast is resizeAreaFast_ for integer factors sx, sy.
func areaFast(src []uint8, h, w, c, nh, nw, sx, sy int) []uint8 {
	out := make([]uint8, nh*nw*c)
	area := sx * sy
	scale := float32(1) / float32(area)
	rowLen := w * c
	for dy := range nh {
		y0 := dy * sy
		for dx := range nw {
			x0 := dx * sx
			full := y0+sy <= h && x0+sx <= w
			for ch := range c {
				sum, count := 0, 0
				for yy := y0; yy < min(y0+sy, h); yy++ {
					for xx := x0; xx < min(x0+sx, w); xx++ {
						sum += int(src[yy*rowLen+xx*c+ch])
						count++
					}
				}
				o := &out[(dy*nw+dx)*c+ch]
				switch {
				case count == 0:
					*o = 0
				case !full:
					*o = cvRoundU8(float32(sum) / float32(count))
				case sx == 2 && sy == 2 && (c == 1 || c == 3 || c == 4):
					// ResizeAreaFastVec (SIMD and its scalar tail alike).
					*o = uint8((sum + 2) >> 2)
				default:
					*o = cvRoundU8(float32(float32(sum) * scale))
				}
			}
		}
	}
	return out
}

// areaTab is one entry of computeResizeAreaTab: destination index d takes
// source index s with weight alpha.
type areaTab struct {
	d, s  int
	alpha float32
}

func computeAreaTab(ssize, dsize int, scale float64) []areaTab {
	var tab []areaTab
	for dx := range dsize {
		fsx1 := float64(dx) * scale
		fsx2 := fsx1 + scale
		cellWidth := math.Min(scale, float64(ssize)-fsx1)
		sx1, sx2 := int(math.Ceil(fsx1)), int(math.Floor(fsx2))
		sx2 = min(sx2, ssize-1)
		sx1 = min(sx1, sx2)
		if float64(sx1)-fsx1 > 1e-3 {
			tab = append(tab, areaTab{dx, sx1 - 1, float32((float64(sx1) - fsx1) / cellWidth)})
		}
		for sx := sx1; sx < sx2; sx++ {
			tab = append(tab, areaTab{dx, sx, float32(1.0 / cellWidth)})
		}
		if fsx2-float64(sx2) > 1e-3 {
			tab = append(tab, areaTab{dx, sx2, float32(math.Min(math.Min(fsx2-float64(sx2), 1), cellWidth) / cellWidth)})
		}
	}
	return tab
}

// areaGeneral is resizeArea_<uchar, float>: per source row, a float32
// horizontal accumulation over the x table, then a float32 weighted sum of
// those rows per destination row.
func areaGeneral(src []uint8, h, w, c, nh, nw int, scaleX, scaleY float64) []uint8 {
	xtab := computeAreaTab(w, nw, scaleX)
	ytab := computeAreaTab(h, nh, scaleY)
	width := nw * c
	out := make([]uint8, nh*width)
	buf := make([]float32, width)
	sum := make([]float32, width)
	prev := -1
	flush := func(dy int) {
		for i, v := range sum {
			out[dy*width+i] = cvRoundU8(v)
		}
	}
	for _, yt := range ytab {
		row := src[yt.s*w*c : (yt.s+1)*w*c]
		clear(buf)
		for _, xt := range xtab {
			for ch := range c {
				// Explicit conversions keep Go from fusing into an FMA.
				p := float32(float32(row[xt.s*c+ch]) * xt.alpha)
				buf[xt.d*c+ch] = float32(buf[xt.d*c+ch] + p)
			}
		}
		beta := yt.alpha
		if yt.d != prev {
			if prev >= 0 {
				flush(prev)
			}
			for i, v := range buf {
				sum[i] = float32(beta * v)
			}
			prev = yt.d
		} else {
			for i, v := range buf {
				sum[i] = float32(sum[i] + float32(beta*v))
			}
		}
	}
	if prev >= 0 {
		flush(prev)
	}
	return out
}

// resizeCoefScale is INTER_RESIZE_COEF_SCALE (11 fractional bits).
const resizeCoefScale = 2048

// saturateShort is saturate_cast<short>(float): round half to even, clamp.
func saturateShort(v float32) int32 {
	r := math.RoundToEven(float64(v))
	return int32(min(max(r, math.MinInt16), math.MaxInt16))
}

// areaAxis computes the "area mode" source index and fraction of OpenCV's
// linear kernel along one axis: sx = floor(d*scale), fx = (d+1) -
// (sx+1)*inv (double, then float), wrapped to [0, 1).
func areaAxis(d int, scale, inv float64) (int, float32) {
	s := int(math.Floor(float64(d) * scale))
	f := float32(float64(d+1) - float64(s+1)*inv)
	if f <= 0 {
		f = 0
	} else {
		f -= float32(math.Floor(float64(f)))
	}
	return s, f
}

// areaLinear is resizeGeneric_ with HResizeLinear<uchar, int, short> and the
// uchar VResizeLinear specialisation, in INTER_AREA's coordinate mode.
func areaLinear(src []uint8, h, w, c, nh, nw int, scaleX, scaleY, invX, invY float64) []uint8 {
	xofs := make([]int, nw)
	alpha := make([][2]int32, nw)
	xmax := nw
	for dx := range nw {
		sx, fx := areaAxis(dx, scaleX, invX)
		if sx+1 >= w {
			xmax = min(xmax, dx)
			if sx >= w-1 {
				fx, sx = 0, w-1
			}
		}
		xofs[dx] = sx
		alpha[dx] = [2]int32{saturateShort((1 - fx) * resizeCoefScale), saturateShort(fx * resizeCoefScale)}
	}
	// Horizontal pass of every source row (int32, 11-bit weights).
	hrow := func(y int) []int32 {
		row := src[y*w*c : (y+1)*w*c]
		d := make([]int32, nw*c)
		for dx := range nw {
			sx := xofs[dx]
			for ch := range c {
				if dx < xmax {
					d[dx*c+ch] = int32(row[sx*c+ch])*alpha[dx][0] + int32(row[(sx+1)*c+ch])*alpha[dx][1]
				} else {
					d[dx*c+ch] = int32(row[sx*c+ch]) * resizeCoefScale
				}
			}
		}
		return d
	}
	rows := make(map[int][]int32)
	get := func(y int) []int32 {
		y = min(max(y, 0), h-1)
		r, ok := rows[y]
		if !ok {
			r = hrow(y)
			rows[y] = r
		}
		return r
	}
	width := nw * c
	out := make([]uint8, nh*width)
	for dy := range nh {
		sy, fy := areaAxis(dy, scaleY, invY)
		b0, b1 := saturateShort((1-fy)*resizeCoefScale), saturateShort(fy*resizeCoefScale)
		s0, s1 := get(sy), get(sy+1)
		o := out[dy*width : (dy+1)*width]
		for x := range o {
			v := ((b0*(s0[x]>>4))>>16 + (b1*(s1[x]>>4))>>16 + 2) >> 2
			o[x] = uint8(min(max(v, 0), 255))
		}
		delete(rows, sy-1)
	}
	return out
}
