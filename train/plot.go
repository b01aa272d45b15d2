package train

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/segsam/segsam/internal/render"
)

var palette = []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255}}

// plotHistory draws the loss curves per epoch (left axis) as a PNG.
func plotHistory(path string, hist []EpochStats) error {
	const w, h, left, right, top, bottom = 720, 420, 60, 170, 30, 40
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	ss := historySeries(hist)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, v := range s.values {
			if !math.IsNaN(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	lo = math.Min(lo, 0)
	if hi <= lo {
		hi = lo + 1
	}
	n := len(hist)
	px := func(i int) int {
		if n <= 1 {
			return left + (w-left-right)/2
		}
		return left + i*(w-left-right)/(n-1)
	}
	py := func(v float64) int { return h - bottom - int((v-lo)/(hi-lo)*float64(h-top-bottom)) }
	grey := color.RGBA{120, 120, 120, 255}
	line(img, left, h-bottom, w-right, h-bottom, grey)
	line(img, left, top, left, h-bottom, grey)
	for t := 0; t <= 4; t++ {
		v := lo + (hi-lo)*float64(t)/4
		label(img, 4, py(v)+4, fmt.Sprintf("%.3g", v), grey)
	}
	for i := range hist {
		label(img, px(i)-4, h-bottom+16, fmt.Sprint(hist[i].Epoch), grey)
	}
	label(img, left, 18, "SEG-SAM training: loss terms and validation DSC per epoch", color.Black)
	label(img, (w-right)/2, h-6, "epoch", grey)
	for si, s := range ss {
		c := palette[si%len(palette)]
		prevOK := false
		var x0, y0 int
		for i, v := range s.values {
			if math.IsNaN(v) {
				prevOK = false
				continue
			}
			x, y := px(i), py(v)
			if prevOK {
				line(img, x0, y0, x, y, c)
			}
			fillDot(img, x, y, c)
			x0, y0, prevOK = x, y, true
		}
		ly := top + 16*si + 10
		line(img, w-right+10, ly-4, w-right+30, ly-4, c)
		label(img, w-right+36, ly, s.name, color.Black)
	}
	return render.SavePNG(path, img)
}

func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := math.Abs(float64(x1-x0)), math.Abs(float64(y1-y0))
	steps := int(math.Max(dx, dy)) + 1
	for i := 0; i <= steps; i++ {
		t := float64(i) / float64(steps)
		img.Set(x0+int(math.Round(t*float64(x1-x0))), y0+int(math.Round(t*float64(y1-y0))), c)
	}
}

func fillDot(img *image.RGBA, x, y int, c color.Color) {
	for dy := -2; dy <= 2; dy++ {
		for dx := -2; dx <= 2; dx++ {
			img.Set(x+dx, y+dy, c)
		}
	}
}

func label(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
