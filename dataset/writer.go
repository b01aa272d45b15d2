package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Mask is one object mask given to Writer.AddImage. Any non-zero pixel is
// foreground; it is stored as 255, background as 0.
type Mask struct {
	// Class is the object's class name: letters, digits, '_', '-', '.', '+'.
	Class string
	// Index numbers the objects of one class in one image (the <nnn> of the
	// file name, written with at least three digits).
	Index int
	// Mask has the size of the image.
	Mask *image.Gray
}

// Writer writes a set in the SA-Med2D layout. Images and masks are written
// as they are added; Close writes image2label.json and meta.json. A Writer
// is safe for concurrent use.
type Writer struct {
	dir string

	mu      sync.Mutex
	names   map[string]bool // image names reserved or written
	index   map[string][]string
	meta    map[string]ImageMeta
	classes map[string]bool
	closed  bool
}

// Option configures Create.
type Option func(*createOptions)

type createOptions struct{ overwrite bool }

// Overwrite lets Create write into a non-empty directory: the set's own
// entries there (images/, masks/, image2label.json, meta.json) are removed
// first; other files are left alone.
func Overwrite() Option { return func(o *createOptions) { o.overwrite = true } }

// Create prepares dir (created if missing) for a new set. It refuses a
// directory that is not empty unless the Overwrite option is given.
func Create(dir string, opts ...Option) (*Writer, error) {
	var o createOptions
	for _, opt := range opts {
		opt(&o)
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("create dataset %s: %w", dir, err)
	case len(entries) > 0 && !o.overwrite:
		return nil, fmt.Errorf("create dataset %s: directory is not empty (%d entries); choose an empty directory or overwrite", dir, len(entries))
	case len(entries) > 0:
		for _, name := range []string{"images", "masks", Image2LabelFile, MetaFile} {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("create dataset %s: remove old %s: %w", dir, name, err)
			}
		}
	}
	for _, sub := range []string{"images", "masks"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("create dataset %s: %w", dir, err)
		}
	}
	return &Writer{
		dir:     dir,
		names:   map[string]bool{},
		index:   map[string][]string{},
		meta:    map[string]ImageMeta{},
		classes: map[string]bool{},
	}, nil
}

// Dir returns the directory the writer writes to.
func (w *Writer) Dir() string { return w.dir }

// AddImage writes images/<name>.png and one masks/<name>_<class>_<nnn>.png
// per mask, and records the image for Close. name is the file name without
// directory (a ".png" suffix is dropped). meta.Modality is normalised (an
// unrecognised name is an error; use Unknown when not known) and
// meta.StoredSize is set from img. Grey images are stored as 8-bit grey,
// all others as RGB(A). Masks must have the image's size, be non-empty and
// have distinct (Class, Index).
func (w *Writer) AddImage(name string, img image.Image, meta ImageMeta, masks []Mask) error {
	name = strings.TrimSuffix(name, ".png")
	if err := checkName(name); err != nil {
		return fmt.Errorf("add image %q: %w", name, err)
	}
	if img == nil {
		return fmt.Errorf("add image %s: nil image", name)
	}
	b := img.Bounds()
	if b.Empty() {
		return fmt.Errorf("add image %s: empty image", name)
	}
	mod, ok := NormalizeModality(meta.Modality)
	if !ok {
		return fmt.Errorf("add image %s: unknown modality %q (want one of %s, or %q)", name, meta.Modality, strings.Join(Modalities, ", "), Unknown)
	}
	meta.Modality = mod
	meta.StoredSize = [2]int{b.Dx(), b.Dy()}

	seen := map[string]bool{}
	maskNames := make([]string, len(masks))
	for i, m := range masks {
		if err := checkName(m.Class); err != nil {
			return fmt.Errorf("add image %s: mask %d: class %q: %w", name, i, m.Class, err)
		}
		if m.Index < 0 {
			return fmt.Errorf("add image %s: mask %d (%s): negative index %d", name, i, m.Class, m.Index)
		}
		if m.Mask == nil {
			return fmt.Errorf("add image %s: mask %d (%s): nil mask", name, i, m.Class)
		}
		if mb := m.Mask.Bounds(); mb.Dx() != b.Dx() || mb.Dy() != b.Dy() {
			return fmt.Errorf("add image %s (%dx%d): mask %s_%03d has another size (%dx%d)", name, b.Dx(), b.Dy(), m.Class, m.Index, mb.Dx(), mb.Dy())
		}
		mn := fmt.Sprintf("%s_%s_%03d", name, m.Class, m.Index)
		if seen[mn] {
			return fmt.Errorf("add image %s: two masks for class %s index %d", name, m.Class, m.Index)
		}
		seen[mn] = true
		if isEmpty(m.Mask) {
			return fmt.Errorf("add image %s: mask %s_%03d is empty", name, m.Class, m.Index)
		}
		maskNames[i] = mn
	}

	if err := w.reserve(name); err != nil {
		return err
	}

	imgRel := "images/" + name + ".png"
	if err := writePNG(filepath.Join(w.dir, "images", name+".png"), storable(img)); err != nil {
		w.release(name)
		return fmt.Errorf("add image %s: %w", name, err)
	}
	maskRels := make([]string, len(masks))
	for i, m := range masks {
		maskRels[i] = "masks/" + maskNames[i] + ".png"
		if err := writePNG(filepath.Join(w.dir, "masks", maskNames[i]+".png"), binarise(m.Mask)); err != nil {
			w.release(name)
			return fmt.Errorf("add image %s: %w", name, err)
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.index[imgRel] = maskRels
	w.meta[imgRel] = meta
	for _, m := range masks {
		w.classes[m.Class] = true
	}
	return nil
}

// AddEntry adds an image of an opened set with its masks and meta record,
// linking (or, across file systems, copying) its files as they are, under
// the same names: a set can be re-assembled from others without decoding.
func (w *Writer) AddEntry(e *ImageEntry) error {
	name := e.Name
	if err := w.reserve(name); err != nil {
		return err
	}
	imgRel := "images/" + filepath.Base(e.Path)
	if err := linkOrCopy(e.ImagePath(), filepath.Join(w.dir, filepath.FromSlash(imgRel))); err != nil {
		w.release(name)
		return fmt.Errorf("add image %s: %w", name, err)
	}
	maskRels := make([]string, len(e.Masks))
	for i, m := range e.Masks {
		maskRels[i] = "masks/" + filepath.Base(m.Path)
		if err := linkOrCopy(e.MaskPath(i), filepath.Join(w.dir, filepath.FromSlash(maskRels[i]))); err != nil {
			w.release(name)
			return fmt.Errorf("add image %s: %w", name, err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.index[imgRel] = maskRels
	w.meta[imgRel] = e.Meta
	for _, m := range e.Masks {
		w.classes[m.Class] = true
	}
	return nil
}

// linkOrCopy hard-links src to dst, copying when a link is impossible.
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// reserve claims an image name, refusing a closed writer or a name taken.
func (w *Writer) reserve(name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		return fmt.Errorf("add image %s: writer is closed", name)
	case w.names[name]:
		return fmt.Errorf("add image %s: an image of that name was already added", name)
	}
	w.names[name] = true
	return nil
}

func (w *Writer) release(name string) {
	w.mu.Lock()
	delete(w.names, name)
	w.mu.Unlock()
}

// Close writes image2label.json and meta.json (each to a temporary file
// renamed into place). It is an error to close a writer with no images.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("close dataset %s: already closed", w.dir)
	}
	w.closed = true
	if len(w.index) == 0 {
		return fmt.Errorf("close dataset %s: no images were added", w.dir)
	}
	classes := make([]string, 0, len(w.classes))
	for c := range w.classes {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	if err := writeJSONAtomic(filepath.Join(w.dir, Image2LabelFile), w.index); err != nil {
		return err
	}
	return writeJSONAtomic(filepath.Join(w.dir, MetaFile), metaFile{Images: w.meta, Classes: classes})
}

// checkName accepts non-empty names of letters, digits and _ - . + that do
// not start with a dot.
func checkName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if s[0] == '.' {
		return errors.New("name starts with a dot")
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.', r == '+':
		default:
			return fmt.Errorf("character %q not allowed (use letters, digits, _ - . +)", r)
		}
	}
	return nil
}

func isEmpty(g *image.Gray) bool {
	b := g.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		off := g.PixOffset(b.Min.X, y)
		for _, v := range g.Pix[off : off+b.Dx()] {
			if v != 0 {
				return false
			}
		}
	}
	return true
}

// binarise returns a 0/255 copy of g with bounds at the origin.
func binarise(g *image.Gray) *image.Gray {
	b := g.Bounds()
	out := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		off := g.PixOffset(b.Min.X, b.Min.Y+y)
		for x, v := range g.Pix[off : off+b.Dx()] {
			if v != 0 {
				out.Pix[y*out.Stride+x] = 255
			}
		}
	}
	return out
}

// storable converts img to 8-bit grey when its colour model is grey, else to
// NRGBA (written by image/png as RGB when fully opaque), with bounds at the
// origin.
func storable(img image.Image) image.Image {
	b := img.Bounds()
	r := image.Rect(0, 0, b.Dx(), b.Dy())
	switch m := img.(type) {
	case *image.Gray:
		if b.Min == (image.Point{}) {
			return m
		}
	case *image.NRGBA:
		if b.Min == (image.Point{}) {
			return m
		}
	}
	if cm := img.ColorModel(); cm == color.GrayModel || cm == color.Gray16Model {
		g := image.NewGray(r)
		draw.Draw(g, r, img, b.Min, draw.Src)
		return g
	}
	n := image.NewNRGBA(r)
	draw.Draw(n, r, img, b.Min, draw.Src)
	return n
}

func writePNG(p string, img image.Image) error {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("encode %s: %w", p, err)
	}
	return writeFileAtomic(p, buf.Bytes())
}

func writeJSONAtomic(p string, v any) error {
	data, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", p, err)
	}
	return writeFileAtomic(p, append(data, '\n'))
}

// writeFileAtomic writes data to a temporary file next to p and renames it
// to p, so that p is never seen half-written.
func writeFileAtomic(p string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
