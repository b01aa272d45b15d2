package eval

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/segsam/segsam/dataset"
)

var (
	colWhite  = color.RGBA{255, 255, 255, 255}
	colBlack  = color.RGBA{0, 0, 0, 255}
	colGrid   = color.RGBA{220, 220, 220, 255}
	colAxis   = color.RGBA{90, 90, 90, 255}
	colDSC    = color.RGBA{52, 101, 164, 255}
	colMDSC   = color.RGBA{237, 145, 33, 255}
	colGT     = color.RGBA{0, 230, 0, 255}
	colPred   = color.RGBA{255, 40, 40, 255}
	colPrompt = color.RGBA{255, 230, 0, 255}
)

const lineH = 14 // text line height of basicfont.Face7x13

func drawText(dst draw.Image, x, y int, c color.Color, s string) {
	d := font.Drawer{Dst: dst, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string) int { return font.MeasureString(basicfont.Face7x13, s).Ceil() }

func fillRect(dst *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(dst, r.Intersect(dst.Bounds()), image.NewUniform(c), image.Point{}, draw.Src)
}

func savePNG(p string, img image.Image) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("encode %s: %w", p, err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// writeCharts draws one bar chart per modality with objects, plus avg.png:
// a group of bars per table row, DSC (and mDSC for methods with classes).
func (rep *Report) writeCharts(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write charts: %w", err)
	}
	for _, m := range append(rep.columns(), "avg") {
		if m != "avg" && !rep.hasModality(m) {
			continue
		}
		img := rep.chart(m)
		if err := savePNG(filepath.Join(dir, fileSafe(m)+".png"), img); err != nil {
			return err
		}
	}
	return nil
}

func (rep *Report) hasModality(m string) bool {
	for _, r := range rep.Rows {
		if r.Objects[m] > 0 {
			return true
		}
	}
	return false
}

// chart renders the bar chart of modality m ("avg" for the Avg. column).
func (rep *Report) chart(m string) *image.RGBA {
	const (
		barW, barGap, groupGap = 26, 4, 18
		left, right, top       = 44, 16, 34
		plotH                  = 220
	)
	semantic := rep.anySemantic()
	bars := 1
	if semantic {
		bars = 2
	}
	groupW := bars*barW + (bars-1)*barGap
	n := len(rep.Rows)
	plotW := n*groupW + (n+1)*groupGap
	legend := make([]string, n)
	legendW := 0
	for i, r := range rep.Rows {
		legend[i] = fmt.Sprintf("%d  %s, %s prompt", i+1, r.Method, r.Prompt)
		if m != "avg" {
			legend[i] += fmt.Sprintf(" (%d objects)", r.Objects[m])
		}
		legendW = max(legendW, textWidth(legend[i]))
	}
	title := columnTitle(m)
	if m == "avg" {
		title = "Avg. over modalities"
	}
	title += ": DSC (%)"
	if semantic {
		title += " and mDSC (%)"
	}
	w := max(left+plotW+right, legendW+2*left, textWidth(title)+2*left)
	h := top + plotH + 24 + (n+1)*lineH + 8
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fillRect(img, img.Bounds(), colWhite)
	drawText(img, left, 20, colBlack, title)
	y0 := top + plotH // y of value 0
	for v := 0; v <= 100; v += 20 {
		y := y0 - v*plotH/100
		fillRect(img, image.Rect(left, y, left+plotW, y+1), colGrid)
		label := fmt.Sprint(v)
		drawText(img, left-6-textWidth(label), y+4, colAxis, label)
	}
	fillRect(img, image.Rect(left, top, left+1, y0+1), colAxis)
	fillRect(img, image.Rect(left, y0, left+plotW, y0+1), colAxis)
	for i, r := range rep.Rows {
		gx := left + groupGap + i*(groupW+groupGap)
		vals := []float64{r.DSCAvg}
		cols := []color.Color{colDSC}
		if m != "avg" {
			vals[0] = r.DSC[m]
		}
		if semantic {
			v := r.MDSCAvg
			if m != "avg" {
				v = r.MDSC[m]
			}
			if !r.Semantic {
				v = -1 // no bar
			}
			vals = append(vals, v)
			cols = append(cols, colMDSC)
		}
		for k, v := range vals {
			if v < 0 {
				continue
			}
			x := gx + k*(barW+barGap)
			bh := int(v*float64(plotH) + 0.5)
			fillRect(img, image.Rect(x, y0-bh, x+barW, y0), cols[k])
			label := fmt.Sprintf("%.1f", 100*v)
			drawText(img, x+(barW-textWidth(label))/2, y0-bh-3, colBlack, label)
		}
		num := fmt.Sprint(i + 1)
		drawText(img, gx+(groupW-textWidth(num))/2, y0+16, colBlack, num)
	}
	ly := y0 + 24 + lineH
	for i, l := range legend {
		drawText(img, left, ly+i*lineH, colBlack, l)
	}
	ly += n * lineH
	fillRect(img, image.Rect(left, ly-9, left+10, ly+1), colDSC)
	drawText(img, left+14, ly, colBlack, "DSC")
	if semantic {
		fillRect(img, image.Rect(left+60, ly-9, left+70, ly+1), colMDSC)
		drawText(img, left+74, ly, colBlack, "mDSC")
	}
	return img
}

// writeGallery draws the kept worst cases of every row into
// gallery/<method>_<prompt>/ and returns their paths relative to dir.
func (rep *Report) writeGallery(dir string) (map[rowKey][]string, error) {
	out := map[rowKey][]string{}
	for _, r := range rep.Rows {
		k := rowKey{r.Method, r.Prompt}
		cases := rep.worst[k]
		if len(cases) == 0 {
			continue
		}
		sub := path.Join(GalleryDir, fileSafe(r.Method)+"_"+r.Prompt)
		if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(sub)), 0o755); err != nil {
			return nil, fmt.Errorf("write gallery: %w", err)
		}
		for rank, c := range cases {
			res := rep.Results[c.result]
			e := rep.entries[res.Image]
			img, err := e.LoadImage()
			if err != nil {
				return nil, fmt.Errorf("write gallery: %w", err)
			}
			tile := renderCase(img, e, res, c)
			mstem := strings.TrimSuffix(path.Base(res.Mask), path.Ext(res.Mask))
			rel := path.Join(sub, fmt.Sprintf("%02d_%s.png", rank+1, fileSafe(mstem)))
			if err := savePNG(filepath.Join(dir, filepath.FromSlash(rel)), tile); err != nil {
				return nil, err
			}
			out[k] = append(out[k], rel)
		}
	}
	return out, nil
}

// renderCase draws the image (enlarged to about 256 px when small) with the
// prediction filled and outlined in red, the ground truth outlined in green,
// the prompt in yellow, and a caption.
func renderCase(src image.Image, e *dataset.ImageEntry, res ObjectResult, c worstCase) *image.RGBA {
	w, h := e.Width, e.Height
	s := max(1, 256/max(w, h))
	captions := []string{
		fmt.Sprintf("DSC %.1f%%  %s", 100*res.DSC, res.Class),
		strings.TrimSuffix(path.Base(res.Image), ".png"),
	}
	if res.SemanticDSC != nil {
		captions[0] += fmt.Sprintf("  pred %s (sem. %.1f%%)", orNone(res.PredClass), 100**res.SemanticDSC)
	}
	capW := 0
	for _, cp := range captions {
		capW = max(capW, textWidth(cp)+8)
	}
	out := image.NewRGBA(image.Rect(0, 0, max(w*s, capW), h*s+len(captions)*lineH+6))
	fillRect(out, out.Bounds(), colBlack)
	b := src.Bounds()
	edge := func(m []bool, x, y int) bool {
		if !m[y*w+x] {
			return false
		}
		return x == 0 || y == 0 || x == w-1 || y == h-1 || !m[y*w+x-1] || !m[y*w+x+1] || !m[(y-1)*w+x] || !m[(y+1)*w+x]
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, bl, _ := src.At(b.Min.X+x, b.Min.Y+y).RGBA()
			px := color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), 255}
			switch {
			case edge(c.gt, x, y):
				px = colGT
			case edge(c.pred, x, y):
				px = colPred
			case c.pred[y*w+x]:
				px = color.RGBA{uint8((int(px.R)*6 + 255*4) / 10), uint8(int(px.G) * 6 / 10), uint8(int(px.B) * 6 / 10), 255}
			}
			fillRect(out, image.Rect(x*s, y*s, (x+1)*s, (y+1)*s), px)
		}
	}
	switch c.prompt.Kind {
	case KindBox:
		bx := c.prompt.Box
		x0, y0 := int(bx[0])*s, int(bx[1])*s
		x1, y1 := (int(bx[2])+1)*s-1, (int(bx[3])+1)*s-1
		fillRect(out, image.Rect(x0, y0, x1+1, y0+1), colPrompt)
		fillRect(out, image.Rect(x0, y1, x1+1, y1+1), colPrompt)
		fillRect(out, image.Rect(x0, y0, x0+1, y1+1), colPrompt)
		fillRect(out, image.Rect(x1, y0, x1+1, y1+1), colPrompt)
	case KindPoint:
		cx, cy := int(c.prompt.Point[0])*s+s/2, int(c.prompt.Point[1])*s+s/2
		fillRect(out, image.Rect(cx-5, cy, cx+6, cy+1), colPrompt)
		fillRect(out, image.Rect(cx, cy-5, cx+1, cy+6), colPrompt)
	}
	for i, cp := range captions {
		drawText(out, 4, h*s+(i+1)*lineH, colWhite, cp)
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return NoClass
	}
	return s
}
