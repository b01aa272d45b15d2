package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
	"github.com/segsam/segsam/textembed"
	"github.com/segsam/segsam/train"
)

func init() {
	register(command{
		name:    "train",
		summary: "train SEG-SAM on an SA-Med2D-format dataset (the paper's recipe by default)",
		run:     runTrain,
	})
}

func runTrain(args []string) error {
	fs := newFlagSet("train", "--data DIR [--val DIR] [--init CHECKPOINT] (--arch NAME | --config FILE) [--variant seg_sam] [--text-embeddings FILE] --out RUN_DIR")
	data := fs.String("data", "", "training set(s) in SA-Med2D layout (several: comma-separated, merged)")
	val := fs.String("val", "", "validation set(s), comma-separated, used whole (with --val-fraction also given, added to the split)")
	valFraction := fs.Float64("val-fraction", defaultValFraction, "share of each --data set's groups (patients, cases) held out for validation, each set split by its own groups (0: none; default 0 when --val is given)")
	splitSeed := fs.Int64("split-seed", defaultSplitSeed, "seed of the group split")
	initCkpt := fs.String("init", "", "start from these weights: an official SAM / SAM-Med2D .pth (its SAM part) or a segsam checkpoint")
	arch := fs.String("arch", "", "SAM architecture preset: "+strings.Join(sam.PresetNames(), ", "))
	config := fs.String("config", "", "SAM architecture as a JSON config")
	variant := fs.String("variant", "seg_sam", "model variant (paper Table 4): "+strings.Join(segsam.VariantNames(), ", "))
	textFile := fs.String("text-embeddings", "", "class-description embeddings (from 'segsam text embed'); needed by T2VSE variants")
	out := fs.String("out", "", "run folder: checkpoint.safetensors, history.csv, loss.png, resumable state")
	epochs := fs.Int("epochs", 15, "epochs")
	lr := fs.Float64("lr", 1e-4, "Adam learning rate")
	halve := fs.String("halve-at", "5,10", "epochs after which the learning rate halves (comma-separated; \"\" for none)")
	images := fs.Int("images-per-step", 2, "images per optimisation step")
	objects := fs.Int("objects-per-image", 5, "prompted objects per image per step")
	boxFraction := fs.Float64("box-fraction", 0.5, "share of box prompts (the rest are single points; 0: points only)")
	augment := fs.Bool("augment", false, "augment each training image per step: zoom/shift, flips where anatomy allows, contrast/brightness/gamma (needs --train-encoder full or adapters)")
	balance := fs.Bool("balance", false, "draw images with each dataset weighted by 1/sqrt(its size) and prefer objects of rare classes")
	clickRounds := fs.Int("click-rounds", 0, "SAM-Med2D's iterative click simulation: after each step's first prompt, this many more optimiser steps on the same batch, each with 1/3/5/9 clicks from the previous error region and the previous logits as mask prompt (SAM-Med2D uses 8; each round costs about one decoder step)")
	accumulate := fs.Int("accumulate", 1, "sum the gradients of this many steps before one update: the effective batch is accumulate x images-per-step images (the paper: 128); the learning rate is not rescaled")
	pixelSkip := fs.Bool("pixel-skip", false, "add a convolutional stem on the input pixels whose features both decoders add at the masks' resolution (segsam's addition; needs patch 16; new weights start at zero, so --init of a model without it predicts as before)")
	boxPrior := fs.Bool("box-prior", false, "add the ellipse inscribed in a box prompt to both decoders' mask logits, with a learned scale (segsam's addition for small models trained from scratch)")
	textLiteral := fs.Bool("text-literal", false, "T2VSE as eq. 9 reads literally: the prompt tokens join only its cross-attention, so its summary token ignores the prompt (an ablation; default: they join its self-attention)")
	initMatching := fs.Bool("init-matching", false, "with --init of a segsam checkpoint of another configuration (vocabulary, parts): take every weight whose name and shape fit, initialise the rest")
	seed := fs.Int64("seed", 1, "seed of initialisation and sampling (a run is repeatable)")
	encoder := fs.String("train-encoder", "", "image encoder: frozen (embeddings cached), adapters (SAM-Med2D's adapters train, the rest frozen) or full; default: adapters for an encoder with adapters (SAM-Med2D: the paper freezes SAM's original parameters, and SAM-Med2D trains its adapters), frozen otherwise")
	cache := fs.String("cache", "", "embedding cache folder (default RUN_DIR/embedding-cache)")
	maxSteps := fs.Int("max-steps", 0, "cap on steps per epoch (0: every image once per epoch)")
	focal := fs.Float64("focal-weight", segsam.DefaultLossWeights.Focal, "weight of Dec_sag's focal loss (SAM: 20)")
	dice := fs.Float64("dice-weight", segsam.DefaultLossWeights.Dice, "weight of Dec_sag's dice loss (SAM: 1)")
	presence := fs.Float64("presence-weight", segsam.DefaultLossWeights.Presence, "λ, weight of the class-presence BCE (paper: 10)")
	semBCE := fs.Float64("sem-bce-weight", 0, "weight of a pixel BCE on Dec_saw's mask beside its dice (Mask2Former's mask loss; the paper: 0)")
	iouChosen := fs.Bool("iou-chosen-only", false, "ablation: supervise only the chosen mask token's predicted IoU (before issue 17.1; default: every token against its own mask, as SAM)")
	sawFromSag := fs.Bool("init-saw-from-sag", false, "start Dec_saw's transformer, upscaling and hypernetwork from Dec_sag's weights (fine-tuning from SAM / SAM-Med2D)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *data == "" || *out == "" {
		return usageErrorf("--data and --out are required")
	}
	if (*arch == "") == (*config == "") {
		return usageErrorf("give exactly one of --arch or --config for the SAM architecture")
	}
	var base sam.Config
	var err error
	if *arch != "" {
		if base, err = sam.Preset(*arch); err != nil {
			return usageErrorf("%v", err)
		}
	} else if base, err = sam.LoadConfig(*config); err != nil {
		return err
	}
	if _, ok := segsam.Variants[*variant]; !ok {
		return usageErrorf("unknown variant %q (known: %s)", *variant, strings.Join(segsam.VariantNames(), ", "))
	}
	var halveAt []int
	for _, f := range strings.Split(*halve, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		e, err := strconv.Atoi(f)
		if err != nil || e < 1 {
			return usageErrorf("--halve-at: %q is not an epoch number", f)
		}
		halveAt = append(halveAt, e)
	}
	if halveAt == nil {
		halveAt = []int{}
	}
	mode := train.EncoderMode(*encoder)
	if mode == "" {
		mode = defaultEncoderMode(base)
	}
	if mode != train.EncoderFrozen && mode != train.EncoderAdapters && mode != train.EncoderFull {
		return usageErrorf("--train-encoder %q: want frozen, adapters or full", *encoder)
	}
	if *epochs < 1 || *images < 1 || *objects < 1 || *lr <= 0 || *boxFraction < 0 || *boxFraction > 1 {
		return usageErrorf("--epochs, --images-per-step, --objects-per-image, --lr must be positive and --box-fraction in [0,1]")
	}

	sets, err := dataset.OpenEach(*data)
	if err != nil {
		return err
	}
	// Validation: a split of each --data set by its own groups (unless
	// --val is given without --val-fraction), plus the --val sets whole.
	fraction := *valFraction
	if *val != "" && !flagGiven(fs, "val-fraction") {
		fraction = 0
	}
	var trainSet, valSet *dataset.Dataset
	if fraction > 0 {
		if trainSet, valSet, err = dataset.SplitEach(sets, fraction, *splitSeed); err != nil {
			return err
		}
	} else if trainSet, err = dataset.Merge(sets...); err != nil {
		return err
	}
	if *val != "" {
		extra, err := dataset.OpenEach(*val)
		if err != nil {
			return err
		}
		if valSet != nil {
			extra = append([]*dataset.Dataset{valSet}, extra...)
		}
		if valSet, err = dataset.Merge(extra...); err != nil {
			return err
		}
	}
	if len(trainSet.Images) == 0 {
		return fmt.Errorf("training set %s is empty", *data)
	}
	classes := trainSet.Classes()
	if valSet != nil {
		classes = mergeClasses(classes, valSet.Classes())
	}
	var text *textembed.Set
	if *textFile != "" {
		set, err := textembed.Load(*textFile)
		if err != nil {
			return err
		}
		// The vocabulary is the embedding file's classes (they must cover the data).
		for _, c := range classes {
			if !slices.Contains(set.Classes, c) {
				return fmt.Errorf("class %q of the data has no embedding in %s (re-run 'segsam text embed --data %s')", c, *textFile, *data)
			}
		}
		classes = set.Classes
		text = &set
	}
	textDim := 0
	if text != nil {
		textDim = text.Dim()
	}
	cfg, err := segsam.NewConfig(base, *variant, classes, textDim)
	if err != nil {
		if segsam.Variants[*variant].TextEnhancer && text == nil {
			return usageErrorf("variant %s uses T2VSE: give --text-embeddings (make one with 'segsam text embed --data %s --out FILE.npy')", *variant, *data)
		}
		return err
	}
	if *focal < 0 || *dice < 0 || *presence < 0 {
		return usageErrorf("loss weights must not be negative")
	}
	cfg.Loss.Focal, cfg.Loss.Dice, cfg.Loss.Presence = *focal, *dice, *presence
	cfg.Parts.BoxPrior = *boxPrior
	cfg.Parts.PixelSkip = *pixelSkip
	if err := cfg.Validate(); err != nil {
		return usageErrorf("%v", err)
	}
	if *semBCE < 0 {
		return usageErrorf("--sem-bce-weight must not be negative")
	}
	cfg.Loss.SemBCE = *semBCE
	cfg.Loss.IoUChosenOnly = *iouChosen
	if *textLiteral {
		cfg.Parts.PromptAwareText = false
	}
	if *augment && mode == train.EncoderFrozen {
		return usageErrorf("--augment needs --train-encoder full or adapters (a frozen encoder's embeddings are computed once)")
	}
	boxShare := *boxFraction
	if boxShare == 0 {
		boxShare = train.PointsOnly
	}
	if text != nil {
		cfg.Text = segsam.TextIdentity{Provider: text.Provider, Model: text.Model, Fingerprint: text.Fingerprint(), KnowledgeVersion: text.KnowledgeVersion}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("training %s: %d train images, %d val images, %d classes, encoder %s\n", *variant, len(trainSet.Images), imagesOf(valSet), len(classes), mode)
	res, err := train.Run(ctx, train.Options{
		Train: trainSet, Val: valSet, Model: cfg, Init: *initCkpt, Text: text, Out: *out,
		Epochs: *epochs, LearningRate: *lr, HalveAt: halveAt, ImagesPerStep: *images, ObjectsPerImage: *objects,
		BoxFraction: boxShare, Seed: *seed, Encoder: mode, CacheDir: *cache, MaxStepsPerEpoch: *maxSteps, Log: os.Stderr,
		Augment: *augment, Balance: *balance, ClickRounds: *clickRounds, Accumulate: *accumulate, InitMatching: *initMatching, SemanticFromBinary: *sawFromSag,
	})
	if err != nil {
		return err
	}
	if res.Finished {
		fmt.Printf("%s already finished; nothing trained\n", res.Checkpoint)
		return nil
	}
	fmt.Printf("wrote %s (%.1f objects/s)\n", res.Checkpoint, res.ObjectsPerSecond)
	return nil
}

func imagesOf(d *dataset.Dataset) int {
	if d == nil {
		return 0
	}
	return len(d.Images)
}

func mergeClasses(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range append(append([]string{}, a...), b...) {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// flagGiven reports whether the command line set the flag.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			given = true
		}
	})
	return given
}

// defaultEncoderMode is what trains of the image encoder without
// --train-encoder: SAM-Med2D's adapters (SAM's own weights frozen, as the
// paper and SAM-Med2D train), or nothing for an encoder without adapters
// (its embeddings are then cached).
func defaultEncoderMode(c sam.Config) train.EncoderMode {
	if c.ImageEncoder.Adapter != nil {
		return train.EncoderAdapters
	}
	return train.EncoderFrozen
}
