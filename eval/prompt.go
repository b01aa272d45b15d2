package eval

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
)

// Prompt kinds.
const (
	KindBox   = "box"
	KindPoint = "point"
)

// Prompt is one visual prompt for one object, in the image's pixel
// coordinates (x to the right, y down, pixel (x, y) covering
// [x, x+1) × [y, y+1)).
//
// A box is [x0, y0, x1, y1] with x1, y1 the largest foreground column and
// row, inclusive (SAM's batched_mask_to_box and MedSAM's convention; a
// one-pixel object has x0 == x1). A point is the integer [x, y] of one
// foreground pixel and is always a positive (foreground) click.
type Prompt struct {
	// Kind is KindBox or KindPoint.
	Kind string
	// Box is set for KindBox.
	Box [4]float64
	// Point is set for KindPoint.
	Point [2]float64
	// Clicks are corrective clicks after the first prompt, and MaskInput
	// the Segmenter's own LowRes of the previous round (interactive
	// evaluation, clicks.go; only for Refiners).
	Clicks    []Click
	MaskInput []float32
	// Modality is the image's modality (from the data's meta.json), for
	// Segmenters that use it as a prior.
	Modality string
}

// ParseKinds turns a --prompt value ("box", "point" or "both") into the
// prompt kinds to evaluate, in the order box, point.
func ParseKinds(s string) ([]string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case KindBox:
		return []string{KindBox}, nil
	case KindPoint:
		return []string{KindPoint}, nil
	case "both":
		return []string{KindBox, KindPoint}, nil
	}
	return nil, fmt.Errorf("prompt kind %q: want box, point or both", s)
}

// BoxPrompt returns the tight box of the foreground of a w-wide row-major
// mask: min and max (inclusive) of the foreground columns and rows, over the
// whole mask, without jitter. ok is false for an empty mask.
//
// This is SAM's batched_mask_to_box and MedSAM's np.min/np.max convention.
// SAM-Med2D's get_boxes_from_mask differs in two ways: it takes the
// scikit-image regionprops bbox, whose max is exclusive (x1 = max x + 1),
// of the largest 8-connected component, and adds jitter of up to 5 pixels
// when used for training. SA-Med2D masks are mostly single components, so
// the box differs from SAM-Med2D's test box by one pixel on the right and
// bottom edges.
func BoxPrompt(mask []bool, w int) (p Prompt, ok bool) {
	x0, y0, x1, y1 := w, len(mask)/max(w, 1), -1, -1
	for i, v := range mask {
		if !v {
			continue
		}
		x, y := i%w, i/w
		x0, x1 = min(x0, x), max(x1, x)
		y0, y1 = min(y0, y), max(y1, y)
	}
	if x1 < 0 {
		return Prompt{}, false
	}
	return Prompt{Kind: KindBox, Box: [4]float64{float64(x0), float64(y0), float64(x1), float64(y1)}}, true
}

// PointPrompt returns one foreground pixel of a w-wide row-major mask drawn
// uniformly at random with rng, as integer [x, y]. ok is false for an empty
// mask.
func PointPrompt(mask []bool, w int, rng *rand.Rand) (p Prompt, ok bool) {
	n := 0
	for _, v := range mask {
		if v {
			n++
		}
	}
	if n == 0 {
		return Prompt{}, false
	}
	k := rng.IntN(n)
	for i, v := range mask {
		if !v {
			continue
		}
		if k == 0 {
			return Prompt{Kind: KindPoint, Point: [2]float64{float64(i % w), float64(i / w)}}, true
		}
		k--
	}
	panic("unreachable")
}

// ObjectRNG returns the random source for the prompts of one object. It
// depends only on the seed, the image path and the mask path, so that the
// prompts of an object do not change with the order or subset of objects
// evaluated.
func ObjectRNG(seed int64, image, mask string) *rand.Rand {
	h := fnv.New128a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(image))
	h.Write([]byte{0})
	h.Write([]byte(mask))
	sum := h.Sum(nil)
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[:8]), binary.LittleEndian.Uint64(sum[8:])))
}

// SimulatePrompt returns the prompt of the given kind for one object, as the
// paper tests: the tight box of the mask without jitter, or one uniformly
// random foreground pixel drawn from ObjectRNG(seed, image, mask). ok is
// false for an empty mask.
func SimulatePrompt(kind string, mask []bool, w int, seed int64, image, maskPath string) (Prompt, bool) {
	if kind == KindBox {
		return BoxPrompt(mask, w)
	}
	return PointPrompt(mask, w, ObjectRNG(seed, image, maskPath))
}

// PromptFileVersion is the format version written to prompts.json.
const PromptFileVersion = 1

// PromptFile is the content of prompts.json: every prompt of a run, so that
// another run (another model) can be evaluated on identical prompts.
type PromptFile struct {
	Version int `json:"version"`
	// Seed is the seed the prompts were simulated with (informational on
	// replay).
	Seed int64 `json:"seed"`
	// Kinds lists the prompt kinds present.
	Kinds []string `json:"kinds"`
	// Prompts lists one record per object and kind, in image, mask, kind
	// order.
	Prompts []PromptRecord `json:"prompts"`
}

// PromptRecord is one prompt of prompts.json.
type PromptRecord struct {
	// Image and Mask are the paths of image2label.json.
	Image string `json:"image"`
	Mask  string `json:"mask"`
	// Class is the object's class, for reading convenience.
	Class string `json:"class"`
	Kind  string `json:"kind"`
	// Box is set for box prompts, Point for point prompts.
	Box   *[4]float64 `json:"box,omitempty"`
	Point *[2]float64 `json:"point,omitempty"`
	// Size is the image's [width, height] and Area the mask's foreground
	// pixel count when the prompt was made; a replay on data where either
	// differs is refused.
	Size [2]int `json:"size"`
	Area int    `json:"area"`
}

// Prompt returns the record's prompt.
func (r PromptRecord) Prompt() Prompt {
	p := Prompt{Kind: r.Kind}
	if r.Box != nil {
		p.Box = *r.Box
	}
	if r.Point != nil {
		p.Point = *r.Point
	}
	return p
}

func newPromptRecord(image, mask, class string, p Prompt, w, h, area int) PromptRecord {
	r := PromptRecord{Image: image, Mask: mask, Class: class, Kind: p.Kind, Size: [2]int{w, h}, Area: area}
	r.Box, r.Point = p.coords()
	return r
}

// coords returns copies of the coordinates of the prompt's kind (the other
// is nil).
func (p Prompt) coords() (box *[4]float64, point *[2]float64) {
	switch p.Kind {
	case KindBox:
		b := p.Box
		return &b, nil
	case KindPoint:
		pt := p.Point
		return nil, &pt
	}
	return nil, nil
}

// ReadPromptFile reads and checks a prompts.json: known version, known
// kinds, each record with the coordinates of its kind inside its image, and
// no (image, mask, kind) twice.
func ReadPromptFile(path string) (*PromptFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read prompts %s: %w", path, err)
	}
	var f PromptFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse prompts %s: %w", path, err)
	}
	if f.Version != PromptFileVersion {
		return nil, fmt.Errorf("prompts %s: version %d, want %d", path, f.Version, PromptFileVersion)
	}
	if len(f.Prompts) == 0 {
		return nil, fmt.Errorf("prompts %s: no prompts", path)
	}
	seen := map[promptKey]bool{}
	kinds := map[string]bool{}
	for i, r := range f.Prompts {
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("prompts %s: record %d (%s %s): %w", path, i, r.Image, r.Mask, err)
		}
		k := promptKey{r.Image, r.Mask, r.Kind}
		if seen[k] {
			return nil, fmt.Errorf("prompts %s: two %s prompts for %s", path, r.Kind, r.Mask)
		}
		seen[k] = true
		kinds[r.Kind] = true
	}
	f.Kinds = f.Kinds[:0]
	for _, k := range []string{KindBox, KindPoint} {
		if kinds[k] {
			f.Kinds = append(f.Kinds, k)
		}
	}
	return &f, nil
}

func (r PromptRecord) check() error {
	w, h := float64(r.Size[0]), float64(r.Size[1])
	if r.Size[0] <= 0 || r.Size[1] <= 0 {
		return fmt.Errorf("bad image size %v", r.Size)
	}
	in := func(x, y float64) bool { return x >= 0 && y >= 0 && x < w && y < h }
	switch r.Kind {
	case KindBox:
		if r.Box == nil {
			return errors.New("box prompt without box")
		}
		b := *r.Box
		if !in(b[0], b[1]) || !in(b[2], b[3]) || b[2] < b[0] || b[3] < b[1] {
			return fmt.Errorf("box %v is not inside the %dx%d image", b, r.Size[0], r.Size[1])
		}
	case KindPoint:
		if r.Point == nil {
			return errors.New("point prompt without point")
		}
		if p := *r.Point; !in(p[0], p[1]) {
			return fmt.Errorf("point %v is not inside the %dx%d image", p, r.Size[0], r.Size[1])
		}
	default:
		return fmt.Errorf("unknown prompt kind %q", r.Kind)
	}
	return nil
}

// WritePromptFile writes f as indented JSON.
func WritePromptFile(path string, f *PromptFile) error {
	data, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return fmt.Errorf("encode prompts: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write prompts: %w", err)
	}
	return nil
}

type promptKey struct{ image, mask, kind string }

// replay indexes a prompt file for a run.
type replay struct {
	path    string
	records map[promptKey]PromptRecord
}

// newReplay checks that the prompt file covers exactly the objects of the
// run for the requested kinds: every object has a prompt of every kind, and
// the file has no prompt for an object not in the data.
func newReplay(path string, f *PromptFile, objects []objectRef, kinds []string) (*replay, error) {
	rp := &replay{path: path, records: map[promptKey]PromptRecord{}}
	for _, r := range f.Prompts {
		rp.records[promptKey{r.Image, r.Mask, r.Kind}] = r
	}
	want := map[promptKey]bool{}
	var missing []string
	for _, o := range objects {
		for _, k := range kinds {
			key := promptKey{o.image, o.mask, k}
			want[key] = true
			if _, ok := rp.records[key]; !ok {
				missing = append(missing, k+" "+o.mask)
			}
		}
	}
	var extra []string
	requested := map[string]bool{}
	for _, k := range kinds {
		requested[k] = true
	}
	for key := range rp.records {
		if requested[key.kind] && !want[key] {
			extra = append(extra, key.kind+" "+key.mask)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		sort.Strings(missing)
		sort.Strings(extra)
		return nil, fmt.Errorf("prompts %s do not match the data: %s", path, describeMismatch(missing, extra))
	}
	return rp, nil
}

func describeMismatch(missing, extra []string) string {
	var parts []string
	list := func(s []string) string {
		if len(s) > 3 {
			return strings.Join(s[:3], ", ") + fmt.Sprintf(" and %d more", len(s)-3)
		}
		return strings.Join(s, ", ")
	}
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("%d object prompt(s) missing from the file (%s)", len(missing), list(missing)))
	}
	if len(extra) > 0 {
		parts = append(parts, fmt.Sprintf("%d prompt(s) for objects not in the data (%s)", len(extra), list(extra)))
	}
	return strings.Join(parts, "; ")
}

// lookup returns the replayed prompt of one object, checking that the image
// size and mask area are those the prompt was made on.
func (rp *replay) lookup(o objectRef, kind string, w, h, area int) (PromptRecord, error) {
	r := rp.records[promptKey{o.image, o.mask, kind}]
	if r.Size != [2]int{w, h} {
		return r, fmt.Errorf("prompts %s do not match the data: image %s is %dx%d, the prompts were made on %dx%d", rp.path, o.image, w, h, r.Size[0], r.Size[1])
	}
	if r.Area != area {
		return r, fmt.Errorf("prompts %s do not match the data: mask %s has %d foreground pixels, the prompts were made on %d", rp.path, o.mask, area, r.Area)
	}
	return r, nil
}
