// Package prepare turns 3-D medical volumes and their label maps into a 2-D
// segmentation set in the SA-Med2D layout, as the paper (after SAM-Med2D)
// builds its training data: every slice along the chosen axes becomes an
// 8-bit image with square pixels, and each class of the label map is split
// into one binary mask per connected component, dropping masks smaller than
// 0.153% of the slice.
package prepare

import (
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/internal/progress"
	"github.com/segsam/segsam/medimg"
	xdraw "golang.org/x/image/draw"
)

// DefaultMinMaskFraction is the smallest mask kept, as a fraction of the
// slice area: 100 pixels of a 256x256 image (0.153%), the paper's rule.
const DefaultMinMaskFraction = 100.0 / (256 * 256)

// Job is one volume to slice.
type Job struct {
	// Volume is a NIfTI file, a DICOM series directory or a DICOM file.
	Volume string
	// Labels is the label map on the volume's grid; empty for none.
	Labels string
	// Modality is the volume's modality (CT, MR, PET, ...); when empty the
	// modality recorded in the file (DICOM) is used.
	Modality string
	// Names maps label values to class names. A label value without a
	// name is an error (wrapping ErrUnnamed) unless IgnoreUnnamed or
	// Options.AllowUnnamed is set; with AllowUnnamed its masks are named
	// "label_<value>".
	Names map[int]string
	// Name is the prefix of the image names; defaults to the volume's file
	// name without extension.
	Name string
	// IgnoreUnnamed treats label values that Names does not list as
	// background instead of naming them "label_<value>".
	IgnoreUnnamed bool

	// Optional meta.json fields of the images; each, when empty, keeps its
	// default (Group: Name; Source: Volume; MaskSource: Labels; Dataset:
	// "segsam prepare"; License: none). Extra entries are added to each
	// image's "extra" record.
	Group, Source, MaskSource, Dataset, License string
	Extra                                       map[string]any

	// namesNote says why Names is nil although a class-name file was
	// given (for the error message).
	namesNote string
}

// ErrUnnamed is wrapped by Run's error when a label map holds values
// without a class name and neither Job.IgnoreUnnamed nor
// Options.AllowUnnamed is set.
var ErrUnnamed = errors.New("label values without a class name")

// Options control slicing.
type Options struct {
	// Axes to slice along; all three when empty.
	Axes []medimg.Axis
	// Window maps intensities to 0..255; medimg.DefaultWindow (0.5-99.5
	// percentile clipping) when zero.
	Window *medimg.Window
	// KeepEmpty keeps slices without any mask (or, without a label map,
	// slices of constant intensity), which are skipped by default.
	KeepEmpty bool
	// MinMaskFraction is the smallest mask kept as a fraction of the
	// slice area; DefaultMinMaskFraction when 0.
	MinMaskFraction float64
	// Progress receives a progress bar per volume; nil for none.
	Progress io.Writer
	// Warn receives warnings (unnamed label values); nil for none.
	Warn io.Writer
	// AllowUnnamed names label values that have no class name
	// "label_<value>", with one warning per label map listing them,
	// instead of failing.
	AllowUnnamed bool
	// MaxSide, when positive, downscales slices whose longer side exceeds
	// it to that size (images by Catmull-Rom, label maps by nearest
	// neighbour; never upscaled). 0 keeps the square-pixel size.
	MaxSide int
	// SliceEvery, when above 1, keeps only every k-th slice (index 0, k,
	// 2k, ...) along each axis.
	SliceEvery int
}

// Stats counts what Run wrote and skipped.
type Stats struct {
	Volumes, Images, Masks int
	// EmptySkipped counts slices skipped for having no mask (or constant
	// intensity without labels).
	EmptySkipped int
	// SmallDropped counts components dropped for being too small.
	SmallDropped int
	// Classes counts the masks written per class.
	Classes map[string]int
}

// Run slices every job's volume into w (which the caller closes).
func Run(w *dataset.Writer, jobs []Job, opts Options) (Stats, error) {
	st := Stats{Classes: map[string]int{}}
	axes := opts.Axes
	if len(axes) == 0 {
		axes = medimg.Axes
	}
	win := medimg.DefaultWindow
	if opts.Window != nil {
		win = *opts.Window
	}
	minFrac := opts.MinMaskFraction
	if minFrac == 0 {
		minFrac = DefaultMinMaskFraction
	}
	for n, job := range jobs {
		if err := runJob(w, job, axes, win, minFrac, opts, &st, fmt.Sprintf("[%d/%d]", n+1, len(jobs))); err != nil {
			return st, err
		}
		st.Volumes++
	}
	return st, nil
}

func runJob(w *dataset.Writer, job Job, axes []medimg.Axis, win medimg.Window, minFrac float64, opts Options, st *Stats, counter string) error {
	vol, err := medimg.ReadVolume(job.Volume)
	if err != nil {
		return err
	}
	modality := job.Modality
	if modality == "" {
		modality = vol.Modality
	}
	if modality == "" {
		return fmt.Errorf("%s: modality unknown (the file does not record it): give it with --modality", job.Volume)
	}
	canon, ok := dataset.NormalizeModality(modality)
	if !ok {
		return fmt.Errorf("%s: unknown modality %q (want one of %s)", job.Volume, modality, strings.Join(dataset.Modalities, ", "))
	}
	var lab *medimg.Volume
	if job.Labels != "" {
		if lab, err = medimg.ReadVolume(job.Labels); err != nil {
			return err
		}
		if lab.Dim != vol.Dim {
			return fmt.Errorf("label map %s has %v voxels but volume %s has %v", job.Labels, lab.Dim, job.Volume, vol.Dim)
		}
		if tol := 0.01 * minSpacing(vol); !lab.SameGrid(vol, tol) {
			return fmt.Errorf("label map %s is not on the grid of %s: voxel-to-world transforms differ (%v vs %v)",
				job.Labels, job.Volume, lab.Affine, vol.Affine)
		}
		if err := checkNames(job, lab, opts); err != nil {
			return err
		}
	}
	lo, hi, err := win.Range(vol)
	if err != nil {
		return fmt.Errorf("%s: %w", job.Volume, err)
	}
	fixed := medimg.Window{Kind: medimg.Fixed, Level: (lo + hi) / 2, Width: hi - lo}
	if !(hi > lo) {
		fixed = medimg.Window{Kind: medimg.Fixed, Level: lo, Width: 1}
	}
	name := job.Name
	if name == "" {
		name = StemName(job.Volume)
	}
	total := 0
	for _, a := range axes {
		total += vol.NumSlices(a)
	}
	var bar *progress.Bar
	if opts.Progress != nil {
		bar = progress.New(opts.Progress, total, counter+" "+name)
	}
	defer bar.Done()
	for _, axis := range axes {
		for idx := 0; idx < vol.NumSlices(axis); idx++ {
			if opts.SliceEvery > 1 && idx%opts.SliceEvery != 0 {
				bar.Add(1)
				continue
			}
			spec := medimg.SliceSpec{Axis: axis, Index: idx}
			img, info, err := vol.Slice8(spec, fixed)
			if err != nil {
				return fmt.Errorf("%s: %w", job.Volume, err)
			}
			srcW, srcH := info.Width, info.Height
			if opts.MaxSide > 0 && max(info.Width, info.Height) > opts.MaxSide {
				img = downscaleGray(img, opts.MaxSide)
				info.PixelSpacing *= float64(srcW) / float64(img.Rect.Dx())
				info.Width, info.Height = img.Rect.Dx(), img.Rect.Dy()
			}
			var masks []dataset.Mask
			if lab != nil {
				labels, _, err := lab.SliceLabels(spec)
				if err != nil {
					return fmt.Errorf("%s: %w", job.Labels, err)
				}
				if info.Width != srcW || info.Height != srcH {
					labels = nearestLabels(labels, srcW, srcH, info.Width, info.Height)
				}
				if job.IgnoreUnnamed && job.Names != nil {
					for i, v := range labels {
						if _, ok := job.Names[int(v)]; !ok {
							labels[i] = 0
						}
					}
				}
				var dropped int
				masks, dropped = SplitMasks(labels, info.Width, info.Height, minFrac, func(v int32) string {
					if n, ok := job.Names[int(v)]; ok {
						return n
					}
					return fmt.Sprintf("label_%d", v) // allowed by checkNames
				})
				st.SmallDropped += dropped
			}
			if !opts.KeepEmpty && (lab != nil && len(masks) == 0 || lab == nil && constant(img.Pix)) {
				st.EmptySkipped++
				bar.Add(1)
				continue
			}
			imgName := fmt.Sprintf("%s_%s_%03d", name, axis, idx)
			meta := dataset.ImageMeta{
				Modality:     canon,
				Group:        orDefault(job.Group, name),
				Source:       orDefault(job.Source, job.Volume),
				Dataset:      orDefault(job.Dataset, "segsam prepare"),
				License:      job.License,
				MaskSource:   orDefault(job.MaskSource, job.Labels),
				OriginalSize: [2]int{info.SourceWidth, info.SourceHeight},
				Extra: map[string]any{
					"axis":              axis.String(),
					"index":             idx,
					"spacing_mm":        []float64{round4(info.PixelSpacing), round4(info.PixelSpacing)},
					"source_spacing_mm": []float64{round4(info.SourceSpacing[0]), round4(info.SourceSpacing[1])},
					"orientation":       vol.Orientation(),
					"window":            win.String(),
					"window_range":      []float64{round4(lo), round4(hi)},
				},
			}
			for k, v := range job.Extra {
				meta.Extra[k] = v
			}
			if err := w.AddImage(imgName, img, meta, masks); err != nil {
				return err
			}
			st.Images++
			st.Masks += len(masks)
			for _, m := range masks {
				st.Classes[m.Class]++
			}
			bar.Add(1)
		}
	}
	return nil
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// downscaleGray resizes g so that its longer side is maxSide.
func downscaleGray(g *image.Gray, maxSide int) *image.Gray {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	nw, nh := FitSize(w, h, maxSide)
	out := image.NewGray(image.Rect(0, 0, nw, nh))
	xdraw.CatmullRom.Scale(out, out.Rect, g, g.Rect, xdraw.Src, nil)
	return out
}

// FitSize returns the size of a w x h image scaled so that its longer side
// is at most maxSide (never upscaled; each side at least 1).
func FitSize(w, h, maxSide int) (int, int) {
	if maxSide <= 0 || max(w, h) <= maxSide {
		return w, h
	}
	s := float64(maxSide) / float64(max(w, h))
	return max(1, int(math.Round(float64(w)*s))), max(1, int(math.Round(float64(h)*s)))
}

// nearestLabels resamples a w x h label plane to W x H by nearest
// neighbour (pixel centres aligned).
func nearestLabels(src []int32, w, h, W, H int) []int32 {
	out := make([]int32, W*H)
	for r := 0; r < H; r++ {
		sr := min(h-1, int((float64(r)+0.5)*float64(h)/float64(H)))
		for c := 0; c < W; c++ {
			sc := min(w-1, int((float64(c)+0.5)*float64(w)/float64(W)))
			out[r*W+c] = src[sr*w+sc]
		}
	}
	return out
}

// checkNames fails (or, with opts.AllowUnnamed, warns once, listing the
// values in increasing order) when the label map holds values that
// job.Names does not name. Job.IgnoreUnnamed (with names) drops such
// values instead.
func checkNames(job Job, lab *medimg.Volume, opts Options) error {
	if job.IgnoreUnnamed && job.Names != nil {
		return nil
	}
	present := map[int]bool{}
	for _, v := range lab.Data {
		if l := int(v); l != 0 {
			present[l] = true
		}
	}
	var missing []int
	for v := range present {
		if _, ok := job.Names[v]; !ok {
			missing = append(missing, v)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Ints(missing)
	values := make([]string, len(missing))
	for i, v := range missing {
		values[i] = strconv.Itoa(v)
	}
	list := strings.Join(values, ", ")
	if len(values) > 12 {
		list = strings.Join(values[:12], ", ") + fmt.Sprintf(", ... (%d in all)", len(values))
	}
	why := ""
	switch {
	case job.namesNote != "":
		why = " (" + job.namesNote + ")"
	case job.Names == nil:
		why = " (no class names were given for it)"
	}
	if !opts.AllowUnnamed {
		return fmt.Errorf("%s: %w: %s%s", job.Labels, ErrUnnamed, list, why)
	}
	if opts.Warn != nil {
		fmt.Fprintf(opts.Warn, "WARNING: %s: label values %s have no class name%s; their masks are named label_<value>, which 'segsam text embed' cannot describe\n",
			job.Labels, list, why)
	}
	return nil
}

func minSpacing(v *medimg.Volume) float64 {
	s := v.Spacing()
	return math.Min(s[0], math.Min(s[1], s[2]))
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

func constant(p []uint8) bool {
	for _, x := range p {
		if x != p[0] {
			return false
		}
	}
	return true
}

// StemName returns a file's name without directory and NIfTI/DICOM
// extensions, with characters other than letters, digits, '_', '-', '.'
// and '+' replaced by '_': the prefix of the image names of a volume.
func StemName(path string) string { return sanitize(rawStem(path), false) }

// rawStem is the file name without directory and volume extensions.
func rawStem(path string) string {
	base := filepath.Base(filepath.Clean(path))
	lower := strings.ToLower(base)
	for _, ext := range []string{".nii.gz", ".nii", ".hdr.gz", ".hdr", ".dcm", ".ima"} {
		if strings.HasSuffix(lower, ext) {
			return base[:len(base)-len(ext)]
		}
	}
	return base
}

// ClassName turns a label name into a class name as the demo set spells
// them: lower case, with characters other than letters, digits, '_', '-',
// '.' and '+' replaced by '_' ("vertebrae_L2" becomes "vertebrae_l2").
func ClassName(s string) string { return sanitize(strings.TrimSpace(s), true) }

// SafeName replaces every character of s other than letters, digits, '_',
// '-', '+' and a '.' that does not lead by '_' ("unnamed" for ""): a name
// the SA-Med2D layout accepts as it is.
func SafeName(s string) string { return sanitize(s, false) }

func sanitize(s string, lower bool) string {
	if lower {
		s = strings.ToLower(s)
	}
	b := []rune(s)
	for i, r := range b {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '+':
		case r == '.' && i > 0:
		default:
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "unnamed"
	}
	return string(b)
}

// ReadLabelNames reads a class-name file. It accepts
//   - an object mapping label values to names: {"1": "liver", "2": "spleen"};
//   - a list whose positions are the label values: ["background", "liver"]
//     (position 0 is ignored);
//   - the shared volumes' labels.json: {"labels": {"<label file>": {"1":
//     "liver"}}, "volumes": {...}}, where the map of the label file is
//     chosen by name (see NamesFor).
//
// Names are normalised with ClassName.
func ReadLabelNames(path string) (*LabelNames, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read label names: %w", err)
	}
	ln, err := parseLabelNames(b)
	if err != nil {
		return nil, fmt.Errorf("read label names %s: %w", path, err)
	}
	ln.dir = filepath.Dir(path)
	ln.path = path
	return ln, nil
}

// LabelNames is a parsed class-name file.
type LabelNames struct {
	// Default applies to every label map not listed in PerFile.
	Default map[int]string
	// PerFile maps a label file's base name to its names.
	PerFile map[string]map[int]string
	// Volumes holds per-volume entries of a labels.json with a "volumes"
	// object (label file and modality), by the volume's base name.
	Volumes map[string]VolumeEntry
	dir     string
	path    string
}

// VolumeEntry is a volume's record in a labels.json.
type VolumeEntry struct {
	Label    string `json:"label"`
	Modality string `json:"modality"`
}

// NamesFor returns the class names for a label file: the PerFile entry
// of its base name (or of the same name with another NIfTI extension,
// ".nii" for ".nii.gz"), else Default; nil when neither applies.
func (ln *LabelNames) NamesFor(labelPath string) map[int]string {
	if ln == nil {
		return nil
	}
	base := filepath.Base(labelPath)
	if m, ok := ln.PerFile[base]; ok {
		return m
	}
	stem := rawStem(base)
	keys := make([]string, 0, len(ln.PerFile))
	for k := range ln.PerFile {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if rawStem(k) == stem {
			return ln.PerFile[k]
		}
	}
	return ln.Default
}

// namesForJob returns the class names for a volume's label map: NamesFor
// the label file, else the PerFile entry of the label file that the
// volume's "volumes" record names (the label map may have been renamed).
// When there are none, it returns a note saying why, for error messages.
func (ln *LabelNames) namesForJob(volume, labels string) (map[int]string, string) {
	if m := ln.NamesFor(labels); m != nil {
		return m, ""
	}
	if e, ok := ln.Volumes[filepath.Base(volume)]; ok && e.Label != "" {
		if m := ln.NamesFor(e.Label); m != nil {
			return m, ""
		}
	}
	file := "the class-name file"
	if ln.path != "" {
		file = filepath.Base(ln.path)
	}
	if len(ln.PerFile) == 0 {
		return nil, file + " holds no class names"
	}
	keys := make([]string, 0, len(ln.PerFile))
	for k := range ln.PerFile {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 4 {
		keys = append(keys[:4], "...")
	}
	base := filepath.Base(labels)
	return nil, fmt.Sprintf(`%s names the classes of %s, not of %s: add "%s": {"1": "name", ...} under its "labels", or give a plain {"1": "name", ...} map`,
		file, strings.Join(keys, ", "), base, base)
}

func parseLabelNames(b []byte) (*LabelNames, error) {
	ln := &LabelNames{PerFile: map[string]map[int]string{}, Volumes: map[string]VolumeEntry{}}
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		ln.Default = map[int]string{}
		for i, n := range list {
			if i > 0 && n != "" {
				ln.Default[i] = ClassName(n)
			}
		}
		return ln, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("want a JSON object or list: %w", err)
	}
	if raw, ok := obj["volumes"]; ok {
		if err := json.Unmarshal(raw, &ln.Volumes); err != nil {
			return nil, fmt.Errorf("\"volumes\": %w", err)
		}
	}
	if raw, ok := obj["labels"]; ok {
		// Either {"1": "liver"} or {"file": {"1": "liver"}}.
		var direct map[string]string
		if err := json.Unmarshal(raw, &direct); err == nil {
			m, err := valueMap(direct)
			if err != nil {
				return nil, fmt.Errorf("\"labels\": %w", err)
			}
			ln.Default = m
			return ln, nil
		}
		var perFile map[string]map[string]string
		if err := json.Unmarshal(raw, &perFile); err != nil {
			return nil, fmt.Errorf("\"labels\": want {\"1\": \"name\"} or {\"file\": {\"1\": \"name\"}}")
		}
		for f, names := range perFile {
			m, err := valueMap(names)
			if err != nil {
				return nil, fmt.Errorf("\"labels\" of %s: %w", f, err)
			}
			ln.PerFile[f] = m
		}
		return ln, nil
	}
	if _, ok := obj["volumes"]; ok {
		return ln, nil
	}
	var direct map[string]string
	if err := json.Unmarshal(b, &direct); err != nil {
		return nil, fmt.Errorf("want {\"<label value>\": \"<class name>\", ...}")
	}
	m, err := valueMap(direct)
	if err != nil {
		return nil, err
	}
	ln.Default = m
	return ln, nil
}

func valueMap(in map[string]string) (map[int]string, error) {
	out := map[int]string{}
	for k, v := range in {
		n, err := strconv.Atoi(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("key %q is not an integer label value", k)
		}
		out[n] = ClassName(v)
	}
	return out, nil
}

// SplitMasks splits a label slice (width x height, row by row) into one
// binary mask per class and 8-connected component, numbered per class from
// the largest component down (ties in raster order of their first pixel).
// Components smaller than minFrac of the slice are dropped and counted.
// Classes are visited in increasing label value; 0 is background.
func SplitMasks(labels []int32, width, height int, minFrac float64, className func(int32) string) (masks []dataset.Mask, dropped int) {
	comp := make([]int32, len(labels)) // component id + 1
	type component struct {
		label int32
		first int
		size  int
	}
	var comps []component
	stack := make([]int, 0, 64)
	for start, l := range labels {
		if l == 0 || comp[start] != 0 {
			continue
		}
		id := int32(len(comps) + 1)
		c := component{label: l, first: start}
		comp[start] = id
		stack = append(stack[:0], start)
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			c.size++
			x, y := p%width, p/width
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					nx, ny := x+dx, y+dy
					if nx < 0 || ny < 0 || nx >= width || ny >= height {
						continue
					}
					q := ny*width + nx
					if comp[q] == 0 && labels[q] == l {
						comp[q] = id
						stack = append(stack, q)
					}
				}
			}
		}
		comps = append(comps, c)
	}
	minSize := minFrac * float64(width*height)
	order := make([]int, len(comps))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		ca, cb := comps[order[a]], comps[order[b]]
		if ca.label != cb.label {
			return ca.label < cb.label
		}
		if ca.size != cb.size {
			return ca.size > cb.size
		}
		return ca.first < cb.first
	})
	// Gather kept components' pixels.
	pix := map[int][]int{}
	for p, id := range comp {
		if id != 0 {
			pix[int(id-1)] = append(pix[int(id-1)], p)
		}
	}
	next := map[string]int{} // by class name: two values may share one
	names := map[int32]string{}
	for _, ci := range order {
		c := comps[ci]
		if float64(c.size) < minSize {
			dropped++
			continue
		}
		name, ok := names[c.label]
		if !ok {
			name = className(c.label)
			names[c.label] = name
		}
		g := newGray(width, height)
		for _, p := range pix[ci] {
			g.Pix[p] = 255
		}
		masks = append(masks, dataset.Mask{Class: name, Index: next[name], Mask: g})
		next[name]++
	}
	return masks, dropped
}

func newGray(w, h int) *image.Gray { return image.NewGray(image.Rect(0, 0, w, h)) }
