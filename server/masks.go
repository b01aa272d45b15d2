package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"math"
)

// RLE is a binary mask in COCO's uncompressed run-length encoding: Size is
// [height, width] and Counts are alternating run lengths of 0s and 1s over
// the mask flattened in column-major order (down the first column, then
// down the second, ...), as pycocotools does. The first count is a run of 0s
// (0 when the mask starts with a 1). pycocotools.mask.frPyObjects(rle, h, w)
// turns it into COCO's compressed form; decoding it yields a Fortran-order
// array, i.e. mask[y, x] = flat[x*h + y].
type RLE struct {
	Size   [2]int `json:"size"`
	Counts []int  `json:"counts"`
}

// EncodeRLE encodes a row-major h×w mask (mask[y*w+x]) as a COCO RLE.
func EncodeRLE(mask []bool, h, w int) RLE {
	r := RLE{Size: [2]int{h, w}}
	cur, run := false, 0
	for x := 0; x < w; x++ {
		for y := 0; y < h; y++ {
			if mask[y*w+x] != cur {
				r.Counts = append(r.Counts, run)
				cur, run = !cur, 0
			}
			run++
		}
	}
	r.Counts = append(r.Counts, run)
	return r
}

// Decode returns the row-major mask of an RLE, checking that its counts
// cover exactly its size.
func (r RLE) Decode() ([]bool, error) {
	h, w := r.Size[0], r.Size[1]
	if h <= 0 || w <= 0 || h > 1<<15 || w > 1<<15 {
		return nil, fmt.Errorf("rle size %v: want [height, width] with 1..32768 each", r.Size)
	}
	n := h * w
	out := make([]bool, n)
	pos, on := 0, false
	for i, c := range r.Counts {
		if c < 0 || c > n-pos {
			return nil, fmt.Errorf("rle count %d (%d) runs past the %dx%d mask", i, c, h, w)
		}
		if on {
			for k := pos; k < pos+c; k++ {
				x, y := k/h, k%h
				out[y*w+x] = true
			}
		}
		pos += c
		on = !on
	}
	if pos != n {
		return nil, fmt.Errorf("rle counts cover %d pixels, want %d (%dx%d)", pos, n, h, w)
	}
	return out, nil
}

// maskPNG encodes a row-major mask as an 8-bit grey PNG: 255 in the mask,
// 0 outside.
func maskPNG(mask []bool, h, w int) ([]byte, error) {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i, on := range mask {
		if on {
			img.Pix[i] = 255
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode mask PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// countOn returns the number of true pixels.
func countOn(mask []bool) int {
	n := 0
	for _, on := range mask {
		if on {
			n++
		}
	}
	return n
}

// encodeFloats returns little-endian float32 values in base64.
func encodeFloats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// decodeFloats parses base64 little-endian float32 values, rejecting
// non-finite ones.
func decodeFloats(s string) ([]float32, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if len(b)%4 != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of float32 values", len(b))
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		x := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("value %d is not finite", i)
		}
		out[i] = x
	}
	return out, nil
}
