package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/medimg/prepare"
)

func init() {
	register(command{
		name:    "prepare",
		summary: "slice CT/MR/PET volumes (NIfTI, DICOM) into a 2-D training set",
		run:     runPrepare,
	})
}

const prepareSynopsis = `--volume FILE|DIR [--labels FILE|DIR] [--label-names labels.json] [--allow-unnamed] [--modality CT|MR|PET|...] [--window auto|soft|lung|bone|brain|L,W|pLO,HI] [--axes axial,coronal,sagittal] --out DIR

Every label value in a label map needs a class name from --label-names:
a plain map {"1": "spleen", "2": "kidney_right"}, a list ["background",
"spleen", ...], or a labels.json {"labels": {"<label file name>": {"1":
"spleen"}}, "volumes": {...}} whose entry is chosen by the label file's
name. Unnamed values are an error unless --allow-unnamed names them
label_<value>. The set is written to a temporary folder next to --out and
moved into place at the end: a failed run leaves nothing behind.`

func runPrepare(args []string) error {
	return prepareMain(args, stderr)
}

// prepareMain runs 'segsam prepare', writing progress and the summary to
// logw.
func prepareMain(args []string, logw io.Writer) error {
	fs := newFlagSet("prepare", prepareSynopsis)
	volume := fs.String("volume", "", "a NIfTI volume (.nii, .nii.gz), a DICOM series folder, or a folder of volumes")
	labels := fs.String("labels", "", "the volume's label map, or a folder of label maps named like the volumes (optional)")
	labelNames := fs.String("label-names", "", `class names: {"1": "liver", ...}, a list, or a labels.json with "labels" per label file (and "volumes")`)
	allowUnnamed := fs.Bool("allow-unnamed", false, "name label values without a class name label_<value> (with a warning) instead of failing")
	modality := fs.String("modality", "", "modality of the volumes: CT, MR, PET, ... (default: from labels.json or the DICOM header)")
	window := fs.String("window", "auto", "intensity window: auto (0.5-99.5 percentiles), soft, lung, bone, brain, LEVEL,WIDTH or pLOW,HIGH")
	axes := fs.String("axes", "axial,coronal,sagittal", "axes to slice along")
	out := fs.String("out", "", "output folder (SA-Med2D layout)")
	keepEmpty := fs.Bool("keep-empty", false, "keep slices without masks (or constant slices when there are no labels)")
	minMask := fs.Float64("min-mask", prepare.DefaultMinMaskFraction, "drop masks smaller than this fraction of the slice")
	overwrite := fs.Bool("overwrite", false, "replace the set in a non-empty --out folder")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *volume == "" || *out == "" {
		return usageErrorf("--volume and --out are required (see 'segsam prepare -h')")
	}
	win, err := medimg.ParseWindow(*window)
	if err != nil {
		return usageErrorf("--window: %v", err)
	}
	axList, err := medimg.ParseAxes(*axes)
	if err != nil {
		return usageErrorf("--axes: %v", err)
	}
	if *modality != "" {
		if _, ok := dataset.NormalizeModality(*modality); !ok {
			return usageErrorf("--modality %q: want one of %s", *modality, strings.Join(dataset.Modalities, ", "))
		}
	}
	if !(*minMask >= 0 && *minMask < 1) {
		return usageErrorf("--min-mask %v: want a fraction in [0, 1)", *minMask)
	}
	var names *prepare.LabelNames
	if *labelNames != "" {
		if names, err = prepare.ReadLabelNames(*labelNames); err != nil {
			return err
		}
	}
	jobs, err := prepare.Plan(*volume, *labels, names, *modality)
	if err != nil {
		return err
	}
	if err := checkOutDir(*out, *overwrite); err != nil {
		return err
	}
	tmp, err := newStagingDir(*out)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // gone after a successful rename; removes a failed run's files
	stop := removeOnSignal(tmp)
	defer stop()
	w, err := dataset.Create(tmp)
	if err != nil {
		return err
	}
	po := prepare.Options{Axes: axList, Window: &win, KeepEmpty: *keepEmpty, MinMaskFraction: *minMask, Warn: logw, AllowUnnamed: *allowUnnamed}
	if *minMask == 0 {
		po.MinMaskFraction = 1e-12 // keep every mask
	}
	if !*quiet {
		po.Progress = logw
	}
	st, err := prepare.Run(w, jobs, po)
	if errors.Is(err, prepare.ErrUnnamed) {
		return fmt.Errorf("%w; give every value a name in --label-names, or pass --allow-unnamed to call them label_<value>", err)
	}
	if err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := publishSet(tmp, *out); err != nil {
		return err
	}
	classes := make([]string, 0, len(st.Classes))
	for c := range st.Classes {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	fmt.Fprintf(logw, "wrote %d images and %d masks of %d classes from %d volumes to %s (skipped %d empty slices, dropped %d masks under %.3g%% of the slice)\n",
		st.Images, st.Masks, len(classes), st.Volumes, *out, st.EmptySkipped, st.SmallDropped, 100*po.MinMaskFraction)
	return nil
}

// setEntries are the entries of an SA-Med2D set that prepare writes.
var setEntries = []string{"images", "masks", dataset.Image2LabelFile, dataset.MetaFile}

// checkOutDir refuses an --out that is a file, or a non-empty folder
// without --overwrite, before any work is done.
func checkOutDir(out string, overwrite bool) error {
	st, err := os.Stat(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !st.IsDir():
		return fmt.Errorf("--out %s is a file, not a folder", out)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	if len(entries) > 0 && !overwrite {
		return fmt.Errorf("--out %s is not empty (%d entries): choose an empty folder, or --overwrite to replace the set in it", out, len(entries))
	}
	return nil
}

// newStagingDir creates the temporary folder a set is written to: a hidden
// sibling of out, so that the final rename stays on one file system.
func newStagingDir(out string) (string, error) {
	out = filepath.Clean(out)
	parent := filepath.Dir(out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".partial-")
	if err != nil {
		return "", err
	}
	return tmp, os.Chmod(tmp, 0o755)
}

// publishSet moves the finished set from tmp to out: a rename of the
// folder when out is missing or empty; otherwise (--overwrite) the set's
// entries replace those in out and other files there are left alone.
func publishSet(tmp, out string) error {
	if entries, err := os.ReadDir(out); errors.Is(err, os.ErrNotExist) || err == nil && len(entries) == 0 {
		if err == nil {
			if err := os.Remove(out); err != nil {
				return err
			}
		}
		return os.Rename(tmp, out)
	}
	for _, name := range setEntries {
		dst := filepath.Join(out, name)
		if err := os.RemoveAll(dst); err != nil {
			return fmt.Errorf("replace %s: %w", dst, err)
		}
		if err := os.Rename(filepath.Join(tmp, name), dst); err != nil {
			return fmt.Errorf("replace %s: %w", dst, err)
		}
	}
	return os.Remove(tmp)
}

// removeOnSignal removes dir and exits when the process is interrupted,
// so that an interrupted prepare leaves no partial set; the returned
// function stops watching.
func removeOnSignal(dir string) (stop func()) {
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sig:
			os.RemoveAll(dir)
			fmt.Fprintln(os.Stderr, "segsam prepare: interrupted; nothing written")
			os.Exit(130)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}
