package segsam

import (
	"context"
	"fmt"
	"image"
	"sort"

	"github.com/segsam/segsam/transform"
)

// ClassEntry is one row of a label map's class table.
type ClassEntry struct {
	// ID is the value of the class in the label map: the class's index in
	// the model's vocabulary + 1 (for a plain SAM, the object's rank + 1).
	ID   int    `json:"id"`
	Name string `json:"name"`
	// Pixels (voxels for a volume) carrying the ID in the label map.
	Pixels int `json:"pixels"`
	// Objects is the number of generated masks of the class that hold
	// pixels in the map; Score the highest predicted IoU among them and
	// Confidence their highest class confidence.
	Objects    int     `json:"objects"`
	Score      float32 `json:"score"`
	Confidence float32 `json:"confidence,omitempty"`
	// VolumeML is the class's volume in millilitres (volumes only).
	VolumeML float64 `json:"volume_ml,omitempty"`
}

// LabelMap is an image's automatic label map.
type LabelMap struct {
	H, W int
	// Labels holds a class ID per pixel, row-major; 0 is background.
	Labels []uint16
	// Score is the predicted IoU of the object holding each pixel (0 for
	// background); volume.go uses it to merge axes.
	Score []float32
	// Classes lists the IDs present, by ID.
	Classes []ClassEntry
}

// MergeOptions configures MergeObjects.
type MergeOptions struct {
	// MinRegionArea drops connected regions (4-connected) of one label
	// smaller than this many pixels, and objects left with fewer pixels
	// (0: keep every fragment).
	MinRegionArea int
}

// MergeObjects resolves overlapping objects into one label map: objects
// are painted by descending score, each taking the pixels of its mask that
// no higher-scored object holds (the higher score wins); then fragments
// smaller than MinRegionArea are dropped. names are the model's classes
// (nil for a plain SAM: each object gets its own ID, named object_<ID>).
func MergeObjects(h, w int, objs []Object, names []string, opts MergeOptions) *LabelMap {
	lm := &LabelMap{H: h, W: w, Labels: make([]uint16, h*w), Score: make([]float32, h*w)}
	order := make([]int, len(objs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return objs[order[i]].Score() > objs[order[j]].Score() })
	owner := make([]int32, h*w) // index+1 of the object holding each pixel
	ids := make([]uint16, len(objs))
	for rank, i := range order {
		ob := &objs[i]
		id := rank + 1
		if names != nil && ob.ClassIndex >= 0 {
			id = ob.ClassIndex + 1
		}
		ids[i] = uint16(id)
		var claimed []int
		bw := ob.Box[2] - ob.Box[0] + 1
		for y := ob.Box[1]; y <= ob.Box[3]; y++ {
			for x := ob.Box[0]; x <= ob.Box[2]; x++ {
				p := y*w + x
				if ob.Mask[(y-ob.Box[1])*bw+x-ob.Box[0]] && owner[p] == 0 {
					claimed = append(claimed, p)
				}
			}
		}
		if len(claimed) == 0 || len(claimed) < opts.MinRegionArea {
			continue
		}
		for _, p := range claimed {
			owner[p] = int32(i + 1)
			lm.Labels[p] = uint16(id)
			lm.Score[p] = ob.Score()
		}
	}
	if opts.MinRegionArea > 1 {
		removeSmallRegions(lm.Labels, h, w, opts.MinRegionArea, func(p int) { owner[p], lm.Score[p] = 0, 0 })
	}
	// Class table from what is left.
	byID := map[int]*ClassEntry{}
	counted := map[int32]bool{}
	for p, id := range lm.Labels {
		if id == 0 {
			continue
		}
		e := byID[int(id)]
		if e == nil {
			e = &ClassEntry{ID: int(id)}
			byID[int(id)] = e
		}
		e.Pixels++
		if o := owner[p]; !counted[o] {
			counted[o] = true
			ob := &objs[o-1]
			e.Objects++
			e.Score = max(e.Score, ob.Score())
			e.Confidence = max(e.Confidence, ob.Confidence)
			if e.Name == "" {
				e.Name = ob.Class
			}
		}
	}
	for _, e := range byID {
		if names != nil && e.ID-1 < len(names) {
			e.Name = names[e.ID-1]
		}
		if e.Name == "" {
			e.Name = fmt.Sprintf("object_%d", e.ID)
		}
		lm.Classes = append(lm.Classes, *e)
	}
	sort.Slice(lm.Classes, func(i, j int) bool { return lm.Classes[i].ID < lm.Classes[j].ID })
	return lm
}

// removeSmallRegions zeroes the 4-connected regions of one label with fewer
// than minArea pixels, calling clear for each zeroed pixel.
func removeSmallRegions(labels []uint16, h, w, minArea int, clear func(p int)) {
	seen := make([]bool, len(labels))
	var stack, region []int
	for start, id := range labels {
		if id == 0 || seen[start] {
			continue
		}
		region = region[:0]
		stack = append(stack[:0], start)
		seen[start] = true
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			region = append(region, p)
			x, y := p%w, p/w
			for _, q := range [4][2]int{{x - 1, y}, {x + 1, y}, {x, y - 1}, {x, y + 1}} {
				if q[0] < 0 || q[1] < 0 || q[0] >= w || q[1] >= h {
					continue
				}
				n := q[1]*w + q[0]
				if !seen[n] && labels[n] == id {
					seen[n] = true
					stack = append(stack, n)
				}
			}
		}
		if len(region) < minArea {
			for _, p := range region {
				labels[p] = 0
				clear(p)
			}
		}
	}
}

// Mask returns the pixels of class ID id, row-major.
func (lm *LabelMap) Mask(id int) []bool {
	out := make([]bool, len(lm.Labels))
	for i, v := range lm.Labels {
		out[i] = int(v) == id
	}
	return out
}

// ImageLabels is the automatic segmentation of one image.
type ImageLabels struct {
	*LabelMap
	// Generated holds the objects before merging and the presence scores.
	Generated *Generated
}

// SegmentImage labels every object of an image: Generate, then
// MergeObjects. An image where nothing is kept gives an empty class table,
// not an error.
func (a *Automatic) SegmentImage(ctx context.Context, img transform.Image, merge MergeOptions) (*ImageLabels, error) {
	gen, err := a.Generate(ctx, img)
	if err != nil {
		return nil, err
	}
	return &ImageLabels{LabelMap: MergeObjects(img.H, img.W, gen.Objects, a.Classes(), merge), Generated: gen}, nil
}

// LabelImage returns a label map [h*w] as a grey image of its values:
// 8-bit when every value fits, else 16-bit (what viewers read as a label
// PNG).
func LabelImage(labels []uint16, h, w int) image.Image {
	maxID := uint16(0)
	for _, v := range labels {
		maxID = max(maxID, v)
	}
	if maxID <= 255 {
		g := image.NewGray(image.Rect(0, 0, w, h))
		for i, v := range labels {
			g.Pix[i] = uint8(v)
		}
		return g
	}
	g := image.NewGray16(image.Rect(0, 0, w, h))
	for i, v := range labels {
		g.Pix[2*i], g.Pix[2*i+1] = uint8(v>>8), uint8(v)
	}
	return g
}
