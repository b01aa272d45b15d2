package sources

import (
	"context"
	"fmt"
	"image"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/knowledge"
	"github.com/segsam/segsam/medimg/prepare"
)

// TakenFile lists, in a built source's folder, the files each image was made
// from.
const TakenFile = "taken.tsv"

// Result counts what Build did for one source.
type Result struct {
	ID, Dataset, Modality, Role string
	// AlreadyBuilt is set when the output existed and Force was not given.
	AlreadyBuilt bool
	// Candidates counts the image (or volume) paths matched by the
	// manifest, before every/exclusions.
	Candidates int
	// Taken counts the source images (or volumes) written.
	Taken int
	// Images counts the images written (slices, for volumes).
	Images int
	// Excluded counts images skipped by training_exclusions.json;
	// ExcludedBy counts them by rule ("HC18 excluded group", ...).
	Excluded   int
	ExcludedBy map[string]int
	// MissingMask counts images whose mask files are all missing.
	MissingMask int
	// Unreadable counts images or masks that could not be decoded or had
	// a mask of another shape.
	Unreadable int
	// Empty counts images left without any mask.
	Empty int
	// SmallDropped counts masks dropped for being under MinMaskFraction.
	SmallDropped int
	// Masks counts the masks written; Classes by class.
	Masks   int
	Classes map[string]int
	// NewClasses lists classes not in knowledge/classes.json.
	NewClasses []string
	Seconds    float64
}

// BuildOption configures Build.
type BuildOption func(*buildOptions)

type buildOptions struct{ force bool }

// Force replaces an existing OUT/<id>.
func Force() BuildOption { return func(o *buildOptions) { o.force = true } }

// Build writes OUT/<id>/ (an SA-Med2D set plus taken.tsv) from the source's
// repository, found under reposDir by ResolveRepo, at the manifest's
// commit. It writes OUT/<id>.tmp and renames it at the end. An existing
// OUT/<id> is left alone (AlreadyBuilt) unless Force is given. A source
// that excl refuses is an error; excl must not be nil.
func Build(ctx context.Context, src *Source, reposDir string, excl *Exclusions, outDir string, log io.Writer, opts ...BuildOption) (*Result, error) {
	var o buildOptions
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = io.Discard
	}
	start := time.Now()
	res := &Result{ID: src.ID, Dataset: src.Dataset, Modality: src.Modality, Role: src.Role, Classes: map[string]int{}, ExcludedBy: map[string]int{}}
	if excl == nil {
		return nil, fmt.Errorf("source %s: no training exclusions given", src.ID)
	}
	if err := excl.Check(src); err != nil {
		return nil, err
	}
	final := filepath.Join(outDir, src.ID)
	if _, err := os.Stat(final); err == nil && !o.force {
		fmt.Fprintf(log, "%s: already built in %s (use --force to rebuild)\n", src.ID, final)
		res.AlreadyBuilt = true
		return res, nil
	}
	gitDir, err := ResolveRepo(reposDir, src.Repo)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src.ID, err)
	}
	g := &gitRepo{dir: gitDir}
	defer g.close()
	if err := g.checkCommit(ctx, src.Commit); err != nil {
		return nil, fmt.Errorf("source %s: %w", src.ID, err)
	}
	tree, err := g.tree(ctx, src.Commit)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src.ID, err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	w, err := dataset.Create(tmp)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	b := &builder{ctx: ctx, src: src, g: g, tree: tree, w: w, res: res, log: log, rules: excl.splitRules(src)}
	if src.Kind == KindVolumes {
		err = b.volumes()
	} else {
		err = b.pairs()
	}
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src.ID, err)
	}
	if res.Images == 0 {
		return nil, fmt.Errorf("source %s: no images taken (%d candidates, %d excluded, %d without masks, %d unreadable, %d left without masks)",
			src.ID, res.Candidates, res.Excluded, res.MissingMask, res.Unreadable, res.Empty)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("source %s: %w", src.ID, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, TakenFile), []byte(b.taken.String()), 0o644); err != nil {
		return nil, err
	}
	if _, err := os.Stat(final); err == nil {
		old := final + ".old"
		if err := os.RemoveAll(old); err != nil {
			return nil, err
		}
		if err := os.Rename(final, old); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, final); err != nil {
			os.Rename(old, final)
			return nil, err
		}
		os.RemoveAll(old)
	} else if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	ok = true
	for c := range res.Classes {
		if _, known := knowledge.Lookup(c); !known {
			res.NewClasses = append(res.NewClasses, c)
		}
	}
	sort.Strings(res.NewClasses)
	if len(res.NewClasses) > 0 {
		fmt.Fprintf(log, "%s: classes not in knowledge/classes.json: %s\n", src.ID, strings.Join(res.NewClasses, ", "))
	}
	if res.Excluded > 0 {
		fmt.Fprintf(log, "%s: skipped %d images by %s:", src.ID, res.Excluded, excl.File)
		for _, k := range sortedKeys(res.ExcludedBy) {
			fmt.Fprintf(log, " %s: %d;", k, res.ExcludedBy[k])
		}
		fmt.Fprintln(log)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

type builder struct {
	ctx   context.Context
	src   *Source
	g     *gitRepo
	tree  map[string]treeEntry
	w     *dataset.Writer
	res   *Result
	log   io.Writer
	rules []*splitRule
	taken strings.Builder
	// baseCount counts the candidate paths (and their mask or label
	// paths) by file name.
	baseCount map[string]int

	warned map[string]int
}

// warnf prints at most 5 warnings of a kind.
func (b *builder) warnf(kind, format string, args ...any) {
	if b.warned == nil {
		b.warned = map[string]int{}
	}
	b.warned[kind]++
	switch n := b.warned[kind]; {
	case n <= 5:
		fmt.Fprintf(b.log, "%s: "+format+"\n", append([]any{b.src.ID}, args...)...)
	case n == 6:
		fmt.Fprintf(b.log, "%s: (further %s warnings not shown)\n", b.src.ID, kind)
	}
}

func (b *builder) matching(re *regexp.Regexp) []string {
	var out []string
	for p := range b.tree {
		if re.MatchString(p) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// imageNames names each path <id>__<stem>; paths whose stems collide get
// as many of their parent folders as make them unique
// (<id>__<folder>_<stem>), or their whole path.
func imageNames(id string, paths []string) map[string]string {
	label := func(p string, depth int) string {
		parts := strings.Split(path.Dir(p), "/")
		if path.Dir(p) == "." {
			parts = nil
		}
		if depth > len(parts) {
			depth = len(parts)
		}
		return strings.Join(append(parts[len(parts)-depth:], Stem(p)), "/")
	}
	names := map[string]string{}
	pending := paths
	for depth := 0; len(pending) > 0; depth++ {
		count := map[string]int{}
		for _, p := range pending {
			count[label(p, depth)]++
		}
		var next []string
		for _, p := range pending {
			if l := label(p, depth); count[l] == 1 || depth > strings.Count(p, "/") {
				names[p] = id + "__" + prepare.SafeName(strings.ReplaceAll(l, "/", "_"))
			} else {
				next = append(next, p)
			}
		}
		pending = next
	}
	return names
}

func (b *builder) groupOf(p, def string) (string, error) {
	if b.src.groupRe == nil {
		return def, nil
	}
	m := b.src.groupRe.FindStringSubmatch(p)
	if m == nil || m[1] == "" {
		return "", fmt.Errorf("\"group\" regex %q does not match %s", b.src.Group, p)
	}
	return m[1], nil
}

func (b *builder) source(p string) string { return b.src.Repo + ":" + p + "@" + b.src.Commit }

func (b *builder) pairs() error {
	src := b.src
	var cands []string
	for _, p := range b.matching(src.imagesRe) {
		skip := false
		for _, re := range src.skipRe {
			skip = skip || re.MatchString(p)
		}
		if !skip && (src.imageRe == nil || src.imageRe.MatchString(p)) {
			cands = append(cands, p)
		}
	}
	b.res.Candidates = len(cands)
	if len(cands) == 0 {
		return fmt.Errorf("no file at commit %s matches \"images\" %q", src.ShortCommit(), src.Images)
	}
	names := imageNames(src.ID, cands)
	b.countBases(cands)
	fmt.Fprintf(b.log, "%s: %d candidate images in %s@%s\n", src.ID, len(cands), src.Repo, src.ShortCommit())
	fmt.Fprintf(&b.taken, "path\tgroup\tmasks\timage\n")
	for i, p := range cands {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		if i%src.Every != 0 {
			continue
		}
		if src.MaxImages > 0 && b.res.Taken >= src.MaxImages {
			break
		}
		if err := b.pair(p, names[p]); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) pair(p, name string) error {
	src := b.src
	var groups []string
	if src.imageRe != nil {
		groups = src.imageRe.FindStringSubmatch(p)
	}
	group, err := b.groupOf(p, Stem(p))
	if err != nil {
		return err
	}
	var maskPaths []string
	var present []int
	for i, m := range src.Masks {
		mp := expand(m.Path, p, groups)
		maskPaths = append(maskPaths, mp)
		if _, ok := b.tree[mp]; ok {
			present = append(present, i)
		}
	}
	if why := excluded(b.rules, b.baseCount, p, group, maskPaths...); why.rule != "" {
		b.exclude(why)
		return nil
	}
	if len(present) == 0 {
		b.res.MissingMask++
		b.warnf("missing", "no mask for %s (looked for %s)", p, strings.Join(maskPaths, ", "))
		return nil
	}
	data, err := b.g.blob(b.ctx, b.tree[p].oid)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	raw, err := decode(data)
	if err != nil {
		b.res.Unreadable++
		b.warnf("unreadable", "skipped %s: %v", p, err)
		return nil
	}
	ob := raw.Bounds()
	ow, oh := ob.Dx(), ob.Dy()
	var img image.Image
	if greyModality(src.Modality) {
		img = toGrey(raw)
	} else {
		img = toRGB(raw)
	}
	sw, sh := prepare.FitSize(ow, oh, MaxSide)
	img = resizeImage(img, sw, sh)                      // [sh, sw]
	if img, err = orient(src.Orient, img); err != nil { // [sh, sw] or [sw, sh]
		return fmt.Errorf("%s: %w", p, err)
	}

	var classes []string
	union := map[string]*image.Gray{}
	var usedMasks []string
	for _, i := range present {
		mp := maskPaths[i]
		data, err := b.g.blob(b.ctx, b.tree[mp].oid)
		if err != nil {
			return fmt.Errorf("read %s: %w", mp, err)
		}
		mimg, err := decode(data)
		if err != nil {
			b.res.Unreadable++
			b.warnf("unreadable", "skipped %s: mask %s: %v", p, mp, err)
			return nil
		}
		mb := mimg.Bounds()
		if mb.Dx() != ow || mb.Dy() != oh {
			if d := float64(mb.Dx())*float64(oh) - float64(mb.Dy())*float64(ow); d*d > 1e-4*float64(ow*oh)*float64(mb.Dx()*mb.Dy()) {
				b.res.Unreadable++
				b.warnf("unreadable", "skipped %s (%dx%d): mask %s is %dx%d, another shape", p, ow, oh, mp, mb.Dx(), mb.Dy())
				return nil
			}
		}
		usedMasks = append(usedMasks, mp)
		for _, cm := range extract(&src.Masks[i], mimg, src.Invert) {
			r, err := orientMask(src.Orient, resizeMask(cm.mask, sw, sh, cm.binary))
			if err != nil {
				return fmt.Errorf("%s: mask %s: %w", p, mp, err)
			}
			u, ok := union[cm.class]
			if !ok {
				union[cm.class] = r
				classes = append(classes, cm.class)
				continue
			}
			for k, v := range r.Pix {
				u.Pix[k] |= v
			}
		}
	}
	var masks []dataset.Mask
	for _, c := range classes {
		ms, dropped := splitClass(c, union[c], src.SplitsComponents(), MinMaskFraction)
		b.res.SmallDropped += dropped
		masks = append(masks, ms...)
	}
	if len(masks) == 0 {
		b.res.Empty++
		return nil
	}
	var ms []string
	for _, mp := range usedMasks {
		ms = append(ms, b.source(mp))
	}
	meta := dataset.ImageMeta{
		Modality:     src.Modality,
		Group:        src.ID + ":" + group,
		Source:       b.source(p),
		License:      src.License,
		Dataset:      src.Dataset,
		MaskSource:   strings.Join(ms, ", "),
		OriginalSize: [2]int{ow, oh},
		Extra:        b.extra(),
	}
	if err := b.w.AddImage(name, img, meta, masks); err != nil {
		return err
	}
	b.res.Taken++
	b.res.Images++
	b.res.Masks += len(masks)
	for _, m := range masks {
		b.res.Classes[m.Class]++
	}
	fmt.Fprintf(&b.taken, "%s\t%s\t%s\t%s\n", p, group, strings.Join(usedMasks, ";"), name)
	return nil
}

func (b *builder) countBases(paths []string) {
	b.baseCount = map[string]int{}
	for _, p := range paths {
		b.baseCount[path.Base(p)]++
	}
}

func (b *builder) exclude(why excludedWhy) {
	b.res.Excluded++
	b.res.ExcludedBy[why.rule]++
}

func (b *builder) extra() map[string]any {
	e := map[string]any{"source_id": b.src.ID, "role": b.src.Role}
	if b.src.Citation != "" {
		e["citation"] = b.src.Citation
	}
	return e
}

func (b *builder) volumes() error {
	src := b.src
	vols := src.Volumes
	if src.VolumeGlob != "" {
		vols = nil
		for _, p := range b.matching(src.volumeRe) {
			vols = append(vols, VolumeSpec{Image: p, Label: expand(src.LabelTemplate, p, nil)})
		}
		if len(vols) == 0 {
			return fmt.Errorf("no file at commit %s matches \"volume_glob\" %q", src.ShortCommit(), src.VolumeGlob)
		}
	}
	b.res.Candidates = len(vols)
	paths := make([]string, len(vols))
	for i, v := range vols {
		paths[i] = v.Image
	}
	names := imageNames(src.ID, paths)
	b.countBases(paths)
	fmt.Fprintf(b.log, "%s: %d candidate volumes in %s@%s\n", src.ID, len(vols), src.Repo, src.ShortCommit())
	fmt.Fprintf(&b.taken, "path\tgroup\tmasks\timage\n")
	tmp, err := os.MkdirTemp("", "segsam-volumes-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, v := range vols {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		name := names[v.Image]
		group := v.Group
		if group == "" {
			if group, err = b.groupOf(v.Image, strings.TrimPrefix(name, src.ID+"__")); err != nil {
				return err
			}
		}
		if why := excluded(b.rules, b.baseCount, v.Image, group, v.Label); why.rule != "" {
			b.exclude(why)
			continue
		}
		if _, ok := b.tree[v.Image]; !ok {
			return fmt.Errorf("volume %s is not in commit %s", v.Image, src.ShortCommit())
		}
		if _, ok := b.tree[v.Label]; !ok {
			b.res.MissingMask++
			b.warnf("missing", "no label volume %s for %s", v.Label, v.Image)
			continue
		}
		dir := filepath.Join(tmp, "v")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var files [2]string
		for i, p := range []string{v.Image, v.Label} {
			data, err := b.g.blob(b.ctx, b.tree[p].oid)
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			files[i] = filepath.Join(dir, fmt.Sprintf("%d_%s", i, path.Base(p)))
			if err := os.WriteFile(files[i], data, 0o644); err != nil {
				return err
			}
		}
		job := prepare.Job{
			Volume: files[0], Labels: files[1], Modality: src.Modality, Names: src.labelValues, Name: name,
			IgnoreUnnamed: true,
			Group:         src.ID + ":" + group, Source: b.source(v.Image), MaskSource: b.source(v.Label),
			Dataset: src.Dataset, License: src.License, Extra: b.extra(),
		}
		win := src.window
		st, err := prepare.Run(b.w, []prepare.Job{job}, prepare.Options{
			Axes: src.axes, Window: &win, MinMaskFraction: MinMaskFraction, MaxSide: MaxSide, SliceEvery: src.SliceEvery,
		})
		os.RemoveAll(dir)
		if err != nil {
			b.res.Unreadable++
			b.warnf("unreadable", "%s: %v", v.Image, err)
		}
		b.res.SmallDropped += st.SmallDropped
		b.res.Images += st.Images
		b.res.Masks += st.Masks
		for c, n := range st.Classes {
			b.res.Classes[c] += n
		}
		if err != nil {
			continue
		}
		if st.Images == 0 {
			b.res.Empty++
			continue
		}
		b.res.Taken++
		fmt.Fprintf(&b.taken, "%s\t%s\t%s\t%s\n", v.Image, group, v.Label, name)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
