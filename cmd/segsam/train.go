package main

import (
	"context"
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
	data := fs.String("data", "", "training set in SA-Med2D layout")
	val := fs.String("val", "", "validation set (default: a split of --data by patient/volume group)")
	valFraction := fs.Float64("val-fraction", 0.15, "without --val: share of groups held out for validation (0: none)")
	splitSeed := fs.Int64("split-seed", 1, "seed of the group split")
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
	boxFraction := fs.Float64("box-fraction", 0.5, "share of box prompts (the rest are single points)")
	seed := fs.Int64("seed", 1, "seed of initialisation and sampling (a run is repeatable)")
	encoder := fs.String("train-encoder", "frozen", "image encoder: frozen (paper; embeddings cached), adapters (SAM-Med2D adapters train) or full")
	cache := fs.String("cache", "", "embedding cache folder (default RUN_DIR/embedding-cache)")
	maxSteps := fs.Int("max-steps", 0, "cap on steps per epoch (0: every image once per epoch)")
	focal := fs.Float64("focal-weight", segsam.DefaultLossWeights.Focal, "weight of Dec_sag's focal loss (SAM: 20)")
	dice := fs.Float64("dice-weight", segsam.DefaultLossWeights.Dice, "weight of Dec_sag's dice loss (SAM: 1)")
	presence := fs.Float64("presence-weight", segsam.DefaultLossWeights.Presence, "λ, weight of the class-presence BCE (paper: 10)")
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
	if mode != train.EncoderFrozen && mode != train.EncoderAdapters && mode != train.EncoderFull {
		return usageErrorf("--train-encoder %q: want frozen, adapters or full", *encoder)
	}
	if *epochs < 1 || *images < 1 || *objects < 1 || *lr <= 0 || *boxFraction < 0 || *boxFraction > 1 {
		return usageErrorf("--epochs, --images-per-step, --objects-per-image, --lr must be positive and --box-fraction in [0,1]")
	}

	trainSet, err := dataset.Open(*data)
	if err != nil {
		return err
	}
	var valSet *dataset.Dataset
	switch {
	case *val != "":
		if valSet, err = dataset.Open(*val); err != nil {
			return err
		}
	case *valFraction > 0:
		trainSet, valSet = trainSet.SplitByGroup(*valFraction, *splitSeed)
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
	if text != nil {
		cfg.Text = segsam.TextIdentity{Provider: text.Provider, Model: text.Model, Fingerprint: text.Fingerprint(), KnowledgeVersion: text.KnowledgeVersion}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("training %s: %d train images, %d val images, %d classes, encoder %s\n", *variant, len(trainSet.Images), imagesOf(valSet), len(classes), mode)
	res, err := train.Run(ctx, train.Options{
		Train: trainSet, Val: valSet, Model: cfg, Init: *initCkpt, Text: text, Out: *out,
		Epochs: *epochs, LearningRate: *lr, HalveAt: halveAt, ImagesPerStep: *images, ObjectsPerImage: *objects,
		BoxFraction: *boxFraction, Seed: *seed, Encoder: mode, CacheDir: *cache, MaxStepsPerEpoch: *maxSteps, Log: os.Stderr,
	})
	if err != nil {
		return err
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
