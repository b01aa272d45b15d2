package train

import (
	"math"
	"math/rand/v2"

	"github.com/segsam/segsam/dataset"
)

// Augmentation of training images: segsam's addition for models trained
// from scratch on a few thousand images (the paper fine-tunes a pretrained
// encoder and augments nothing). Each step's transform is drawn from the
// step's own random stream, so a resumed run sees the same images.
//
// Geometry: a zoom in [0.8, 1.25] about the centre with a shift of up to 10 %
// of the side, for every modality; for endoscopy and dermoscopy also any of
// the 8 flips/rotations by 90°, for fundus and ultrasound a left-right flip.
// CT, MR, PET and X-ray are never mirrored: their left and right are
// anatomical (classes such as kidney_left, and the position cues of the
// class descriptions, depend on it). Intensity: contrast, brightness and
// gamma for every image; per-channel gains and, rarely, conversion to grey
// for colour images.

// augmentation is one image's drawn transform.
type augmentation struct {
	geometric bool
	zoom      float64
	shiftX    float64 // pixels
	shiftY    float64
	flipX     bool
	flipY     bool
	transpose bool
	grey      bool          // a colour image turned grey
	lut       [3][256]uint8 // per-channel intensity map
}

// mirrorable says which mirror transforms keep an image's meaning.
func mirrorable(modality string) (flipX, dihedral bool) {
	switch modality {
	case dataset.Endoscopy, dataset.Dermoscopy:
		return true, true
	case dataset.Fundus, dataset.Ultrasound:
		return true, false
	}
	return false, false
}

// drawAugmentation draws one image's transform.
func drawAugmentation(rng *rand.Rand, modality string, colour bool) augmentation {
	a := augmentation{}
	logUniform := func(lo, hi float64) float64 {
		return math.Exp(math.Log(lo) + rng.Float64()*(math.Log(hi)-math.Log(lo)))
	}
	if rng.Float64() < 0.8 {
		a.geometric = true
		a.zoom = logUniform(0.8, 1.25)
		a.shiftX = (rng.Float64()*2 - 1) * 0.1
		a.shiftY = (rng.Float64()*2 - 1) * 0.1
		flipX, dihedral := mirrorable(modality)
		if flipX {
			a.flipX = rng.IntN(2) == 1
		}
		if dihedral {
			a.flipY = rng.IntN(2) == 1
			a.transpose = rng.IntN(2) == 1
		}
	}
	contrast := logUniform(0.75, 1.33)
	brightness := (rng.Float64()*2 - 1) * 0.08
	gamma := logUniform(0.75, 1.33)
	gains := [3]float64{1, 1, 1}
	grey := false
	if colour {
		for c := range gains {
			gains[c] = 0.9 + 0.2*rng.Float64()
		}
		grey = rng.Float64() < 0.1
	}
	if rng.Float64() < 0.2 { // some images pass unchanged in intensity
		contrast, brightness, gamma, gains = 1, 0, 1, [3]float64{1, 1, 1}
	}
	for c := range 3 {
		for v := range 256 {
			x := float64(v) / 255
			x = math.Pow(x, gamma)
			x = (x-0.5)*contrast + 0.5 + brightness
			x *= gains[c]
			a.lut[c][v] = uint8(math.Round(255 * min(1, max(0, x))))
		}
	}
	if grey {
		a.grey = true
		a.lut[1], a.lut[2] = a.lut[0], a.lut[0]
	}
	return a
}

// sourceIndex is, for each output pixel of an s×s frame, the input pixel it
// takes (nearest), or -1 outside the input.
func (a augmentation) sourceIndex(s int) []int32 {
	idx := make([]int32, s*s)
	c := float64(s) / 2
	for y := range s {
		for x := range s {
			fx, fy := float64(x)+0.5, float64(y)+0.5
			if a.transpose {
				fx, fy = fy, fx
			}
			if a.flipX {
				fx = float64(s) - fx
			}
			if a.flipY {
				fy = float64(s) - fy
			}
			sx := (fx-c-a.shiftX*float64(s))/a.zoom + c
			sy := (fy-c-a.shiftY*float64(s))/a.zoom + c
			ix, iy := int(math.Floor(sx)), int(math.Floor(sy))
			if ix < 0 || iy < 0 || ix >= s || iy >= s {
				idx[y*s+x] = -1
				continue
			}
			idx[y*s+x] = int32(iy*s + ix)
		}
	}
	return idx
}

// remapMask applies the geometric transform to a 0/1 mask.
func remapMask(mask []uint8, idx []int32) []uint8 {
	out := make([]uint8, len(mask))
	for i, j := range idx {
		if j >= 0 {
			out[i] = mask[j]
		}
	}
	return out
}

// applyPixels transforms an interleaved RGB s×s image (geometry through idx,
// nil for none, then intensity).
func (a augmentation) applyPixels(pix []uint8, idx []int32) []uint8 {
	n := len(pix) / 3
	out := make([]uint8, len(pix))
	for i := range n {
		j := i
		if idx != nil {
			if idx[i] < 0 {
				continue // black outside the image
			}
			j = int(idx[i])
		}
		r, g, b := pix[3*j], pix[3*j+1], pix[3*j+2]
		if a.grey {
			v := uint8((299*int(r) + 587*int(g) + 114*int(b) + 500) / 1000)
			r, g, b = v, v, v
		}
		out[3*i], out[3*i+1], out[3*i+2] = a.lut[0][r], a.lut[1][g], a.lut[2][b]
	}
	return out
}

// augmentSample draws and applies one image's augmentation. It returns the
// transformed pixels and the objects (all of them, in order). The geometry
// is dropped for this image when it would cut away more than half of a
// chosen object or leave it under the minimum size.
func augmentSample(sm *sample, chosen []int, s int, rng *rand.Rand) ([]uint8, []object) {
	colour := isColour(sm.pix)
	a := drawAugmentation(rng, sm.entry.Modality, colour)
	objs := sm.objects
	var idx []int32
	if a.geometric {
		idx = a.sourceIndex(s)
		moved := make([]object, len(sm.objects))
		ok := true
		for i, o := range sm.objects {
			m, _ := newObject(remapMask(o.mask, idx), s, o.class)
			moved[i] = m
		}
		for _, oi := range chosen {
			n := len(moved[oi].fg)
			if 2*n < len(sm.objects[oi].fg) || float64(n) < MinMaskFraction*float64(s*s) {
				ok = false
				break
			}
		}
		if ok {
			objs = moved
		} else {
			idx = nil
		}
	}
	return a.applyPixels(sm.pix, idx), objs
}

// isColour reports whether an interleaved RGB image has any non-grey pixel.
func isColour(pix []uint8) bool {
	for i := 0; i+2 < len(pix); i += 3 {
		if pix[i] != pix[i+1] || pix[i] != pix[i+2] {
			return true
		}
	}
	return false
}
