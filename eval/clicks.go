package eval

import "fmt"

// Interactive evaluation (Options.Clicks): after the first prompt, N
// corrective clicks, each placed where an annotator would click: on the
// pixel of the current error region (missed object or wrongly covered
// background) farthest from the region's boundary (the protocol of
// interactive-segmentation benchmarks, e.g. RITM; SAM-Med2D reports its
// models after 1, 3, 5 ... clicks). A click on a missed pixel is positive,
// on a false positive negative. Clicks accumulate: round r sees the first
// prompt, all r clicks, and the model's own low-res logits of round r-1 as
// mask prompt. The results after the last click form their own rows
// ("box+N", "point+N").

// Click is one corrective click, in pixel coordinates of the image.
type Click struct {
	X, Y     float64
	Positive bool
}

// Refiner is implemented by Segmenters that take corrective clicks
// (Prompt.Clicks) and a mask prompt (Prompt.MaskInput, the LowRes of their
// own previous Prediction). Only they get the interactive rows.
type Refiner interface {
	AcceptsClicks() bool
}

func acceptsClicks(s Segmenter) bool {
	r, ok := s.(Refiner)
	return ok && r.AcceptsClicks()
}

// ClickLabel is the row label of a prompt kind after n clicks.
func ClickLabel(kind string, n int) string { return fmt.Sprintf("%s+%d", kind, n) }

// NextClick places the next corrective click for a prediction pred against
// the ground truth gt (both w-wide row-major): the error pixel farthest
// (4-connected steps) from any correct pixel or the image border, the first
// in row-major order among equals. ok is false when pred equals gt.
func NextClick(pred, gt []bool, w int) (c Click, ok bool) {
	n := len(gt)
	h := n / w
	dist := make([]int32, n) // 0 outside the error region
	var queue []int32
	for i := range n {
		if pred[i] != gt[i] {
			x, y := i%w, i/w
			if x == 0 || y == 0 || x == w-1 || y == h-1 {
				dist[i] = 1 // next to the border
				queue = append(queue, int32(i))
			} else {
				dist[i] = -1 // unknown yet
			}
		}
	}
	// Seed with error pixels next to a correct pixel, then grow inwards.
	for i := range n {
		if dist[i] != -1 {
			continue
		}
		x, y := i%w, i/w
		for _, j := range [4]int{i - 1, i + 1, i - w, i + w} {
			jx, jy := j%w, j/w
			if (jx == x || jy == y) && pred[j] == gt[j] {
				dist[i] = 1
				queue = append(queue, int32(i))
				break
			}
		}
	}
	for len(queue) > 0 {
		i := int(queue[0])
		queue = queue[1:]
		x, y := i%w, i/w
		for _, nb := range [4][2]int{{x - 1, y}, {x + 1, y}, {x, y - 1}, {x, y + 1}} {
			if nb[0] < 0 || nb[1] < 0 || nb[0] >= w || nb[1] >= h {
				continue
			}
			j := nb[1]*w + nb[0]
			if dist[j] == -1 {
				dist[j] = dist[i] + 1
				queue = append(queue, int32(j))
			}
		}
	}
	best := -1
	for i, d := range dist {
		if d > 0 && (best < 0 || d > dist[best]) {
			best = i
		}
	}
	if best < 0 {
		return Click{}, false
	}
	return Click{X: float64(best % w), Y: float64(best / w), Positive: gt[best]}, true
}
