package transform

import (
	"fmt"
	"math"
)

// Masks is a stack of float32 mask planes, [B, C, H, W] row-major (NCHW):
// B prompts (batch), C masks per prompt.
type Masks struct {
	B, C, H, W int
	Data       []float32
}

// Validate reports whether the shape is positive and matches len(Data).
func (m Masks) Validate() error {
	if m.B <= 0 || m.C <= 0 || m.H <= 0 || m.W <= 0 {
		return fmt.Errorf("invalid mask shape [%d %d %d %d]", m.B, m.C, m.H, m.W)
	}
	if len(m.Data) != m.B*m.C*m.H*m.W {
		return fmt.Errorf("masks [%d %d %d %d] need %d values, have %d", m.B, m.C, m.H, m.W, m.B*m.C*m.H*m.W, len(m.Data))
	}
	return nil
}

// samMaskTokens is the number of mask tokens of SAM's decoder: the low-res
// masks SamPredictor post-processes are a channel slice (1:4 or 0:1) of a
// contiguous [B, 4, h, w] tensor, which decides torch's kernel (see
// channelsLastContiguous).
const samMaskTokens = 4

// PostprocessMasksSAM is Sam.postprocess_masks as SamPredictor.predict_torch
// calls it: bilinear (align_corners=False, no antialias) from the decoder's
// low-res logits low ([B, C, h, w]) to size x size, crop to the resized
// image (nh, nw from PreprocessShape), bilinear to origH x origW. The
// result is [B, C, origH, origW] float logits. The arithmetic reproduces
// torch 1.13's CPU float32 kernels as built in the fixtures' environment
// (Debian python3-torch 1.13.1, AVX2 with FMA), including the choice
// between its generic and channels-last kernels that the tensors' strides
// make (see upsampleBilinear): bit-identical to SamPredictor on every
// fixture case. C must be at most 4 (a slice of the decoder's 4 mask
// tokens).
func PostprocessMasksSAM(low Masks, size, nh, nw, origH, origW int) (Masks, error) {
	if err := low.Validate(); err != nil {
		return Masks{}, fmt.Errorf("SAM postprocess: %w", err)
	}
	if low.C > samMaskTokens {
		return Masks{}, fmt.Errorf("SAM postprocess: %d masks per prompt, SAM's decoder has %d", low.C, samMaskTokens)
	}
	if err := checkOutSize(size, size, low.B*low.C); err != nil {
		return Masks{}, fmt.Errorf("SAM postprocess: %w", err)
	}
	if nh <= 0 || nw <= 0 || nh > size || nw > size {
		return Masks{}, fmt.Errorf("SAM postprocess: resized size %dx%d must lie within 1..%d", nh, nw, size)
	}
	if err := checkOutSize(origH, origW, low.B*low.C); err != nil {
		return Masks{}, fmt.Errorf("SAM postprocess: %w", err)
	}
	b, c, h, w := low.B, low.C, low.H, low.W
	// masks[:, 1:] or masks[:, :1] of the decoder's [B, 4, h, w] output.
	cl := channelsLastContiguous([4]int{b, c, h, w}, [4]int{samMaskTokens * h * w, h * w, w, 1})
	up := upsampleBilinear(low.Data, b*c, h, w, w, h*w, size, size, cl)
	// masks[..., :nh, :nw]: a strided view of the contiguous [B, C, S, S].
	cl = channelsLastContiguous([4]int{b, c, nh, nw}, [4]int{c * size * size, size * size, size, 1})
	out := upsampleBilinear(up, b*c, nh, nw, size, size*size, origH, origW, cl)
	return Masks{B: b, C: c, H: origH, W: origW, Data: out}, nil
}

// PostprocessMasksSAMMed2D is SammedPredictor.postprocess_masks: bilinear
// (align_corners=False, no antialias) from low ([B, C, h, w]) to
// size x size, then straight to origH x origW (no crop: the input was
// stretched, not padded). Batch entries are processed one at a time, as
// SammedPredictor.predict_torch loops over boxes, each as a contiguous
// [1, C, h, w] tensor (C is 1 after the multimask best-mask selection, see
// ArgmaxFirst). The result is [B, C, origH, origW], bit-identical to
// SammedPredictor on every fixture case (same kernels as
// PostprocessMasksSAM).
func PostprocessMasksSAMMed2D(low Masks, size, origH, origW int) (Masks, error) {
	if err := low.Validate(); err != nil {
		return Masks{}, fmt.Errorf("SAM-Med2D postprocess: %w", err)
	}
	if err := checkOutSize(size, size, low.B*low.C); err != nil {
		return Masks{}, fmt.Errorf("SAM-Med2D postprocess: %w", err)
	}
	if err := checkOutSize(origH, origW, low.B*low.C); err != nil {
		return Masks{}, fmt.Errorf("SAM-Med2D postprocess: %w", err)
	}
	c, h, w := low.C, low.H, low.W
	out := make([]float32, 0, low.B*c*origH*origW)
	for i := range low.B {
		plane := low.Data[i*c*h*w : (i+1)*c*h*w]
		cl := channelsLastContiguous([4]int{1, c, h, w}, [4]int{c * h * w, h * w, w, 1})
		up := upsampleBilinear(plane, c, h, w, w, h*w, size, size, cl)
		cl = channelsLastContiguous([4]int{1, c, size, size}, [4]int{c * size * size, size * size, size, 1})
		out = append(out, upsampleBilinear(up, c, size, size, size, size*size, origH, origW, cl)...)
	}
	return Masks{B: low.B, C: c, H: origH, W: origW, Data: out}, nil
}

func checkOutSize(h, w, planes int) error {
	if h <= 0 || w <= 0 {
		return fmt.Errorf("invalid output size %dx%d", h, w)
	}
	if h > MaxImageSide || w > MaxImageSide || h*w > MaxImagePixels || planes*h*w > math.MaxInt32 {
		return fmt.Errorf("%w: %d masks of %dx%d", ErrImageTooLarge, planes, h, w)
	}
	return nil
}

// ArgmaxFirst returns the index of the largest value, the first one on ties
// (a NaN counts as the largest, as in torch.max); -1 for an empty slice.
// SAM-Med2D's predictor keeps only the mask with the highest predicted IoU
// when multimask_output is set (torch.max(iou_predictions, dim=1)).
func ArgmaxFirst(v []float32) int {
	best := -1
	for i, x := range v {
		switch {
		case best < 0:
			best = i
		case math.IsNaN(float64(v[best])):
			return best
		case math.IsNaN(float64(x)) || x > v[best]:
			best = i
		}
	}
	return best
}

// channelsLastContiguous is torch's is_contiguous(memory_format=channels_last)
// for an NCHW tensor: walking C, W, H, N, every dimension of size > 1 must
// have the stride of the dimensions walked before it. torch 1.13's CPU
// upsample_bilinear2d uses its channels-last kernel when this holds (for
// example [1, 1, h, w]), its generic kernel otherwise; the two round
// differently.
func channelsLastContiguous(sizes, strides [4]int) bool {
	expected := 1
	for _, d := range [4]int{1, 3, 2, 0} {
		if sizes[d] != 1 {
			if strides[d] != expected {
				return false
			}
			expected *= sizes[d]
		}
	}
	return true
}

// linearAxis holds torch's per-output-index source indices and weights for
// one axis (compute_indices_weights / compute_source_index_and_lambda with
// align_corners=False, float32).
type linearAxis struct {
	i0, i1 []int
	l0, l1 []float32
}

func torchLinearAxis(in, out int) linearAxis {
	a := linearAxis{i0: make([]int, out), i1: make([]int, out), l0: make([]float32, out), l1: make([]float32, out)}
	// area_pixel_compute_scale<float>: static_cast<float>(in) / out.
	scale := float32(in) / float32(out)
	for d := range out {
		if in == out {
			a.i0[d], a.i1[d], a.l0[d], a.l1[d] = d, d, 1, 0
			continue
		}
		// The source coordinate scale*(d + 0.5) - 0.5 is a double
		// expression (d + 0.5 is double) and stays double until lambda1,
		// which is rounded to float; lambda0 = 1 - lambda1 in float.
		src := float64(scale)*(float64(d)+0.5) - 0.5
		if src < 0 {
			src = 0
		}
		i0 := min(int(src), in-1)
		i1 := i0
		if i0 < in-1 {
			i1++
		}
		l1 := float32(min(max(src-float64(i0), 0), 1))
		a.i0[d], a.i1[d], a.l1[d], a.l0[d] = i0, i1, l1, 1-l1
	}
	return a
}

// upsampleBilinear resizes n planes of h x w (row stride rowStride, plane
// stride planeStride in src) to contiguous n x oh x ow, with the float32
// arithmetic of torch 1.13's CPU upsample_bilinear2d (align_corners=False):
//
//   - generic kernel (channelsLast false), separable per output element:
//     t0 = x[h0][w0]*lw0 + x[h0][w1]*lw1, t1 likewise on row h1,
//     out = t0*lh0 + t1*lh1;
//     where the first product of each sum is fused (FMA, as GCC contracts
//     the AVX2 build of the kernel);
//   - channels-last kernel: w00 = lh0*lw0 etc. in float32, then
//     out = w00*x00 + w01*x01 + w10*x10 + w11*x11 accumulated in float64
//     left to right and rounded once to float32.
//
// The weights come from torchLinearAxis. Both forms reproduce torch's
// results bit for bit on the fixtures (case by case, see the tests).
func upsampleBilinear(src []float32, n, h, w, rowStride, planeStride, oh, ow int, channelsLast bool) []float32 {
	ay, ax := torchLinearAxis(h, oh), torchLinearAxis(w, ow)
	out := make([]float32, n*oh*ow)
	for p := range n {
		plane := src[p*planeStride:]
		o := out[p*oh*ow:]
		for y := range oh {
			r0 := plane[ay.i0[y]*rowStride:]
			r1 := plane[ay.i1[y]*rowStride:]
			lh0, lh1 := ay.l0[y], ay.l1[y]
			orow := o[y*ow : (y+1)*ow]
			if channelsLast {
				for x := range orow {
					x0, x1 := ax.i0[x], ax.i1[x]
					lw0, lw1 := ax.l0[x], ax.l1[x]
					w00, w01 := float32(lh0*lw0), float32(lh0*lw1)
					w10, w11 := float32(lh1*lw0), float32(lh1*lw1)
					// float32 x float32 is exact in float64: only the
					// sums and the final conversion round.
					s := float64(w00)*float64(r0[x0]) + float64(w01)*float64(r0[x1])
					s += float64(w10) * float64(r1[x0])
					s += float64(w11) * float64(r1[x1])
					orow[x] = float32(s)
				}
				continue
			}
			for x := range orow {
				x0, x1 := ax.i0[x], ax.i1[x]
				lw0, lw1 := ax.l0[x], ax.l1[x]
				t0 := fma32(r0[x0], lw0, float32(r0[x1]*lw1))
				t1 := fma32(r1[x0], lw0, float32(r1[x1]*lw1))
				orow[x] = fma32(t0, lh0, float32(t1*lh1))
			}
		}
	}
	return out
}

// fma32 is a*b + c rounded once to float32, the fused multiply-add the
// compiler emits in torch's AVX2 kernels. a*b is exact in float64 and the
// float64 sum s is the exact result rounded to float64; rounding s to
// float32 is then correct unless s lies exactly on a float32 tie, where the
// sum's rounding error (recovered with TwoSum) decides.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b)
	s := p + float64(c)
	// A float32 tie in the normal range has the 29 low mantissa bits of
	// its float64 form equal to 1<<28.
	if math.Float64bits(s)&(1<<29-1) != 1<<28 && math.Abs(s) >= 0x1p-126 {
		return float32(s)
	}
	return fma32Slow(p, s, float64(c))
}

func fma32Slow(p, s, c float64) float32 {
	r := float32(s)
	if math.IsInf(s, 0) || math.IsNaN(s) || float64(r) == s {
		return r
	}
	bb := s - p
	e := (p - (s - bb)) + (c - bb)
	if e == 0 {
		return r
	}
	other := math.Nextafter32(r, float32(math.Copysign(math.Inf(1), s-float64(r))))
	if s != (float64(r)+float64(other))/2 {
		return r // not a tie: the tiny error e cannot change the rounding
	}
	if (e > 0) == (float64(other) > s) {
		return other
	}
	return r
}
