package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

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

const prepareSynopsis = "--volume FILE|DIR [--labels FILE|DIR] [--label-names labels.json] [--modality CT|MR|PET|...] [--window auto|soft|lung|bone|brain|L,W|pLO,HI] [--axes axial,coronal,sagittal] --out DIR"

func runPrepare(args []string) error {
	return prepareMain(args, os.Stderr)
}

// prepareMain runs 'segsam prepare', writing progress and the summary to
// logw.
func prepareMain(args []string, logw io.Writer) error {
	fs := newFlagSet("prepare", prepareSynopsis)
	volume := fs.String("volume", "", "a NIfTI volume (.nii, .nii.gz), a DICOM series folder, or a folder of volumes")
	labels := fs.String("labels", "", "the volume's label map, or a folder of label maps named like the volumes (optional)")
	labelNames := fs.String("label-names", "", `class names: {"1": "liver", ...}, a list, or a labels.json with "volumes" and "labels"`)
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
	var opts []dataset.Option
	if *overwrite {
		opts = append(opts, dataset.Overwrite())
	}
	w, err := dataset.Create(*out, opts...)
	if err != nil {
		return err
	}
	po := prepare.Options{Axes: axList, Window: &win, KeepEmpty: *keepEmpty, MinMaskFraction: *minMask, Warn: logw}
	if *minMask == 0 {
		po.MinMaskFraction = 1e-12 // keep every mask
	}
	if !*quiet {
		po.Progress = logw
	}
	st, err := prepare.Run(w, jobs, po)
	if err != nil {
		return err
	}
	if err := w.Close(); err != nil {
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
