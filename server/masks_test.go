package server

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestRLEGolden checks the encoding of small masks against RLEs written by
// hand from COCO's definition (column-major runs, starting with 0s), kept
// in testdata/server/rle_golden.json.
func TestRLEGolden(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "server", "rle_golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Name string   `json:"name"`
		Rows []string `json:"rows"` // '1' inside, '0' outside
		RLE  RLE      `json:"rle"`
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no golden cases")
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			h, w := len(c.Rows), len(c.Rows[0])
			mask := make([]bool, h*w)
			for y, row := range c.Rows {
				for x, ch := range row {
					mask[y*w+x] = ch == '1'
				}
			}
			got := EncodeRLE(mask, h, w)
			if got.Size != c.RLE.Size || len(got.Counts) != len(c.RLE.Counts) {
				t.Fatalf("EncodeRLE = %+v, want %+v", got, c.RLE)
			}
			for i := range got.Counts {
				if got.Counts[i] != c.RLE.Counts[i] {
					t.Fatalf("EncodeRLE = %+v, want %+v", got, c.RLE)
				}
			}
			back, err := c.RLE.Decode()
			if err != nil {
				t.Fatal(err)
			}
			for i := range back {
				if back[i] != mask[i] {
					t.Fatalf("Decode differs at %d", i)
				}
			}
		})
	}
}

func TestRLERoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range [][2]int{{1, 1}, {3, 5}, {17, 4}, {64, 64}} {
		h, w := size[0], size[1]
		mask := make([]bool, h*w)
		for i := range mask {
			mask[i] = r.IntN(3) == 0
		}
		rle := EncodeRLE(mask, h, w)
		sum := 0
		for _, c := range rle.Counts {
			sum += c
		}
		if sum != h*w {
			t.Fatalf("%v: counts sum to %d", size, sum)
		}
		back, err := rle.Decode()
		if err != nil {
			t.Fatal(err)
		}
		for i := range mask {
			if back[i] != mask[i] {
				t.Fatalf("%v: round trip differs at %d", size, i)
			}
		}
	}
}

func TestRLEDecodeErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		rle  RLE
	}{
		{"short", RLE{Size: [2]int{2, 2}, Counts: []int{1, 2}}},
		{"long", RLE{Size: [2]int{2, 2}, Counts: []int{1, 4}}},
		{"negative", RLE{Size: [2]int{2, 2}, Counts: []int{-1, 5}}},
		{"empty size", RLE{Size: [2]int{0, 2}, Counts: []int{0}}},
		{"huge size", RLE{Size: [2]int{1 << 20, 1 << 20}, Counts: []int{1}}},
	} {
		if _, err := c.rle.Decode(); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func TestFloatsRoundTrip(t *testing.T) {
	v := []float32{0, -1.5, 3.25, 1e-8}
	got, err := decodeFloats(encodeFloats(v))
	if err != nil || len(got) != len(v) {
		t.Fatalf("%v %v", got, err)
	}
	for i := range v {
		if got[i] != v[i] {
			t.Errorf("%d: %v, want %v", i, got[i], v[i])
		}
	}
	if _, err := decodeFloats("AAAAAAAAwH8="); err == nil { // 0, NaN
		t.Error("NaN accepted")
	}
	if _, err := decodeFloats("AAA="); err == nil {
		t.Error("2 bytes accepted")
	}
}
