package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/segsam/segsam/eval"
	"github.com/segsam/segsam/internal/render"
	"github.com/segsam/segsam/models"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
	"github.com/segsam/segsam/transform"
)

func init() {
	register(command{
		name:    "demo",
		summary: "segment the bundled example with the built-in model and write an overlay PNG",
		run:     runDemo,
	})
}

func runDemo(args []string) error {
	fs := newFlagSet("demo", "[--out DIR]")
	out := fs.String("out", "segsam-demo", "output folder (created)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ex := models.DefaultExample
	img, err := transform.DecodeImage(ex.Image)
	if err != nil {
		return fmt.Errorf("example image: %w", err)
	}
	gt, err := transform.DecodeImage(ex.Mask)
	if err != nil {
		return fmt.Errorf("example mask: %w", err)
	}
	m, err := models.Default(nil)
	if err != nil {
		return err
	}
	p := segsam.NewPredictor(m)
	if err := p.SetImage(img); err != nil {
		return err
	}
	res, err := p.Predict(sam.Prompt{Boxes: []sam.Box{ex.Box}})
	if err != nil {
		return err
	}
	mask := res.Mask(0, 0)
	truth := make([]bool, img.H*img.W)
	for i := range truth {
		truth[i] = gt.Pix[3*i] > 127
	}
	dsc := eval.Dice(mask, truth)

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	const scale = 3
	canvas := render.Scale(render.ToRGBA(img), scale)
	colour := render.Palette[0]
	if res.ClassIndex != nil {
		colour = render.Palette[res.ClassIndex[0]%len(render.Palette)]
	}
	render.Mask(canvas, mask, img.W, img.H, scale, colour, 0.45)
	render.Rect(canvas, ex.Box[0], ex.Box[1], ex.Box[2]+1, ex.Box[3]+1, scale, render.Palette[3])
	label := "object"
	if res.Class != nil {
		label = fmt.Sprintf("%s %.0f%%", res.Class[0], 100*res.Confidence[0])
	}
	render.Label(canvas, int(ex.Box[0])*scale, max(0, int(ex.Box[1])*scale-18), label, colour)
	render.Label(canvas, 4, 4, fmt.Sprintf("segsam demo: %s, box prompt; DSC vs ground truth %.3f", models.DefaultName, dsc), render.Palette[9])
	overlay := filepath.Join(*out, "overlay.png")
	if err := render.SavePNG(overlay, canvas); err != nil {
		return err
	}
	if _, err := writeMaskPNG(filepath.Join(*out, "mask.png"), mask, img.W, img.H); err != nil {
		return err
	}
	fmt.Printf("image     %s (%dx%d), box %v; true class %s\n", ex.Name, img.W, img.H, ex.Box, ex.Class)
	fmt.Printf("model     %s\n", m.Describe())
	if res.Class != nil {
		fmt.Printf("class     %s (confidence %.2f)\n", res.Class[0], res.Confidence[0])
	}
	fmt.Printf("mask      %d pixels, predicted IoU %.3f, DSC vs ground truth %.3f\n", countOn(mask), res.IoU[0], dsc)
	fmt.Printf("overlay   %s\n", overlay)
	return nil
}

func countOn(m []bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}
