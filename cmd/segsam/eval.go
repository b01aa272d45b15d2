package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/eval"
	"github.com/segsam/segsam/segsam"
)

func init() {
	register(command{
		name:    "eval",
		summary: "DSC / mDSC tables per modality for box and point prompts, with baselines",
		run:     runEval,
	})
}

// modelSegmenter builds the Segmenter of a checkpoint for segsam eval ("":
// the built-in model); see evalmodel.go.
var modelSegmenter func(checkpoint, arch string) (eval.Segmenter, error)

// evalStdout receives the tables eval prints (tests replace it).
var evalStdout io.Writer = os.Stdout

func runEval(args []string) error {
	fs := newFlagSet("eval", "--data DIR --prompt box|point|both [--prompts FILE.json] [--seed N] [--split all|train|val] [--baseline box|ellipse|all|none] [--checkpoint FILE [--arch NAME]] --out DIR")
	data := fs.String("data", "", "dataset folder(s) in SA-Med2D layout (image2label.json, meta.json, images/, masks/); several: comma-separated, merged")
	prompt := fs.String("prompt", "", "prompt kind: box, point or both (default: the kinds in --prompts, else required)")
	promptsFile := fs.String("prompts", "", "replay the prompts of an earlier run (its prompts.json)")
	seed := fs.Int64("seed", 1, "seed of the simulated point prompts")
	split := fs.String("split", "all", "evaluate all images, or the train or val part of a group split")
	valFraction := fs.Float64("val-fraction", defaultValFraction, "share of groups (patients/cases) in the val split; the default is train's, so --split val is the part a default training run held out")
	splitSeed := fs.Int64("split-seed", defaultSplitSeed, "seed of the group split (train's default)")
	baseline := fs.String("baseline", "all", "trivial baselines added as rows: box, ellipse, all or none")
	noBaselines := fs.Bool("no-baselines", false, "same as --baseline none")
	checkpoint := fs.String("checkpoint", "", "model weights to evaluate (SEG-SAM, or SAM / SAM-Med2D: then DSC only); default: the built-in model")
	noModel := fs.Bool("no-model", false, "evaluate the baselines only (no model)")
	arch := fs.String("arch", "", "architecture of --checkpoint (default: inferred)")
	gallery := fs.Int("gallery", eval.DefaultGalleryN, "worst cases drawn per method and prompt (0: none)")
	clicks := fs.Int("clicks", 0, "interactive rows too: each prompt followed by N corrective clicks, each on the centre of the largest error (positive on a missed pixel, negative on a false one), with the previous mask as mask prompt (models only, not the baselines)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	out := fs.String("out", "", "output folder (created; report files in it are replaced)")
	modalityPrior := fs.Bool("modality-prior", false, "choose each object's class among the classes the model's training data had in the image's modality (meta.json's); the paper's evaluation does not use it")
	auto := fs.Bool("auto", false, "automatic rows too: each image labelled without a prompt (as segsam segment, with its --points-per-side, --pred-iou-thresh, ... flags), each object scored against the label map (models only); with --auto, --prompt may be left out")
	var af amgFlags
	af.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *data == "" || *out == "" {
		return usageErrorf("--data and --out are required")
	}
	if *prompt == "" && *promptsFile == "" && !*auto {
		return usageErrorf("--prompt box|point|both is required (or --prompts FILE.json, or --auto)")
	}
	if *prompt != "" {
		if _, err := eval.ParseKinds(*prompt); err != nil {
			return usageErrorf("--prompt: %v", err)
		}
	}
	if *valFraction < 0 || *valFraction > 1 {
		return usageErrorf("--val-fraction %g: want a number in [0, 1]", *valFraction)
	}
	if *noBaselines {
		*baseline = "none"
	}
	var segs []eval.Segmenter
	if *noModel && *checkpoint != "" {
		return usageErrorf("--no-model and --checkpoint exclude each other")
	}
	if !*noModel {
		s, err := modelSegmenter(*checkpoint, *arch)
		if err != nil {
			return fmt.Errorf("load model: %w", err)
		}
		if *modalityPrior {
			mp, ok := s.(interface{ UseModalityPrior() error })
			if !ok {
				return usageErrorf("--modality-prior: %s has no class head", s.Name())
			}
			if err := mp.UseModalityPrior(); err != nil {
				return usageErrorf("--modality-prior: %v", err)
			}
		}
		if *auto {
			if err := enableAuto(fs, s, *checkpoint, &af); err != nil {
				return err
			}
		}
		segs = append(segs, s)
	} else if *arch != "" {
		return usageErrorf("--arch needs --checkpoint")
	} else if *auto {
		return usageErrorf("--auto needs a model (drop --no-model)")
	}
	switch *baseline {
	case "all":
		segs = append(segs, &eval.Baseline{Shape: eval.ShapeBox}, &eval.Baseline{Shape: eval.ShapeEllipse})
	case eval.ShapeBox, eval.ShapeEllipse:
		segs = append(segs, &eval.Baseline{Shape: *baseline})
	case "none":
	default:
		return usageErrorf("--baseline %q: want box, ellipse, all or none", *baseline)
	}
	if len(segs) == 0 {
		return usageErrorf("nothing to evaluate: --no-model without baselines")
	}

	sets, err := dataset.OpenEach(*data)
	if err != nil {
		return err
	}
	ds, err := dataset.Merge(sets...)
	if err != nil {
		return err
	}
	for _, w := range ds.Warnings {
		fmt.Fprintf(stderr, "segsam eval: warning: %s\n", w)
	}
	switch *split {
	case "all":
	case "train", "val":
		// Each set split by its own groups, as 'segsam train' splits them.
		train, val, err := dataset.SplitEach(sets, *valFraction, *splitSeed)
		if err != nil {
			return err
		}
		ds = train
		if *split == "val" {
			ds = val
		}
		if len(ds.Images) == 0 {
			return fmt.Errorf("the %s split of %s is empty (val fraction %g)", *split, *data, *valFraction)
		}
	default:
		return usageErrorf("--split %q: want all, train or val", *split)
	}

	if *clicks < 0 {
		return usageErrorf("--clicks %d: want 0 or more", *clicks)
	}
	opts := eval.Options{Prompt: *prompt, Seed: *seed, PromptsFile: *promptsFile, GalleryN: *gallery, Clicks: *clicks, Auto: *auto}
	if *gallery == 0 {
		opts.GalleryN = -1
	}
	if !*quiet {
		opts.Progress = stderr
	}
	rep, err := eval.Run(context.Background(), ds, segs, opts)
	if err != nil {
		return err
	}
	if err := rep.Write(*out); err != nil {
		return err
	}
	if err := rep.WriteTables(evalStdout); err != nil {
		return err
	}
	fmt.Fprintf(evalStdout, "\n%d images, %d objects; report in %s\n", rep.Images, rep.Objects, filepath.Join(*out, eval.SummaryMDFile))
	return nil
}

// autoEnabler is a Segmenter that can also label images without a prompt
// (segsam.Segmenter).
type autoEnabler interface {
	EnableAuto(segsam.AMGOptions, segsam.MergeOptions) error
}

// enableAuto turns on eval --auto for a model Segmenter, with the built-in
// model's thresholds unless given (as segment).
func enableAuto(fs *flag.FlagSet, s eval.Segmenter, checkpoint string, af *amgFlags) error {
	ae, ok := s.(autoEnabler)
	if !ok {
		return usageErrorf("--auto: %s cannot label images without a prompt", s.Name())
	}
	if checkpoint == "" {
		if !flagGiven(fs, "pred-iou-thresh") {
			af.opts.PredIoUThresh = builtinPredIoUThresh
		}
		if !flagGiven(fs, "stability-thresh") {
			af.opts.StabilityScoreThresh = builtinStabilityThresh
		}
	}
	opts, err := af.options()
	if err != nil {
		return err
	}
	if err := ae.EnableAuto(opts, segsam.MergeOptions{MinRegionArea: af.minArea}); err != nil {
		return usageErrorf("--auto: %v", err)
	}
	return nil
}
