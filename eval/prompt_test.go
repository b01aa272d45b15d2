package eval

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseKinds(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"box", []string{KindBox}, false},
		{"Point", []string{KindPoint}, false},
		{"both", []string{KindBox, KindPoint}, false},
		{"", nil, true},
		{"mask", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseKinds(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("ParseKinds(%q) = %q, %v", tt.in, got, err)
		}
	}
}

func TestBoxPrompt(t *testing.T) {
	tests := []struct {
		name string
		mask string // rows separated by |
		want [4]float64
		ok   bool
	}{
		{"two pixels", "00000|01000|00010|00000", [4]float64{1, 1, 3, 2}, true},
		{"one pixel: x1 == x0", "00000|00000|00000|00100", [4]float64{2, 3, 2, 3}, true},
		{"full", "11|11", [4]float64{0, 0, 1, 1}, true},
		{"two components: whole extent", "10000|00000|00001", [4]float64{0, 0, 4, 2}, true},
		{"empty", "000|000", [4]float64{}, false},
	}
	for _, tt := range tests {
		rows := strings.Split(tt.mask, "|")
		p, ok := BoxPrompt(bits(strings.Join(rows, "")), len(rows[0]))
		if ok != tt.ok || p.Box != tt.want || (ok && p.Kind != KindBox) {
			t.Errorf("%s: BoxPrompt = %+v, %v; want box %v, %v", tt.name, p, ok, tt.want, tt.ok)
		}
	}
}

func TestPointPrompt(t *testing.T) {
	const w = 7
	mask := bits("0000000" + "0011000" + "0001100" + "0000000")
	seen := map[[2]float64]int{}
	for seed := range int64(400) {
		p, ok := SimulatePrompt(KindPoint, mask, w, seed, "images/a.png", "masks/a_liver_000.png")
		if !ok || p.Kind != KindPoint {
			t.Fatalf("seed %d: %+v, %v", seed, p, ok)
		}
		x, y := int(p.Point[0]), int(p.Point[1])
		if float64(x) != p.Point[0] || float64(y) != p.Point[1] || !mask[y*w+x] {
			t.Fatalf("seed %d: point %v is not an integer foreground pixel", seed, p.Point)
		}
		again, _ := SimulatePrompt(KindPoint, mask, w, seed, "images/a.png", "masks/a_liver_000.png")
		if again.Kind != p.Kind || again.Point != p.Point || again.Box != p.Box {
			t.Fatalf("seed %d: %v then %v", seed, p.Point, again.Point)
		}
		seen[p.Point]++
	}
	// Uniform over the four foreground pixels: each about 100 of 400.
	if len(seen) != 4 {
		t.Errorf("points drawn %v, want all 4 foreground pixels", seen)
	}
	for pt, n := range seen {
		if n < 60 || n > 140 {
			t.Errorf("pixel %v drawn %d times of 400", pt, n)
		}
	}
	// The point depends on the object: another mask path, another stream.
	same := 0
	for seed := range int64(50) {
		a, _ := SimulatePrompt(KindPoint, mask, w, seed, "images/a.png", "masks/a_liver_000.png")
		b, _ := SimulatePrompt(KindPoint, mask, w, seed, "images/a.png", "masks/a_liver_001.png")
		if a.Point == b.Point {
			same++
		}
	}
	if same > 25 {
		t.Errorf("%d of 50 points equal for two different objects", same)
	}
	if _, ok := SimulatePrompt(KindPoint, bits("0000"), 2, 1, "i", "m"); ok {
		t.Error("point on an empty mask: ok")
	}
}

func TestReadPromptFileErrors(t *testing.T) {
	good := `{"version":1,"seed":1,"kinds":["box"],"prompts":[{"image":"images/a.png","mask":"masks/a_x_000.png","class":"x","kind":"box","box":[1,1,3,3],"size":[10,10],"area":4}]}`
	tests := []struct {
		name, content, wantErr string
	}{
		{"not json", "{", "parse"},
		{"version", strings.Replace(good, `"version":1`, `"version":7`, 1), "version 7"},
		{"empty", `{"version":1,"prompts":[]}`, "no prompts"},
		{"box outside", strings.Replace(good, `[1,1,3,3]`, `[1,1,30,3]`, 1), "not inside"},
		{"box reversed", strings.Replace(good, `[1,1,3,3]`, `[3,1,1,3]`, 1), "not inside"},
		{"kind", strings.Replace(good, `"kind":"box"`, `"kind":"scribble"`, 1), "unknown prompt kind"},
		{"point missing", strings.Replace(good, `"kind":"box"`, `"kind":"point"`, 1), "without point"},
		{"duplicate", strings.Replace(good, `}]}`, `},`+good[strings.Index(good, `{"image"`):], 1), "two box prompts"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		p := filepath.Join(dir, tt.name+".json")
		os.WriteFile(p, []byte(tt.content), 0o644)
		if _, err := ReadPromptFile(p); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.wantErr)
		}
	}
	p := filepath.Join(dir, "good.json")
	os.WriteFile(p, []byte(good), 0o644)
	f, err := ReadPromptFile(p)
	if err != nil || len(f.Prompts) != 1 || f.Prompts[0].Prompt().Box != [4]float64{1, 1, 3, 3} {
		t.Errorf("good file: %+v, %v", f, err)
	}
}

func TestBaseline(t *testing.T) {
	ctx := context.Background()
	const h, w = 100, 120
	rect := make([]bool, h*w)
	for y := 20; y < 40; y++ {
		for x := 10; x < 60; x++ {
			rect[y*w+x] = true
		}
	}
	box, _ := BoxPrompt(rect, w)
	ellipse := drawShape(ShapeEllipse, h, w, box.Box[0], box.Box[1], box.Box[2]+1, box.Box[3]+1)
	tests := []struct {
		name    string
		shape   string
		prompt  Prompt
		gt      []bool
		dice    float64 // checked when gt != nil
		area    int     // checked when > 0
		minArea int
		maxArea int
	}{
		{"box on its rectangle", ShapeBox, box, rect, 1, 50 * 20, 0, 0},
		{"ellipse on its ellipse", ShapeEllipse, box, ellipse, 1, 0, 0, 0},
		// An inscribed ellipse covers about π/4 of its box.
		{"ellipse in rectangle", ShapeEllipse, box, nil, 0, 0, 750, 820},
		// r = 0.1 × min(100, 120) = 10: a 20×20 square, a disc of about π r².
		{"square at point", ShapeBox, Prompt{Kind: KindPoint, Point: [2]float64{50, 50}}, nil, 0, 400, 0, 0},
		{"disc at point", ShapeEllipse, Prompt{Kind: KindPoint, Point: [2]float64{50, 50}}, nil, 0, 0, 300, 330},
		// Clipped at the image corner: x, y in [-9.5, 10.5) keeps 10×10.
		{"square at corner", ShapeBox, Prompt{Kind: KindPoint, Point: [2]float64{0, 0}}, nil, 0, 100, 0, 0},
	}
	for _, tt := range tests {
		b, err := NewBaseline(tt.shape)
		if err != nil {
			t.Fatal(err)
		}
		preds, err := b.Segment(ctx, "x.png", h, w, []Prompt{tt.prompt})
		if err != nil || len(preds) != 1 || len(preds[0].Mask) != h*w {
			t.Fatalf("%s: %v, %d predictions", tt.name, err, len(preds))
		}
		m := preds[0].Mask
		if tt.gt != nil && !near(Dice(m, tt.gt), tt.dice) {
			t.Errorf("%s: Dice %v, want %v", tt.name, Dice(m, tt.gt), tt.dice)
		}
		n := count(m)
		if tt.area > 0 && n != tt.area {
			t.Errorf("%s: area %d, want %d", tt.name, n, tt.area)
		}
		if tt.maxArea > 0 && (n < tt.minArea || n > tt.maxArea) {
			t.Errorf("%s: area %d, want in [%d, %d]", tt.name, n, tt.minArea, tt.maxArea)
		}
		for i, v := range m {
			if v && tt.prompt.Kind == KindBox {
				x, y := i%w, i/w
				if float64(x) < box.Box[0] || float64(x) > box.Box[2] || float64(y) < box.Box[1] || float64(y) > box.Box[3] {
					t.Errorf("%s: pixel (%d,%d) outside the box", tt.name, x, y)
					break
				}
			}
		}
	}
	b := &Baseline{Shape: ShapeBox}
	if _, err := b.Segment(ctx, "x.png", h, w, []Prompt{{Kind: "scribble"}}); err == nil {
		t.Error("unknown prompt kind: no error")
	}
	if _, err := b.Segment(ctx, "x.png", 0, w, nil); err == nil {
		t.Error("zero height: no error")
	}
	if _, err := NewBaseline("star"); err == nil {
		t.Error("NewBaseline(star): no error")
	}
	if b.Classes() != nil || b.PredictsIoU() || b.Name() != "baseline-box" {
		t.Errorf("baseline identity: %q %v %v", b.Name(), b.Classes(), b.PredictsIoU())
	}
}
