package segsam

import "testing"

func TestLabelImage(t *testing.T) {
	for _, tt := range []struct {
		name   string
		labels []uint16
		bits   int
	}{
		{"8-bit", []uint16{0, 1, 255, 7, 0, 3}, 8},
		{"16-bit", []uint16{0, 1, 256, 7, 1000, 3}, 16},
	} {
		img := LabelImage(tt.labels, 2, 3)
		for i, want := range tt.labels {
			r, _, _, _ := img.At(i%3, i/3).RGBA() // 16-bit scale
			got := uint16(r)
			if tt.bits == 8 {
				got = uint16(r >> 8)
			}
			if got != want {
				t.Errorf("%s: pixel %d = %d, want %d", tt.name, i, got, want)
			}
		}
	}
}
