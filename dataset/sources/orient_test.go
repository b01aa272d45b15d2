package sources

import (
	"image"
	"slices"
	"testing"
)

func TestOrient(t *testing.T) {
	// A 3x2 grey image:  1 2 3
	//                    4 5 6
	src := image.NewGray(image.Rect(0, 0, 3, 2))
	copy(src.Pix, []uint8{1, 2, 3, 4, 5, 6})
	cases := []struct {
		o    string
		w, h int
		want []uint8 // rows of the result
	}{
		{"", 3, 2, []uint8{1, 2, 3, 4, 5, 6}},
		{"flip_h", 3, 2, []uint8{3, 2, 1, 6, 5, 4}},
		{"flip_v", 3, 2, []uint8{4, 5, 6, 1, 2, 3}},
		{"rot90", 2, 3, []uint8{4, 1, 5, 2, 6, 3}}, // clockwise
		{"rot180", 3, 2, []uint8{6, 5, 4, 3, 2, 1}},
		{"rot270", 2, 3, []uint8{3, 6, 2, 5, 1, 4}},
		{"transpose", 2, 3, []uint8{1, 4, 2, 5, 3, 6}},
		{"transverse", 2, 3, []uint8{6, 3, 5, 2, 4, 1}},
	}
	for _, c := range cases {
		t.Run(c.o, func(t *testing.T) {
			g, err := orientMask(c.o, src)
			if err != nil {
				t.Fatal(err)
			}
			if b := g.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
				t.Fatalf("size %dx%d, want %dx%d", b.Dx(), b.Dy(), c.w, c.h)
			}
			if !slices.Equal(g.Pix, c.want) {
				t.Errorf("pixels %v, want %v", g.Pix, c.want)
			}
			// The RGB path turns the same way (each pixel's 4 bytes move together).
			rgb := image.NewNRGBA(image.Rect(0, 0, 3, 2))
			for i, v := range src.Pix {
				copy(rgb.Pix[4*i:], []uint8{v, v + 10, v + 20, 255})
			}
			img, err := orient(c.o, rgb)
			if err != nil {
				t.Fatal(err)
			}
			out := img.(*image.NRGBA)
			for i, v := range c.want {
				if got := out.Pix[4*i : 4*i+4]; !slices.Equal(got, []uint8{v, v + 10, v + 20, 255}) {
					t.Errorf("RGB pixel %d = %v, want %d,%d,%d,255", i, got, v, v+10, v+20)
				}
			}
		})
	}
	// A sub-image (bounds not at the origin) reads its own pixels.
	sub := src.SubImage(image.Rect(1, 0, 3, 2)).(*image.Gray) // 2 3 / 5 6
	g, err := orientMask("rot180", sub)
	if err != nil || !slices.Equal(g.Pix, []uint8{6, 5, 3, 2}) {
		t.Errorf("sub-image rot180: %v %v", g, err)
	}
	if _, err := orient("rot90", image.NewRGBA(image.Rect(0, 0, 2, 2))); err == nil {
		t.Error("RGBA image turned, want an unsupported-type error")
	}
	for _, o := range append([]string{""}, Orientations...) {
		if !validOrient(o) {
			t.Errorf("%q not valid", o)
		}
	}
	if validOrient("rot45") {
		t.Error("rot45 valid")
	}
}
