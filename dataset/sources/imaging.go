package sources

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // decoders of the formats sources may hold
	_ "image/jpeg"
	_ "image/png"

	_ "golang.org/x/image/bmp"
	xdraw "golang.org/x/image/draw"
	_ "golang.org/x/image/tiff"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/medimg/prepare"
)

// MaxSide is the longest side of a stored image.
const MaxSide = 256

// MinMaskFraction is the smallest mask kept, as a fraction of the stored
// image area (0.153%, the paper's rule).
const MinMaskFraction = prepare.DefaultMinMaskFraction

func decode(data []byte) (image.Image, error) {
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if img.Bounds().Empty() {
		return nil, fmt.Errorf("empty %s image", format)
	}
	return img, nil
}

// is16Grey reports a 16-bit grey image.
func is16Grey(img image.Image) bool { return img.ColorModel() == color.Gray16Model }

// toGrey converts an image to 8-bit grey at the origin. 16-bit greys are
// stretched linearly from their minimum to their maximum (12-bit data
// stored in 16 bits would be near-black by the high byte); colours become
// luma (ITU-R 601, as image/color does).
func toGrey(img image.Image) *image.Gray {
	b := img.Bounds()
	out := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	if g16, ok := img.(*image.Gray16); ok {
		lo, hi := uint16(65535), uint16(0)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				v := g16.Gray16At(x, y).Y
				lo, hi = min(lo, v), max(hi, v)
			}
		}
		scale := 0.0
		if hi > lo {
			scale = 255 / float64(hi-lo)
		}
		for y := 0; y < b.Dy(); y++ {
			for x := 0; x < b.Dx(); x++ {
				v := g16.Gray16At(b.Min.X+x, b.Min.Y+y).Y
				out.Pix[y*out.Stride+x] = uint8(float64(v-lo)*scale + 0.5)
			}
		}
		return out
	}
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			out.Pix[y*out.Stride+x] = color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
		}
	}
	return out
}

// toRGB converts an image to opaque NRGBA at the origin (transparency is
// composed onto black; 16-bit channels keep their high byte; a 16-bit grey
// is first stretched as toGrey does).
func toRGB(img image.Image) *image.NRGBA {
	if is16Grey(img) {
		img = toGrey(img)
	}
	b := img.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA() // premultiplied: over black
			i := y*out.Stride + 4*x
			out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = uint8(r>>8), uint8(g>>8), uint8(bl>>8), 255
		}
	}
	return out
}

// greyModality reports whether images of a modality are stored grey.
func greyModality(m string) bool {
	switch m {
	case dataset.Endoscopy, dataset.Dermoscopy, dataset.Fundus:
		return false
	}
	return true
}

// resizeImage scales an image (grey or NRGBA) to w x h by Catmull-Rom.
func resizeImage(img image.Image, w, h int) image.Image {
	b := img.Bounds()
	if b.Dx() == w && b.Dy() == h {
		return img
	}
	switch img.(type) {
	case *image.Gray:
		out := image.NewGray(image.Rect(0, 0, w, h))
		xdraw.CatmullRom.Scale(out, out.Rect, img, b, xdraw.Src, nil)
		return out
	}
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	xdraw.CatmullRom.Scale(out, out.Rect, img, b, xdraw.Src, nil)
	return out
}

// classMask is one class's foreground at a mask file's resolution.
type classMask struct {
	class  string
	mask   *image.Gray // 0/255
	binary bool        // resized bilinear + 0.5 (binary mode); else nearest
}

// maskValue reads the raw value of a label pixel: the grey value (16-bit
// kept), the palette index of a paletted image, or the red channel of a
// colour image.
func maskValue(img image.Image, x, y int) int {
	switch m := img.(type) {
	case *image.Gray:
		return int(m.GrayAt(x, y).Y)
	case *image.Gray16:
		return int(m.Gray16At(x, y).Y)
	case *image.Paletted:
		return int(m.ColorIndexAt(x, y))
	}
	r, _, _, _ := img.At(x, y).RGBA()
	return int(r >> 8)
}

// maskBright is the 8-bit brightness of a mask pixel: grey (16-bit: high
// byte) or the largest of R, G, B.
func maskBright(img image.Image, x, y int) uint8 {
	switch m := img.(type) {
	case *image.Gray:
		return m.GrayAt(x, y).Y
	case *image.Gray16:
		return uint8(m.Gray16At(x, y).Y >> 8)
	}
	c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
	return max(c.R, c.G, c.B)
}

func rgb8(img image.Image, x, y int) [3]uint8 {
	c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
	return [3]uint8{c.R, c.G, c.B}
}

// extract turns a decoded mask file into per-class masks by its mode.
func extract(m *MaskSpec, img image.Image, invert bool) []classMask {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	byClass := map[string]*image.Gray{}
	var order []string
	get := func(c string) *image.Gray {
		g, ok := byClass[c]
		if !ok {
			g = image.NewGray(image.Rect(0, 0, w, h))
			byClass[c] = g
			order = append(order, c)
		}
		return g
	}
	switch m.Mode {
	case ModeBinary:
		thr := 127
		if m.Threshold != nil {
			thr = *m.Threshold
		}
		if m.Invert != nil {
			invert = *m.Invert
		}
		g := get(m.Class)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				if (int(maskBright(img, b.Min.X+x, b.Min.Y+y)) > thr) != invert {
					g.Pix[y*g.Stride+x] = 255
				}
			}
		}
	case ModeValues:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				if c, ok := m.values[maskValue(img, b.Min.X+x, b.Min.Y+y)]; ok {
					get(c).Pix[y*w+x] = 255
				}
			}
		}
	case ModeColors:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				if c, ok := m.colors[rgb8(img, b.Min.X+x, b.Min.Y+y)]; ok {
					get(c).Pix[y*w+x] = 255
				}
			}
		}
	}
	out := make([]classMask, 0, len(order))
	for _, c := range order {
		if m.Fill {
			fillHoles(byClass[c])
		}
		out = append(out, classMask{class: c, mask: byClass[c], binary: m.Mode == ModeBinary})
	}
	return out
}

// resizeMask scales a 0/255 mask to w x h: bilinear and a 0.5 threshold for
// binary masks, nearest neighbour for label masks.
func resizeMask(g *image.Gray, w, h int, bilinear bool) *image.Gray {
	if g.Rect.Dx() == w && g.Rect.Dy() == h {
		return g
	}
	out := image.NewGray(image.Rect(0, 0, w, h))
	if !bilinear {
		xdraw.NearestNeighbor.Scale(out, out.Rect, g, g.Rect, xdraw.Src, nil)
		return out
	}
	xdraw.BiLinear.Scale(out, out.Rect, g, g.Rect, xdraw.Src, nil)
	for i, v := range out.Pix {
		if v >= 128 {
			out.Pix[i] = 255
		} else {
			out.Pix[i] = 0
		}
	}
	return out
}

// splitClass splits one class mask into its 8-connected components (or keeps
// it whole), dropping those under minFrac of the area.
func splitClass(class string, g *image.Gray, split bool, minFrac float64) (masks []dataset.Mask, dropped int) {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	if !split {
		n := 0
		for _, v := range g.Pix {
			if v != 0 {
				n++
			}
		}
		if n == 0 {
			return nil, 0
		}
		if float64(n) < minFrac*float64(w*h) {
			return nil, 1
		}
		return []dataset.Mask{{Class: class, Index: 0, Mask: g}}, 0
	}
	labels := make([]int32, w*h)
	for i, v := range g.Pix {
		if v != 0 {
			labels[i] = 1
		}
	}
	return prepare.SplitMasks(labels, w, h, minFrac, func(int32) string { return class })
}

// fillHoles sets every background pixel of g (at the origin) that is not
// 4-connected to the border to 255.
func fillHoles(g *image.Gray) {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	outside := make([]bool, w*h)
	var stack []int
	push := func(p int) {
		if g.Pix[p] == 0 && !outside[p] {
			outside[p] = true
			stack = append(stack, p)
		}
	}
	for x := 0; x < w; x++ {
		push(x)
		push((h-1)*w + x)
	}
	for y := 0; y < h; y++ {
		push(y * w)
		push(y*w + w - 1)
	}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		x, y := p%w, p/w
		if x > 0 {
			push(p - 1)
		}
		if x < w-1 {
			push(p + 1)
		}
		if y > 0 {
			push(p - w)
		}
		if y < h-1 {
			push(p + w)
		}
	}
	for p := range g.Pix {
		if !outside[p] {
			g.Pix[p] = 255
		}
	}
}
