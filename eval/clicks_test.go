package eval

import (
	"context"
	"testing"
)

func grid(rows ...string) ([]bool, int) {
	var out []bool
	for _, r := range rows {
		for _, c := range r {
			out = append(out, c == '#')
		}
	}
	return out, len(rows[0])
}

func TestNextClick(t *testing.T) {
	cases := []struct {
		name      string
		pred, gt  []string
		want      Click
		wantFound bool
	}{
		{"missed object: its centre, positive",
			[]string{".......", ".......", ".......", ".......", ".......", ".......", "......."},
			[]string{".......", ".#####.", ".#####.", ".#####.", ".#####.", ".#####.", "......."},
			Click{X: 3, Y: 3, Positive: true}, true},
		{"ties: the first in row-major order",
			[]string{".......", ".......", ".......", ".......", "......."},
			[]string{".......", ".#####.", ".#####.", ".#####.", "......."},
			Click{X: 2, Y: 2, Positive: true}, true},
		{"extra blob: its centre, negative",
			[]string{"###....", "###....", "###....", ".......", "......."},
			[]string{".......", ".......", ".......", ".......", "......#"},
			Click{X: 1, Y: 1, Positive: false}, true},
		{"largest error wins",
			[]string{"#......", ".......", ".......", ".......", "......."},
			[]string{".......", "....###", "....###", "....###", "......."},
			Click{X: 5, Y: 2, Positive: true}, true},
		{"perfect prediction: no click",
			[]string{"..#", "..#"}, []string{"..#", "..#"}, Click{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pred, w := grid(c.pred...)
			gt, _ := grid(c.gt...)
			got, ok := NextClick(pred, gt, w)
			if ok != c.wantFound || got != c.want {
				t.Errorf("NextClick = %+v, %v; want %+v, %v", got, ok, c.want, c.wantFound)
			}
		})
	}
}

func TestPromptTitle(t *testing.T) {
	for in, want := range map[string]string{"box": "Box", "point": "Point", "box+3": "Box + 3 clicks", "point+1": "Point + 1 click", "other": "other"} {
		if got := promptTitle(in); got != want {
			t.Errorf("promptTitle(%q) = %q, want %q", in, got, want)
		}
	}
}

// clickSegmenter answers a prompt with an empty mask, then, once clicks
// come, with the pixels of its positive clicks; it checks that each round
// passes back its own low-res mask.
type clickSegmenter struct {
	t      *testing.T
	rounds map[int]int // number of clicks seen -> calls
}

func (c *clickSegmenter) Name() string        { return "clicker" }
func (c *clickSegmenter) Classes() []string   { return nil }
func (c *clickSegmenter) AcceptsClicks() bool { return true }

func (c *clickSegmenter) Segment(_ context.Context, _ string, h, w int, prompts []Prompt) ([]Prediction, error) {
	out := make([]Prediction, len(prompts))
	for i, p := range prompts {
		c.rounds[len(p.Clicks)]++
		if len(p.Clicks) > 0 && (len(p.MaskInput) != 1 || int(p.MaskInput[0]) != len(p.Clicks)-1) {
			c.t.Errorf("round %d got mask input %v, want its previous round's", len(p.Clicks), p.MaskInput)
		}
		mask := make([]bool, h*w)
		for _, k := range p.Clicks {
			if k.Positive {
				mask[int(k.Y)*w+int(k.X)] = true
			}
		}
		out[i] = Prediction{Mask: mask, LowRes: []float32{float32(len(p.Clicks))}}
	}
	return out, nil
}

func TestRunWithClicks(t *testing.T) {
	ds := openSubset(t)
	clicker := &clickSegmenter{t: t, rounds: map[int]int{}}
	rep, err := Run(context.Background(), ds, []Segmenter{clicker, &Baseline{Shape: ShapeBox}}, Options{Prompt: "both", Seed: 1, Clicks: 2, GalleryN: -1})
	if err != nil {
		t.Fatal(err)
	}
	objects := rep.Objects * 2 // box and point
	if clicker.rounds[0] != objects || clicker.rounds[1] != objects || clicker.rounds[2] != objects {
		t.Errorf("calls per number of clicks: %v, want %d each of 0, 1, 2", clicker.rounds, objects)
	}
	rows := map[string]int{}
	for _, r := range rep.Results {
		rows[r.Method+"/"+r.Prompt]++
		if r.Method == "clicker" && r.Prompt == "box+2" && r.DSC == 0 {
			t.Errorf("%s: two positive clicks on the object gave DSC 0", r.Mask)
		}
	}
	for _, k := range []string{"clicker/box", "clicker/point", "clicker/box+2", "clicker/point+2", "baseline-box/box"} {
		if rows[k] != rep.Objects {
			t.Errorf("%s: %d results, want %d", k, rows[k], rep.Objects)
		}
	}
	if rows["baseline-box/box+2"] != 0 {
		t.Error("a baseline got interactive rows")
	}
}
