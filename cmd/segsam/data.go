package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/dataset/sources"
	"github.com/segsam/segsam/segsam"
)

func init() {
	register(command{
		name:    "data",
		summary: "list the data-source manifests, or rebuild training sets from local git snapshots",
		run:     runData,
	})
}

const (
	dataBuildSynopsis    = "build [--sources DIR] --repos DIR --out DIR [--exclusions FILE] [--only id1,id2] [--force]"
	dataListSynopsis     = "list [--sources DIR]"
	dataAssembleSynopsis = "assemble [--sources DIR] --built DIR [--split DIR,...] [--val-fraction F] [--split-seed N] [--force] --out DIR"
	dataModalitySynopsis = "modality-classes --checkpoint FILE --data DIR[,DIR...] --out FILE"
	defaultSourcesDir    = "dataset/sources"
)

func runData(args []string) error { return dataMain(args, os.Stdout, os.Stderr) }

// dataMain runs 'segsam data', writing tables to out and progress to logw.
func dataMain(args []string, out, logw io.Writer) error {
	if len(args) == 0 {
		return usageErrorf("want a subcommand: segsam data %s | segsam data %s | segsam data %s | segsam data %s", dataBuildSynopsis, dataListSynopsis, dataAssembleSynopsis, dataModalitySynopsis)
	}
	switch args[0] {
	case "build":
		return dataBuild(args[1:], out, logw)
	case "list":
		return dataList(args[1:], out)
	case "assemble":
		return dataAssemble(args[1:], out, logw)
	case "modality-classes":
		return dataModalityClasses(args[1:], out)
	case "-h", "--help", "help":
		fmt.Fprintf(os.Stderr, "usage:\n  segsam data %s\n  segsam data %s\n  segsam data %s\n  segsam data %s\n", dataBuildSynopsis, dataListSynopsis, dataAssembleSynopsis, dataModalitySynopsis)
		return nil
	}
	return usageErrorf("unknown subcommand %q (want build, list, assemble or modality-classes)", args[0])
}

// dataModalityClasses records in a segsam checkpoint which classes each
// modality of its training data had (the modality prior: predict
// --modality, eval --modality-prior), for checkpoints trained before
// 'segsam train' recorded it.
func dataModalityClasses(args []string, out io.Writer) error {
	fs := newFlagSet("data modality-classes", strings.TrimPrefix(dataModalitySynopsis, "modality-classes "))
	ckpt := fs.String("checkpoint", "", "segsam checkpoint (.safetensors)")
	data := fs.String("data", "", "the checkpoint's training set(s), SA-Med2D layout with meta.json; several: comma-separated")
	dst := fs.String("out", "", "checkpoint to write (may be --checkpoint itself)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ckpt == "" || *data == "" || *dst == "" {
		return usageErrorf("--checkpoint, --data and --out are required")
	}
	sets, err := dataset.OpenEach(*data)
	if err != nil {
		return err
	}
	table := segsam.ModalityClassesOf(sets...)
	if len(table) == 0 {
		return fmt.Errorf("%s: no image with a known modality (meta.json)", *data)
	}
	if err := segsam.WriteModalityClasses(*ckpt, *dst, table); err != nil {
		return err
	}
	mods := make([]string, 0, len(table))
	for m := range table {
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return dataset.ModalityIndex(mods[i]) < dataset.ModalityIndex(mods[j]) })
	for _, m := range mods {
		fmt.Fprintf(out, "%s: %d classes\n", m, len(table[m]))
	}
	fmt.Fprintf(out, "wrote %s\n", *dst)
	return nil
}

func dataList(args []string, out io.Writer) error {
	fs := newFlagSet("data list", strings.TrimPrefix(dataListSynopsis, "list "))
	dir := fs.String("sources", defaultSourcesDir, "folder of <id>.source.json manifests")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	srcs, err := sources.Load(*dir)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDATASET\tMODALITY\tROLE\tKIND\tREPO@COMMIT\tLICENSE")
	for _, s := range srcs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s@%s\t%s\n", s.ID, clip(s.Dataset, 48), s.Modality, s.Role, s.Kind, s.Repo, s.ShortCommit(), clip(s.License, 48))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d sources in %s\n", len(srcs), *dir)
	return nil
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// defaultExclusions finds testdata/training_exclusions.json next to the
// sources folder (its ../../testdata, the repository layout) or in the
// working directory's testdata.
func defaultExclusions(sourcesDir string) string {
	for _, p := range []string{
		filepath.Join(sourcesDir, "..", "..", "testdata", "training_exclusions.json"),
		filepath.Join("testdata", "training_exclusions.json"),
	} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

func dataBuild(args []string, out, logw io.Writer) error {
	fs := newFlagSet("data build", strings.TrimPrefix(dataBuildSynopsis, "build "))
	dir := fs.String("sources", defaultSourcesDir, "folder of <id>.source.json manifests")
	repos := fs.String("repos", "", "folder of local git snapshots (owner+name/repo, owner/name(.git) or name(.git))")
	outDir := fs.String("out", "", "output folder: one SA-Med2D set per source, OUT/<id>/")
	exclFlag := fs.String("exclusions", "", "training_exclusions.json (default: testdata/training_exclusions.json next to the sources)")
	only := fs.String("only", "", "comma-separated source ids to build (default: all)")
	force := fs.Bool("force", false, "rebuild sources already built in --out")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *repos == "" || *outDir == "" {
		return usageErrorf("--repos and --out are required (see 'segsam data build -h')")
	}
	exclPath := *exclFlag
	if exclPath == "" {
		if exclPath = defaultExclusions(*dir); exclPath == "" {
			return usageErrorf("--exclusions is required: no testdata/training_exclusions.json next to %s", *dir)
		}
	}
	if st, err := os.Stat(*repos); err != nil || !st.IsDir() {
		return usageErrorf("--repos %s: not a folder", *repos)
	}
	srcs, err := sources.Load(*dir)
	if err != nil {
		return err
	}
	excl, err := sources.LoadExclusions(exclPath)
	if err != nil {
		return err
	}
	if *only != "" {
		byID := map[string]*sources.Source{}
		for _, s := range srcs {
			byID[s.ID] = s
		}
		var picked []*sources.Source
		seen := map[string]bool{}
		for _, id := range strings.Split(*only, ",") {
			id = strings.TrimSpace(id)
			if id == "" || seen[id] {
				continue
			}
			seen[id] = true
			s, ok := byID[id]
			if !ok {
				return usageErrorf("--only: no source %q in %s", id, *dir)
			}
			picked = append(picked, s)
		}
		srcs = picked
	}
	if len(srcs) == 0 {
		return fmt.Errorf("no sources to build in %s", *dir)
	}
	// Refuse before building anything.
	var refused []string
	for _, s := range srcs {
		if err := excl.Check(s); err != nil {
			refused = append(refused, err.Error())
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("%d sources refused by %s: %s", len(refused), exclPath, strings.Join(refused, "; "))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var opts []sources.BuildOption
	if *force {
		opts = append(opts, sources.Force())
	}
	fmt.Fprintf(logw, "building %d sources into %s (exclusions: %s)\n", len(srcs), *outDir, exclPath)
	var results []*sources.Result
	var failed []string
	for _, s := range srcs {
		res, err := sources.Build(ctx, s, *repos, excl, *outDir, logw, opts...)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return err
			}
			fmt.Fprintf(logw, "%s: FAILED: %v\n", s.ID, err)
			failed = append(failed, s.ID)
			continue
		}
		if !res.AlreadyBuilt {
			fmt.Fprintf(logw, "%s: %d images taken (%d written), %d skipped by exclusions, %d skipped missing mask, %d unreadable, %d left without masks, %d masks, %d classes, %.1f s\n",
				s.ID, res.Taken, res.Images, res.Excluded, res.MissingMask, res.Unreadable, res.Empty, res.Masks, len(res.Classes), res.Seconds)
		}
		results = append(results, res)
	}
	printSummary(out, results)
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d sources failed: %s", len(failed), len(srcs), strings.Join(failed, ", "))
	}
	return nil
}

func printSummary(out io.Writer, results []*sources.Result) {
	if len(results) == 0 {
		return
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SOURCE\tMODALITY\tROLE\tTAKEN\tIMAGES\tEXCLUDED\tNO MASK\tMASKS\tCLASSES\tSECONDS\t")
	type agg struct{ sources, taken, images, excluded, noMask, masks int }
	byMod := map[string]*agg{}
	classesByMod := map[string]map[string]bool{}
	for _, r := range results {
		if r.AlreadyBuilt {
			fmt.Fprintf(tw, "%s\t%s\t%s\talready built\t\t\t\t\t\t\t\n", r.ID, r.Modality, r.Role)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t\n", r.ID, r.Modality, r.Role, r.Taken, r.Images, r.Excluded, r.MissingMask, r.Masks, len(r.Classes), r.Seconds)
		a := byMod[r.Modality]
		if a == nil {
			a = &agg{}
			byMod[r.Modality] = a
			classesByMod[r.Modality] = map[string]bool{}
		}
		a.sources++
		a.taken += r.Taken
		a.images += r.Images
		a.excluded += r.Excluded
		a.noMask += r.MissingMask
		a.masks += r.Masks
		for c := range r.Classes {
			classesByMod[r.Modality][c] = true
		}
	}
	tw.Flush()
	if len(byMod) == 0 {
		return
	}
	mods := make([]string, 0, len(byMod))
	for m := range byMod {
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return dataset.ModalityIndex(mods[i]) < dataset.ModalityIndex(mods[j]) })
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MODALITY\tSOURCES\tTAKEN\tIMAGES\tEXCLUDED\tNO MASK\tMASKS\tCLASSES\t")
	var tot agg
	all := map[string]bool{}
	for _, m := range mods {
		a := byMod[m]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", m, a.sources, a.taken, a.images, a.excluded, a.noMask, a.masks, len(classesByMod[m]))
		tot.sources += a.sources
		tot.taken += a.taken
		tot.images += a.images
		tot.excluded += a.excluded
		tot.noMask += a.noMask
		tot.masks += a.masks
		for c := range classesByMod[m] {
			all[c] = true
		}
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", tot.sources, tot.taken, tot.images, tot.excluded, tot.noMask, tot.masks, len(all))
	tw.Flush()
}

// dataAssemble joins built sources (by their manifests' roles) and split
// sets into OUT/train and OUT/val, de-duplicated against validation
// (dataset.Assemble), linking the files as they are.
func dataAssemble(args []string, out, logw io.Writer) error {
	fs := newFlagSet("data assemble", strings.TrimPrefix(dataAssembleSynopsis, "assemble "))
	dir := fs.String("sources", defaultSourcesDir, "folder of <id>.source.json manifests (their role says train or val)")
	built := fs.String("built", "", "folder that 'segsam data build --out' wrote (one set per source id)")
	split := fs.String("split", "", "further sets (comma-separated) split by their own groups into train and val, e.g. a set you had before")
	valFraction := fs.Float64("val-fraction", defaultValFraction, "share of each --split set's groups held out for validation")
	splitSeed := fs.Int64("split-seed", defaultSplitSeed, "seed of the group split")
	force := fs.Bool("force", false, "replace OUT/train and OUT/val")
	outDir := fs.String("out", "", "writes OUT/train, OUT/val and OUT/assembly.json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *built == "" || *outDir == "" {
		return usageErrorf("--built and --out are required")
	}
	srcs, err := sources.Load(*dir)
	if err != nil {
		return err
	}
	type setInfo struct {
		Dir    string `json:"dir"`
		Role   string `json:"role"`
		Images int    `json:"images"`
	}
	var report struct {
		Sets         []setInfo      `json:"sets"`
		DroppedTrain map[string]int `json:"dropped_train"`
		DroppedVal   map[string]int `json:"dropped_val"`
		TrainImages  int            `json:"train_images"`
		ValImages    int            `json:"val_images"`
		ValFraction  float64        `json:"val_fraction"`
		SplitSeed    int64          `json:"split_seed"`
	}
	var trainSets, valSets, splitSets []*dataset.Dataset
	for _, src := range srcs {
		p := filepath.Join(*built, src.ID)
		if _, err := os.Stat(filepath.Join(p, dataset.Image2LabelFile)); err != nil {
			fmt.Fprintf(logw, "segsam data assemble: %s is not built (%s missing): left out\n", src.ID, p)
			continue
		}
		ds, err := dataset.Open(p)
		if err != nil {
			return err
		}
		if src.Role == sources.RoleVal {
			valSets = append(valSets, ds)
		} else {
			trainSets = append(trainSets, ds)
		}
		report.Sets = append(report.Sets, setInfo{p, src.Role, len(ds.Images)})
	}
	if *split != "" {
		if splitSets, err = dataset.OpenEach(*split); err != nil {
			return err
		}
		for _, ds := range splitSets {
			report.Sets = append(report.Sets, setInfo{ds.Dir, "split", len(ds.Images)})
		}
	}
	if len(trainSets)+len(splitSets) == 0 {
		return fmt.Errorf("nothing to assemble: no built source under %s and no --split set", *built)
	}
	a, err := dataset.Assemble(trainSets, valSets, splitSets, *valFraction, *splitSeed)
	if err != nil {
		return err
	}
	for _, part := range []struct {
		name string
		ds   *dataset.Dataset
	}{{"train", a.Train}, {"val", a.Val}} {
		if len(part.ds.Images) == 0 {
			continue
		}
		var opts []dataset.Option
		if *force {
			opts = append(opts, dataset.Overwrite())
		}
		w, err := dataset.Create(filepath.Join(*outDir, part.name), opts...)
		if err != nil {
			return err
		}
		for _, e := range part.ds.Images {
			if err := w.AddEntry(e); err != nil {
				return err
			}
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
	report.DroppedTrain, report.DroppedVal = a.DroppedTrain, a.DroppedVal
	report.TrainImages, report.ValImages = len(a.Train.Images), len(a.Val.Images)
	report.ValFraction, report.SplitSeed = *valFraction, *splitSeed
	data, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*outDir, "assembly.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	for _, line := range a.Summary() {
		fmt.Fprintln(logw, line)
	}
	fmt.Fprintf(out, "wrote %s/train (%d images, %d classes) and %s/val (%d images, %d classes)\n", *outDir, len(a.Train.Images), len(a.Train.Classes()), *outDir, len(a.Val.Images), len(a.Val.Classes()))
	return nil
}
