package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/segsam/segsam/eval"
	"github.com/segsam/segsam/internal/render"
	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/medimg/prepare"
	"github.com/segsam/segsam/segsam"
)

func init() {
	register(command{
		name:    "segment",
		summary: "label everything: automatic label map of an image or a whole volume (no prompt)",
		run:     runSegment,
	})
}

// amgFlags are the automatic mask generator's settings.
type amgFlags struct {
	opts    segsam.AMGOptions
	classes string
	minArea int
}

func (f *amgFlags) register(fs *flag.FlagSet) {
	d := segsam.DefaultAMGOptions()
	fs.IntVar(&f.opts.PointsPerSide, "points-per-side", d.PointsPerSide, "prompt grid: N×N single points over the image (SAM's automatic mask generator)")
	fs.IntVar(&f.opts.PointsPerBatch, "points-per-batch", d.PointsPerBatch, "points decoded at once")
	fs.Float64Var(&f.opts.PredIoUThresh, "pred-iou-thresh", d.PredIoUThresh, "keep masks whose predicted IoU is above this (0: all); SAM's default, the built-in model's is 0 (its IoU head is not calibrated)")
	fs.Float64Var(&f.opts.StabilityScoreThresh, "stability-thresh", d.StabilityScoreThresh, "keep masks whose stability score is at least this (0: all); SAM's default, the built-in model's is 0.9")
	fs.Float64Var(&f.opts.StabilityScoreOffset, "stability-offset", d.StabilityScoreOffset, "logit offset of the stability score")
	fs.Float64Var(&f.opts.BoxNMSThresh, "box-nms-thresh", d.BoxNMSThresh, "box IoU above which the lower-scored of two masks is dropped")
	fs.IntVar(&f.opts.CropNLayers, "crop-layers", 0, "extra layers of image crops (layer i: 2^i×2^i crops, each encoded on its own)")
	fs.BoolVar(&f.opts.Presence, "presence", false, "drop masks whose class the CO tokens score as absent (below --presence-thresh); off by default: the built-in model's presence head is weak")
	fs.Float64Var(&f.opts.PresenceThresh, "presence-thresh", d.PresenceThresh, "presence score below which --presence drops a class")
	fs.StringVar(&f.classes, "classes", "", "keep only these classes (comma-separated names of the model's vocabulary)")
	fs.IntVar(&f.minArea, "min-region", 0, "drop label regions (4-connected) smaller than this many pixels")
}

// options are the flags' automatic-mask options.
func (f *amgFlags) options() (segsam.AMGOptions, error) {
	opts := f.opts
	d := segsam.DefaultAMGOptions()
	opts.CropNMSThresh, opts.CropOverlapRatio, opts.CropNPointsDownscaleFactor = d.CropNMSThresh, d.CropOverlapRatio, d.CropNPointsDownscaleFactor
	if f.classes != "" {
		for _, c := range strings.Split(f.classes, ",") {
			if c = strings.TrimSpace(c); c != "" {
				opts.Classes = append(opts.Classes, c)
			}
		}
	}
	if f.minArea < 0 {
		return opts, usageErrorf("--min-region %d: want >= 0", f.minArea)
	}
	return opts, nil
}

// automatic builds the automatic segmenter; an unknown class is a usage error.
func (f *amgFlags) automatic(p *segsam.Predictor) (*segsam.Automatic, error) {
	opts, err := f.options()
	if err != nil {
		return nil, err
	}
	a, err := segsam.NewAutomatic(p, opts)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return a, nil
}

// segmentResult is classes.json.
type segmentResult struct {
	Checkpoint string               `json:"checkpoint"`
	Input      string               `json:"input"`
	Width      int                  `json:"width,omitempty"`
	Height     int                  `json:"height,omitempty"`
	Dim        []int                `json:"dim,omitempty"`
	Spacing    []float64            `json:"spacing_mm,omitempty"`
	Axes       []string             `json:"axes,omitempty"`
	Slices     int                  `json:"slices_segmented,omitempty"`
	Candidates int                  `json:"candidate_masks,omitempty"`
	Objects    int                  `json:"objects,omitempty"`
	Classes    []segsam.ClassEntry  `json:"classes"`
	Names      map[string]string    `json:"label_names,omitempty"`
	Presence   map[string]float32   `json:"presence_scores,omitempty"`
	Dice       []eval.ClassDice     `json:"dice,omitempty"`
	MeanDice   *float64             `json:"mean_dice,omitempty"`
	Options    segsam.AMGOptions    `json:"options"`
	Outputs    map[string]string    `json:"outputs"`
	TimingsS   map[string]float64   `json:"timings_s"`
	Objs       []segmentObjectEntry `json:"object_list,omitempty"`
}

type segmentObjectEntry struct {
	Class      string     `json:"class,omitempty"`
	Confidence float32    `json:"confidence,omitempty"`
	PredIoU    float32    `json:"pred_iou"`
	Stability  float32    `json:"stability"`
	Area       int        `json:"area"`
	Box        [4]int     `json:"box"`
	Point      [2]float64 `json:"point"`
}

// The built-in model's automatic-mask thresholds (see runSegment).
const (
	builtinPredIoUThresh   = 0.0
	builtinStabilityThresh = 0.9
)

// builtinAMGOptions are the automatic-mask options for the built-in model:
// SAM's, with its own thresholds.
func builtinAMGOptions() segsam.AMGOptions {
	o := segsam.DefaultAMGOptions()
	o.PredIoUThresh, o.StabilityScoreThresh = builtinPredIoUThresh, builtinStabilityThresh
	return o
}

// errNothingFound is the error of an input where no object is kept.
var errNothingFound = errors.New("nothing found")

func runSegment(args []string) error {
	fs := newFlagSet("segment", "(--image IMAGE | --volume VOLUME [--axes axial,coronal,sagittal]) [--classes a,b] [--truth LABELS --truth-names NAMES.json] --out DIR\n\n"+
		"Labels every object without a prompt: a grid of single-point prompts (SAM's automatic mask generator), masks kept by predicted IoU and stability score, box NMS, each named by Dec_saw's class, overlaps resolved into one label map (label = class index + 1). "+
		"An image gives labels.png, overlay.png and classes.json; a volume (NIfTI, DICOM) is segmented slice by slice along --axes and gives labels.nii.gz on the input's grid, classes.json (volumes in mL) and montage.png. "+
		"--truth compares with a ground-truth label map (an image: a PNG of label values; a volume: a NIfTI label map) whose values --truth-names names, and prints per-class Dice.")
	var mf modelFlags
	mf.register(fs)
	var af amgFlags
	af.register(fs)
	imagePath := fs.String("image", "", "input image: PNG, JPEG or .npy")
	volumePath := fs.String("volume", "", "input volume: NIfTI (.nii, .nii.gz) or a DICOM series folder")
	axesFlag := fs.String("axes", "axial", "for a volume: slicing directions, comma-separated (axial, coronal, sagittal); several are merged by majority vote")
	window := fs.String("window", "auto", "for a volume: intensity window: soft, lung, bone, brain, L,W, pLO,HI or auto")
	maxVoxels := fs.Int("max-voxels", segsam.DefaultMaxVoxels, "for a volume: memory bound, the largest number of voxels accepted")
	truth := fs.String("truth", "", "ground-truth label map to compute per-class Dice against")
	truthNames := fs.String("truth-names", "", "class names of the --truth values (JSON as prepare's --label-names)")
	out := fs.String("out", "", "output folder (created)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*imagePath == "") == (*volumePath == "") {
		return usageErrorf("give exactly one of --image or --volume")
	}
	if *out == "" {
		return usageErrorf("--out is required")
	}
	if (*truth == "") != (*truthNames == "") {
		return usageErrorf("--truth and --truth-names go together")
	}
	var names *prepare.LabelNames
	if *truthNames != "" {
		var err error
		if names, err = prepare.ReadLabelNames(*truthNames); err != nil {
			return usageErrorf("--truth-names: %v", err)
		}
	}
	if mf.checkpoint == "" {
		// The built-in model's IoU head is not calibrated (it predicts
		// 0.2-0.35 for every mask of the bundled example), so SAM's 0.88
		// would keep nothing; its own defaults are set unless given.
		var set []string
		if !flagGiven(fs, "pred-iou-thresh") {
			af.opts.PredIoUThresh = builtinPredIoUThresh
			set = append(set, fmt.Sprintf("--pred-iou-thresh %g", builtinPredIoUThresh))
		}
		if !flagGiven(fs, "stability-thresh") {
			af.opts.StabilityScoreThresh = builtinStabilityThresh
			set = append(set, fmt.Sprintf("--stability-thresh %g", builtinStabilityThresh))
		}
		if len(set) > 0 {
			fmt.Fprintf(stderr, "built-in model: %s (its predicted IoU is not calibrated; SAM's defaults are 0.88 and 0.95)\n", strings.Join(set, " "))
		}
	}
	start := time.Now()
	p, err := mf.load()
	if err != nil {
		return err
	}
	a, err := af.automatic(p)
	if err != nil {
		return err
	}
	load := time.Since(start)
	merge := segsam.MergeOptions{MinRegionArea: af.minArea}
	res := segmentResult{Checkpoint: checkpointName(mf.checkpoint), Options: a.Opts, Outputs: map[string]string{}, TimingsS: map[string]float64{"load": load.Seconds()}}
	ctx := context.Background()
	if *imagePath != "" {
		return segmentImage(ctx, a, merge, *imagePath, *truth, names, *out, &res)
	}
	axes, err := medimg.ParseAxes(*axesFlag)
	if err != nil {
		return usageErrorf("--axes: %v", err)
	}
	win, err := medimg.ParseWindow(*window)
	if err != nil {
		return usageErrorf("--window: %v", err)
	}
	if *maxVoxels < 1 {
		return usageErrorf("--max-voxels %d: want >= 1", *maxVoxels)
	}
	return segmentVolume(ctx, a, segsam.VolumeOptions{Axes: axes, Window: win, Merge: merge, MaxVoxels: *maxVoxels, Progress: stderr}, *volumePath, *truth, names, *out, &res)
}

func segmentImage(ctx context.Context, a *segsam.Automatic, merge segsam.MergeOptions, path, truth string, names *prepare.LabelNames, out string, res *segmentResult) error {
	img, err := readInputImage(path, "", "")
	if err != nil {
		return err
	}
	var gt []int32
	if truth != "" {
		if gt, err = readLabelPNG(truth, img.H, img.W); err != nil {
			return err
		}
	}
	start := time.Now()
	lm, err := a.SegmentImage(ctx, img, merge)
	if err != nil {
		return err
	}
	res.TimingsS["segment"] = time.Since(start).Seconds()
	res.Input, res.Width, res.Height = path, img.W, img.H
	res.Candidates, res.Objects, res.Classes = lm.Generated.Candidates, len(lm.Generated.Objects), lm.Classes
	for _, ob := range lm.Generated.Objects {
		res.Objs = append(res.Objs, segmentObjectEntry{Class: ob.Class, Confidence: ob.Confidence, PredIoU: ob.PredIoU, Stability: ob.Stability, Area: ob.Area, Box: ob.Box, Point: [2]float64{ob.Point.X, ob.Point.Y}})
	}
	if vocab := a.Classes(); lm.Generated.Presence != nil {
		res.Presence = map[string]float32{}
		for i, s := range lm.Generated.Presence {
			res.Presence[vocab[i]] = s
		}
	}
	if len(lm.Classes) == 0 {
		return nothingFound(path, lm.Generated.Candidates, a)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if gt != nil {
		addDice(res, lm.Labels, predNames(a, lm.Classes), gt, names.NamesFor(truth), a.Classes())
	}
	labelsPath := filepath.Join(out, "labels.png")
	if err := writeLabelPNG(labelsPath, lm.Labels, img.H, img.W); err != nil {
		return err
	}
	overlay := segsam.Overlay(img, lm.Labels)
	for _, c := range lm.Classes {
		x, y := labelAnchor(lm.Labels, img.W, c.ID)
		render.Label(overlay, x, y, c.Name, color.RGBA{255, 255, 255, 255})
	}
	overlayPath := filepath.Join(out, "overlay.png")
	if err := render.SavePNG(overlayPath, overlay); err != nil {
		return err
	}
	res.Outputs["labels"], res.Outputs["overlay"] = labelsPath, overlayPath
	return finishSegment(res, out)
}

func segmentVolume(ctx context.Context, a *segsam.Automatic, opts segsam.VolumeOptions, path, truth string, names *prepare.LabelNames, out string, res *segmentResult) error {
	vol, err := medimg.ReadVolume(path)
	if err != nil {
		return err
	}
	var gt *medimg.Volume
	if truth != "" {
		if gt, err = medimg.ReadVolume(truth); err != nil {
			return fmt.Errorf("--truth: %w", err)
		}
		if !vol.SameGrid(gt, 1e-3) {
			return usageErrorf("--truth %s is not on the grid of %s (dimensions %v vs %v, or another affine)", truth, path, gt.Dim, vol.Dim)
		}
	}
	start := time.Now()
	vl, err := a.SegmentVolume(ctx, vol, opts)
	if err != nil {
		if errors.Is(err, segsam.ErrVolumeTooLarge) {
			return usageErrorf("%s: %v (--max-voxels)", path, err)
		}
		return err
	}
	res.TimingsS["segment"] = time.Since(start).Seconds()
	sp := vol.Spacing()
	res.Input, res.Dim, res.Spacing = path, vol.Dim[:], sp[:]
	res.Slices, res.Classes = vl.Slices, vl.Classes
	for _, ax := range vl.Axes {
		res.Axes = append(res.Axes, ax.String())
	}
	if len(vl.Classes) == 0 {
		return nothingFound(path, -1, a)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	res.Names = map[string]string{}
	for id, n := range vl.Names {
		res.Names[fmt.Sprint(id)] = n
	}
	if gt != nil {
		t := make([]int32, len(gt.Data))
		for i, v := range gt.Data {
			if v == v {
				t[i] = int32(math.Round(float64(v)))
			}
		}
		addDice(res, vl.Labels, vl.Names, t, names.NamesFor(truth), a.Classes())
	}
	labelsPath := filepath.Join(out, "labels.nii.gz")
	if err := vl.WriteNIfTI(labelsPath); err != nil {
		return err
	}
	mont, err := vl.Montage(opts.Window, 16, 4)
	if err != nil {
		return err
	}
	montPath := filepath.Join(out, "montage.png")
	if err := render.SavePNG(montPath, mont); err != nil {
		return err
	}
	res.Outputs["labels"], res.Outputs["montage"] = labelsPath, montPath
	return finishSegment(res, out)
}

func nothingFound(path string, candidates int, a *segsam.Automatic) error {
	what := ""
	if candidates >= 0 {
		what = fmt.Sprintf(" (%d candidate masks, none kept)", candidates)
	}
	hint := "lower --pred-iou-thresh or --stability-thresh"
	if len(a.Opts.Classes) > 0 {
		hint += ", or widen --classes"
	}
	if a.Opts.Presence {
		hint += ", or drop --presence"
	}
	return fmt.Errorf("%w in %s%s: %s", errNothingFound, path, what, hint)
}

func predNames(a *segsam.Automatic, classes []segsam.ClassEntry) map[int]string {
	m := map[int]string{}
	for _, c := range classes {
		m[c.ID] = c.Name
	}
	return m
}

func addDice(res *segmentResult, pred []uint16, pn map[int]string, gt []int32, tn map[int]string, vocab []string) {
	rows, mean, n := eval.LabelMapDice(pred, pn, gt, tn, vocab)
	res.Dice = rows
	if n > 0 {
		res.MeanDice = &mean
	}
	fmt.Fprintf(stderr, "%-32s %8s %9s %9s\n", "class", "Dice", "truth", "predicted")
	for _, r := range rows {
		note := ""
		if !r.InVocabulary {
			note = "  (not in the model's vocabulary)"
		}
		fmt.Fprintf(stderr, "%-32s %8.4f %9d %9d%s\n", r.Class, r.Dice, r.Truth, r.Pred, note)
	}
	if n > 0 {
		fmt.Fprintf(stderr, "mean Dice over the %d ground-truth classes the model knows: %.4f\n", n, mean)
	} else {
		fmt.Fprintln(stderr, "no ground-truth class is in the model's vocabulary: no mean Dice")
	}
}

func finishSegment(res *segmentResult, out string) error {
	path := filepath.Join(out, "classes.json")
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return err
	}
	var parts []string
	for _, c := range res.Classes {
		s := fmt.Sprintf("%s (%d", c.Name, c.Pixels)
		if c.VolumeML > 0 {
			s += fmt.Sprintf(" voxels, %.1f mL", c.VolumeML)
		} else {
			s += " px"
		}
		parts = append(parts, s+")")
	}
	fmt.Fprintf(stderr, "%d classes: %s\n", len(res.Classes), strings.Join(parts, ", "))
	fmt.Fprintf(stderr, "wrote %s and %s\n", res.Outputs["labels"], path)
	return nil
}

// labelAnchor is a pixel of label id near its top-left, for the overlay's text.
func labelAnchor(labels []uint16, w, id int) (int, int) {
	for p, v := range labels {
		if int(v) == id {
			return p % w, p/w + 10
		}
	}
	return 0, 10
}

// writeLabelPNG writes a label map as a grey PNG of the label values
// (8-bit when every value fits, else 16-bit).
func writeLabelPNG(path string, labels []uint16, h, w int) error {
	img := segsam.LabelImage(labels, h, w)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// readLabelPNG reads a ground-truth label PNG (grey values are labels) of
// the image's size.
func readLabelPNG(path string, h, w int) ([]int32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--truth: %w", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("--truth %s: not a PNG label map: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() != w || b.Dy() != h {
		return nil, usageErrorf("--truth %s is %dx%d, the image is %dx%d", path, b.Dx(), b.Dy(), w, h)
	}
	out := make([]int32, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			g := color.Gray16Model.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray16)
			v := int32(g.Y)
			if _, is8 := img.(*image.Gray); is8 || !is16(img) {
				v >>= 8
			}
			out[y*w+x] = v
		}
	}
	return out, nil
}

func is16(img image.Image) bool {
	switch img.(type) {
	case *image.Gray16, *image.RGBA64, *image.NRGBA64:
		return true
	}
	return false
}
