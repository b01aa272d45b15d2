// Package render draws segmentation results over images: a translucent mask
// with its outline, the prompt box or points, and a text label.
package render

import (
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/segsam/segsam/transform"
)

// Palette gives distinct colours for class indices.
var Palette = []color.RGBA{
	{230, 25, 75, 255}, {60, 180, 75, 255}, {255, 225, 25, 255}, {0, 130, 200, 255},
	{245, 130, 48, 255}, {145, 30, 180, 255}, {70, 240, 240, 255}, {240, 50, 230, 255},
	{210, 245, 60, 255}, {250, 190, 212, 255}, {0, 128, 128, 255}, {220, 190, 255, 255},
}

// ToRGBA converts an RGB image for drawing.
func ToRGBA(img transform.Image) *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, img.W, img.H))
	for i := 0; i < img.H*img.W; i++ {
		out.Pix[4*i], out.Pix[4*i+1], out.Pix[4*i+2], out.Pix[4*i+3] = img.Pix[3*i], img.Pix[3*i+1], img.Pix[3*i+2], 255
	}
	return out
}

// Scale enlarges an image by an integer factor (nearest), so that small
// medical images and their labels stay readable.
func Scale(src *image.RGBA, f int) *image.RGBA {
	if f <= 1 {
		return src
	}
	b := src.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx()*f, b.Dy()*f))
	for y := 0; y < b.Dy()*f; y++ {
		for x := 0; x < b.Dx()*f; x++ {
			dst.SetRGBA(x, y, src.RGBAAt(b.Min.X+x/f, b.Min.Y+y/f))
		}
	}
	return dst
}

// Mask blends a binary mask [H*W] (at the image's size divided by scale)
// into dst with alpha, and draws its outline opaque.
func Mask(dst *image.RGBA, mask []bool, w, h, scale int, c color.RGBA, alpha float64) {
	on := func(x, y int) bool { return x >= 0 && y >= 0 && x < w && y < h && mask[y*w+x] }
	for y := 0; y < h*scale; y++ {
		for x := 0; x < w*scale; x++ {
			mx, my := x/scale, y/scale
			if !on(mx, my) {
				continue
			}
			edge := !on(mx-1, my) || !on(mx+1, my) || !on(mx, my-1) || !on(mx, my+1)
			p := dst.RGBAAt(x, y)
			a := alpha
			if edge {
				a = 1
			}
			blend := func(v, t uint8) uint8 { return uint8(float64(v)*(1-a) + float64(t)*a) }
			dst.SetRGBA(x, y, color.RGBA{blend(p.R, c.R), blend(p.G, c.G), blend(p.B, c.B), 255})
		}
	}
}

// Rect draws a rectangle outline (image coordinates × scale).
func Rect(dst *image.RGBA, x0, y0, x1, y1 float64, scale int, c color.RGBA) {
	ix0, iy0, ix1, iy1 := int(x0*float64(scale)), int(y0*float64(scale)), int(x1*float64(scale)), int(y1*float64(scale))
	for x := ix0; x <= ix1; x++ {
		dst.SetRGBA(x, iy0, c)
		dst.SetRGBA(x, iy1, c)
	}
	for y := iy0; y <= iy1; y++ {
		dst.SetRGBA(ix0, y, c)
		dst.SetRGBA(ix1, y, c)
	}
}

// Point draws a small cross at an image point.
func Point(dst *image.RGBA, x, y float64, scale int, c color.RGBA) {
	cx, cy := int(x*float64(scale)), int(y*float64(scale))
	for d := -4; d <= 4; d++ {
		dst.SetRGBA(cx+d, cy, c)
		dst.SetRGBA(cx, cy+d, c)
	}
}

// Label writes text on a dark band at (x, y) (top-left, output pixels).
func Label(dst *image.RGBA, x, y int, text string, c color.RGBA) {
	face := basicfont.Face7x13
	w := font.MeasureString(face, text).Ceil()
	draw.Draw(dst, image.Rect(x, y, x+w+6, y+17), image.NewUniform(color.RGBA{0, 0, 0, 180}), image.Point{}, draw.Over)
	d := font.Drawer{Dst: dst, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x+3, y+13)}
	d.DrawString(text)
}

// SavePNG writes an image to a PNG file.
func SavePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
