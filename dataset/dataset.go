// Package dataset reads and writes 2D segmentation sets in the SA-Med2D-16M
// layout:
//
//	images/<name>.png                 the image (8-bit grey or RGB)
//	masks/<name>_<class>_<nnn>.png    one binary object mask (0/255), same size
//	image2label.json                  {"images/<name>.png": ["masks/...png", ...]}
//	meta.json                         {"images": {"images/<name>.png": {modality, group, ...}},
//	                                   "classes": [...]}
//
// Open validates a set and loads images and masks lazily; Create writes one.
package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"image"
	"image/draw"
	_ "image/jpeg" // tolerate JPEG images in hand-made sets
	_ "image/png"  // the set format
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// File names of the two index files of a set.
const (
	Image2LabelFile = "image2label.json"
	MetaFile        = "meta.json"
)

// Dataset is an opened SA-Med2D-format set. Images and masks are read from
// disk only when loaded.
type Dataset struct {
	// Dir is the directory the set was opened from.
	Dir string
	// Images lists the images in path order.
	Images []*ImageEntry
	// Warnings lists problems that did not stop Open (missing meta.json,
	// images without meta, unrecognised modality names, ...).
	Warnings []string

	classes []string
}

// ImageEntry is one image of a set and its object masks.
type ImageEntry struct {
	// Path is the image path relative to the set directory, with forward
	// slashes, as keyed in image2label.json (e.g. "images/x.png").
	Path string
	// Name is the image file name without directory and extension.
	Name string
	// Modality is the canonical modality (see Modalities) or Unknown.
	Modality string
	// Group is the patient/case/sequence id; when meta.json gives none it is
	// the image path, so that the image forms its own group.
	Group string
	// Width and Height are the image size in pixels.
	Width, Height int
	// Meta is the image's meta.json record (Modality normalised).
	Meta ImageMeta
	// Masks lists the image's object masks in image2label.json order.
	Masks []*MaskEntry

	dir string
}

// MaskEntry is one object mask of an image.
type MaskEntry struct {
	// Path is the mask path relative to the set directory, as listed in
	// image2label.json (e.g. "masks/x_liver_000.png").
	Path string
	// Class is the object's class, parsed from the file name.
	Class string
	// Index is the mask's number within its class (the <nnn> suffix).
	Index int
}

// Open reads and validates the set in dir: image2label.json must exist and
// every image and mask it lists must be a readable image inside dir, with
// every mask the size of its image and named <image>_<class>_<nnn>.png.
// meta.json is optional; without it every image gets modality Unknown and a
// warning is recorded in Warnings.
func Open(dir string) (*Dataset, error) {
	var index map[string][]string
	if err := readJSON(filepath.Join(dir, Image2LabelFile), &index); err != nil {
		return nil, err
	}
	if len(index) == 0 {
		return nil, fmt.Errorf("open dataset %s: %s lists no images", dir, Image2LabelFile)
	}
	ds := &Dataset{Dir: dir}

	var meta metaFile
	metaPath := filepath.Join(dir, MetaFile)
	switch err := readJSON(metaPath, &meta); {
	case errors.Is(err, fs.ErrNotExist):
		ds.warnf("%s is missing: modalities set to %q, groups to one per image, classes inferred from mask names", MetaFile, Unknown)
	case err != nil:
		return nil, err
	}
	known := map[string]bool{}
	for _, c := range meta.Classes {
		if c == "" {
			return nil, fmt.Errorf("open dataset %s: %s lists an empty class name", dir, MetaFile)
		}
		known[c] = true
	}
	classes := map[string]bool{}

	paths := make([]string, 0, len(index))
	for p := range index {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	seenMask := map[string]string{}
	var errs []error
	for _, p := range paths {
		e, err := ds.openImage(dir, p, index[p], meta, known, seenMask)
		if err != nil {
			errs = append(errs, err)
			if len(errs) >= 20 {
				errs = append(errs, errors.New("(further errors not shown)"))
				break
			}
			continue
		}
		for _, m := range e.Masks {
			classes[m.Class] = true
		}
		ds.Images = append(ds.Images, e)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("open dataset %s: %w", dir, errors.Join(errs...))
	}
	var extra []string
	for p := range meta.Images {
		if _, ok := index[p]; !ok {
			extra = append(extra, p)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		ds.warnf("%s has %d record(s) for images not in %s (ignored), e.g. %s", MetaFile, len(extra), Image2LabelFile, extra[0])
	}
	if len(meta.Classes) > 0 {
		ds.classes = append([]string(nil), meta.Classes...)
	} else {
		for c := range classes {
			ds.classes = append(ds.classes, c)
		}
	}
	sort.Strings(ds.classes)
	return ds, nil
}

func (ds *Dataset) openImage(dir, p string, masks []string, meta metaFile, known map[string]bool, seenMask map[string]string) (*ImageEntry, error) {
	if err := checkRel(p); err != nil {
		return nil, fmt.Errorf("image %q: %w", p, err)
	}
	w, h, err := decodeSize(filepath.Join(dir, filepath.FromSlash(p)))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", p, err)
	}
	e := &ImageEntry{Path: p, Name: stem(p), Width: w, Height: h, dir: dir}
	md, hasMeta := meta.Images[p]
	switch {
	case meta.Images == nil:
		// already warned about the missing meta.json
	case !hasMeta:
		ds.warnf("%s has no record for %s: modality %q", MetaFile, p, Unknown)
	}
	if md.Modality == "" {
		if hasMeta {
			ds.warnf("%s gives no modality for %s: modality %q", MetaFile, p, Unknown)
		}
		md.Modality = Unknown
	} else if c, ok := NormalizeModality(md.Modality); ok {
		md.Modality = c
	} else {
		ds.warnf("%s: unrecognised modality %q kept as is", p, md.Modality)
	}
	if md.StoredSize != [2]int{} && md.StoredSize != [2]int{w, h} {
		ds.warnf("%s: meta.json stored_size %v differs from the PNG's %dx%d", p, md.StoredSize, w, h)
	}
	e.Meta = md
	e.Modality = md.Modality
	e.Group = md.Group
	if e.Group == "" {
		e.Group = p
	}
	for _, mp := range masks {
		if err := checkRel(mp); err != nil {
			return nil, fmt.Errorf("image %s: mask %q: %w", p, mp, err)
		}
		if other, dup := seenMask[mp]; dup {
			return nil, fmt.Errorf("image %s: mask %s is also listed for %s", p, mp, other)
		}
		seenMask[mp] = p
		class, idx, err := parseMaskName(e.Name, stem(mp), known)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", p, err)
		}
		mw, mh, err := decodeSize(filepath.Join(dir, filepath.FromSlash(mp)))
		if err != nil {
			return nil, fmt.Errorf("image %s: mask %s: %w", p, mp, err)
		}
		if mw != w || mh != h {
			return nil, fmt.Errorf("image %s (%dx%d): mask %s has another size (%dx%d)", p, w, h, mp, mw, mh)
		}
		e.Masks = append(e.Masks, &MaskEntry{Path: mp, Class: class, Index: idx})
	}
	return e, nil
}

// parseMaskName splits a mask file stem "<image>_<class>_<nnn>" into class
// and index. The class may contain underscores: the image stem prefix and the
// numeric suffix are stripped. When the mask name does not start with the
// image stem, the longest known class that fits is used.
func parseMaskName(imageStem, maskStem string, known map[string]bool) (string, int, error) {
	cut := strings.LastIndexByte(maskStem, '_')
	if cut < 0 {
		return "", 0, fmt.Errorf("mask %s.png: name is not <image>_<class>_<nnn>", maskStem)
	}
	idx, err := strconv.Atoi(maskStem[cut+1:])
	if err != nil || idx < 0 || strings.ContainsAny(maskStem[cut+1:], "+-") {
		return "", 0, fmt.Errorf("mask %s.png: suffix %q after the class is not a number (want <image>_<class>_<nnn>)", maskStem, maskStem[cut+1:])
	}
	head := maskStem[:cut]
	var class string
	if rest, ok := strings.CutPrefix(head, imageStem+"_"); ok && rest != "" {
		class = rest
	} else {
		for c := range known {
			if strings.HasSuffix(head, "_"+c) && len(c) > len(class) {
				class = c
			}
		}
		if class == "" {
			return "", 0, fmt.Errorf("mask %s.png: name does not start with the image name %q and ends in no known class", maskStem, imageStem+"_")
		}
	}
	if len(known) > 0 && !known[class] {
		return "", 0, fmt.Errorf("mask %s.png: class %q is not in %s classes", maskStem, class, MetaFile)
	}
	return class, idx, nil
}

// Classes returns the set's class names, sorted: meta.json's "classes" when
// given, else the classes found in mask names.
func (ds *Dataset) Classes() []string { return append([]string(nil), ds.classes...) }

// NumMasks returns the number of object masks in the set.
func (ds *Dataset) NumMasks() int {
	n := 0
	for _, e := range ds.Images {
		n += len(e.Masks)
	}
	return n
}

// ModalitiesPresent returns the modalities of the set's images: the known
// ones in the paper's order, then any others sorted by name.
func (ds *Dataset) ModalitiesPresent() []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range ds.Images {
		if !seen[e.Modality] {
			seen[e.Modality] = true
			out = append(out, e.Modality)
		}
	}
	SortModalities(out)
	return out
}

// SortModalities sorts modality names into the paper's order, unknown names
// last in lexical order.
func SortModalities(ms []string) {
	sort.Slice(ms, func(i, j int) bool {
		a, b := ModalityIndex(ms[i]), ModalityIndex(ms[j])
		if a != b {
			return a < b
		}
		return ms[i] < ms[j]
	})
}

// Subset returns a set holding the images for which keep returns true. The
// entries are shared with ds; the class list is kept.
func (ds *Dataset) Subset(keep func(*ImageEntry) bool) *Dataset {
	out := &Dataset{Dir: ds.Dir, Warnings: ds.Warnings, classes: ds.classes}
	for _, e := range ds.Images {
		if keep(e) {
			out.Images = append(out.Images, e)
		}
	}
	return out
}

// SplitByGroup splits the set into train and validation parts so that no
// group (patient, case, sequence) is in both. It is stratified by modality:
// groups are binned by the modality of their image with the smallest path,
// and in each bin round(valFraction × groups) groups go to validation — at
// least one when the bin has two or more groups and valFraction > 0, never
// all of a bin's groups when valFraction < 1. Which groups go is fixed by a
// hash of (seed, group), so the split depends only on the seed and the group
// names, not on the order of images. valFraction is clamped to [0, 1].
func (ds *Dataset) SplitByGroup(valFraction float64, seed int64) (train, val *Dataset) {
	valFraction = max(0, min(1, valFraction))
	groupModality := map[string]string{}
	groupFirst := map[string]string{} // smallest image path of each group
	for _, e := range ds.Images {
		if first, ok := groupFirst[e.Group]; !ok || e.Path < first {
			groupFirst[e.Group] = e.Path
			groupModality[e.Group] = e.Modality
		}
	}
	bins := map[string][]string{}
	for g, m := range groupModality {
		bins[m] = append(bins[m], g)
	}
	inVal := map[string]bool{}
	for _, groups := range bins {
		sort.Slice(groups, func(i, j int) bool {
			hi, hj := groupHash(seed, groups[i]), groupHash(seed, groups[j])
			if hi != hj {
				return hi < hj
			}
			return groups[i] < groups[j]
		})
		n := int(valFraction*float64(len(groups)) + 0.5)
		if valFraction > 0 && n == 0 && len(groups) >= 2 {
			n = 1
		}
		if valFraction < 1 && n == len(groups) && n > 1 {
			n--
		}
		for _, g := range groups[:n] {
			inVal[g] = true
		}
	}
	train = ds.Subset(func(e *ImageEntry) bool { return !inVal[e.Group] })
	val = ds.Subset(func(e *ImageEntry) bool { return inVal[e.Group] })
	return train, val
}

func groupHash(seed int64, group string) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d\x00%s", seed, group)
	return h.Sum64()
}

// ImagePath returns the image's path on disk.
func (e *ImageEntry) ImagePath() string { return filepath.Join(e.dir, filepath.FromSlash(e.Path)) }

// MaskPath returns the path on disk of mask i.
func (e *ImageEntry) MaskPath(i int) string {
	return filepath.Join(e.dir, filepath.FromSlash(e.Masks[i].Path))
}

// LoadImage reads the image from disk.
func (e *ImageEntry) LoadImage() (image.Image, error) {
	img, err := readImage(e.ImagePath())
	if err != nil {
		return nil, err
	}
	if b := img.Bounds(); b.Dx() != e.Width || b.Dy() != e.Height {
		return nil, fmt.Errorf("read %s: size %dx%d changed since the set was opened (%dx%d)", e.ImagePath(), b.Dx(), b.Dy(), e.Width, e.Height)
	}
	return img, nil
}

// LoadMask reads mask i as a binary image: 255 where the stored mask is
// above 127 (in its grey value), 0 elsewhere; bounds start at (0, 0).
func (e *ImageEntry) LoadMask(i int) (*image.Gray, error) {
	if i < 0 || i >= len(e.Masks) {
		return nil, fmt.Errorf("image %s: mask index %d out of range [0, %d)", e.Path, i, len(e.Masks))
	}
	p := e.MaskPath(i)
	img, err := readImage(p)
	if err != nil {
		return nil, err
	}
	b := img.Bounds()
	if b.Dx() != e.Width || b.Dy() != e.Height {
		return nil, fmt.Errorf("read %s: size %dx%d differs from its image (%dx%d)", p, b.Dx(), b.Dy(), e.Width, e.Height)
	}
	g := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(g, g.Bounds(), img, b.Min, draw.Src)
	for k, v := range g.Pix {
		if v > 127 {
			g.Pix[k] = 255
		} else {
			g.Pix[k] = 0
		}
	}
	return g, nil
}

// LoadMaskBits reads mask i as a row-major Width×Height slice, true for
// foreground.
func (e *ImageEntry) LoadMaskBits(i int) ([]bool, error) {
	g, err := e.LoadMask(i)
	if err != nil {
		return nil, err
	}
	bits := make([]bool, e.Width*e.Height)
	for y := 0; y < e.Height; y++ {
		row := g.Pix[y*g.Stride : y*g.Stride+e.Width]
		for x, v := range row {
			bits[y*e.Width+x] = v != 0
		}
	}
	return bits, nil
}

func (ds *Dataset) warnf(format string, args ...any) {
	ds.Warnings = append(ds.Warnings, fmt.Sprintf(format, args...))
}

func readJSON(p string, v any) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("parse %s: %w", p, err)
	}
	return nil
}

func readImage(p string) (image.Image, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", p, err)
	}
	return img, nil
}

func decodeSize(p string) (w, h int, err error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", p, err)
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(f)
	if err != nil {
		return 0, 0, fmt.Errorf("decode %s: %w", p, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return 0, 0, fmt.Errorf("decode %s: empty image (%dx%d)", p, cfg.Width, cfg.Height)
	}
	return cfg.Width, cfg.Height, nil
}

// checkRel rejects paths that are absolute or leave the set directory.
func checkRel(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if strings.Contains(p, `\`) || path.IsAbs(p) || filepath.IsAbs(p) {
		return errors.New("path must be relative with forward slashes")
	}
	if c := path.Clean(p); c != p || c == "." || strings.HasPrefix(c, "../") || c == ".." {
		return errors.New("path must be clean and stay inside the set directory")
	}
	return nil
}

func stem(p string) string {
	b := path.Base(p)
	return strings.TrimSuffix(b, path.Ext(b))
}

// Merge joins sets into one: the images of all, each still read from its
// own set's directory, in the order given; the classes are the union. Dir
// lists the directories joined by commas. A file present twice (the same
// set given twice) is an error, so that nothing is counted twice by mistake.
func Merge(sets ...*Dataset) (*Dataset, error) {
	if len(sets) == 1 {
		return sets[0], nil
	}
	out := &Dataset{}
	var dirs []string
	seen := map[string]string{}
	classes := map[string]bool{}
	for _, ds := range sets {
		dirs = append(dirs, ds.Dir)
		out.Warnings = append(out.Warnings, ds.Warnings...)
		for _, e := range ds.Images {
			key := filepath.Clean(e.ImagePath())
			if prev, ok := seen[key]; ok {
				return nil, fmt.Errorf("merge: image %s is in both %s and %s", key, prev, ds.Dir)
			}
			seen[key] = ds.Dir
			out.Images = append(out.Images, e)
		}
		for _, c := range ds.classes {
			classes[c] = true
		}
	}
	for c := range classes {
		out.classes = append(out.classes, c)
	}
	sort.Strings(out.classes)
	out.Dir = strings.Join(dirs, ",")
	return out, nil
}

// OpenEach opens each comma-separated directory of list.
func OpenEach(list string) ([]*Dataset, error) {
	var sets []*Dataset
	for _, dir := range strings.Split(list, ",") {
		if dir = strings.TrimSpace(dir); dir == "" {
			continue
		}
		ds, err := Open(dir)
		if err != nil {
			return nil, err
		}
		sets = append(sets, ds)
	}
	if len(sets) == 0 {
		return nil, fmt.Errorf("no dataset directory in %q", list)
	}
	return sets, nil
}

// OpenAll opens each comma-separated directory of list and merges them.
func OpenAll(list string) (*Dataset, error) {
	sets, err := OpenEach(list)
	if err != nil {
		return nil, err
	}
	return Merge(sets...)
}

// SplitEach splits every set by its own groups (SplitByGroup) and merges
// the parts: a set's split is the same whatever other sets come with it.
func SplitEach(sets []*Dataset, valFraction float64, seed int64) (train, val *Dataset, err error) {
	var trains, vals []*Dataset
	for _, ds := range sets {
		tr, va := ds.SplitByGroup(valFraction, seed)
		trains, vals = append(trains, tr), append(vals, va)
	}
	if train, err = Merge(trains...); err != nil {
		return nil, nil, err
	}
	if val, err = Merge(vals...); err != nil {
		return nil, nil, err
	}
	return train, val, nil
}
