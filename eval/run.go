// Package eval measures promptable segmentation models on SA-Med2D-format
// sets the way the SEG-SAM paper reports them (§4.1, Tables 1-2): each
// annotated object is prompted on its own with a box or one point, binary
// DSC is averaged per modality, semantic mDSC is averaged per class within
// each modality, and Avg. is the mean over modalities. It also reports class
// accuracy, confusion matrices, per-class DSC, predicted-IoU calibration,
// and trivial baselines (Baseline) on the same prompts.
//
// Models plug in through the Segmenter interface.
package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/internal/progress"
)

// DefaultGalleryN is the default number of worst cases kept per table row.
const DefaultGalleryN = 8

// Options configures Run.
type Options struct {
	// Prompt is "box", "point" or "both". With PromptsFile it may be empty,
	// meaning every kind in the file.
	Prompt string
	// Seed drives the point prompts (boxes are deterministic).
	Seed int64
	// PromptsFile, when set, replays the prompts of an earlier run's
	// prompts.json instead of simulating them; it must match the data.
	PromptsFile string
	// Progress receives a progress bar with ETA; nil for none.
	Progress io.Writer
	// GalleryN is the number of worst cases (lowest DSC) kept per row for
	// the gallery: 0 means DefaultGalleryN, negative none.
	GalleryN int
	// Clicks adds interactive rows: each prompt followed by this many
	// corrective clicks (clicks.go), for Segmenters that take them.
	Clicks int
	// Auto adds the rows of prompt-free automatic segmentation ("auto",
	// auto.go) for Segmenters that implement AutoSegmenter. With Auto,
	// Prompt may be empty (automatic rows only).
	Auto bool
}

// MethodInfo describes one evaluated Segmenter.
type MethodInfo struct {
	Name string `json:"name"`
	// Classes is the number of classes the model predicts (0: binary only).
	Classes int `json:"classes"`
	// PredictsIoU tells whether IoU predictions were evaluated.
	PredictsIoU bool `json:"predicts_iou"`
}

// Report is the outcome of Run; Write saves it.
type Report struct {
	// Data is the dataset directory.
	Data string
	// Images and Objects count the evaluated images and objects.
	Images, Objects int
	// Seed and Kinds are the prompt settings; PromptsReplayed names the
	// replayed prompts file, if any.
	Seed            int64
	Kinds           []string
	PromptsReplayed string
	// Auto tells whether automatic-segmentation rows were evaluated.
	Auto bool
	// Methods lists the Segmenters in the order given.
	Methods []MethodInfo
	// Results holds one entry per (method, object, prompt kind).
	Results []ObjectResult
	// Rows aggregates Results as the paper's tables do.
	Rows []Row
	// Prompts holds every prompt used (written as prompts.json).
	Prompts *PromptFile
	// Warnings lists objects skipped and dataset warnings.
	Warnings []string
	// Elapsed is the wall time of Run.
	Elapsed time.Duration

	worst   map[rowKey][]worstCase
	entries map[string]*dataset.ImageEntry
}

type rowKey struct{ method, prompt string }

// worstCase keeps what the gallery needs to draw one object.
type worstCase struct {
	result int // index into Report.Results
	pred   []bool
	gt     []bool
	prompt Prompt
}

// objectRef names one object of the set.
type objectRef struct{ image, mask string }

// Run evaluates every Segmenter on every object of ds with the requested
// prompts. Each image is loaded once and passed to each Segmenter once with
// the prompts of all its objects and kinds.
func Run(ctx context.Context, ds *dataset.Dataset, segs []Segmenter, opts Options) (*Report, error) {
	start := time.Now()
	if ds == nil || len(ds.Images) == 0 {
		return nil, errors.New("evaluate: the dataset has no images")
	}
	if len(segs) == 0 {
		return nil, errors.New("evaluate: no method to evaluate")
	}
	rep := &Report{
		Data: ds.Dir, Seed: opts.Seed,
		worst: map[rowKey][]worstCase{}, entries: map[string]*dataset.ImageEntry{},
	}
	rep.Warnings = append(rep.Warnings, ds.Warnings...)
	seen := map[string]bool{}
	semantic := make([]bool, len(segs))
	iouPred := make([]bool, len(segs))
	for i, s := range segs {
		if s == nil || s.Name() == "" {
			return nil, fmt.Errorf("evaluate: method %d has no name", i)
		}
		if seen[s.Name()] {
			return nil, fmt.Errorf("evaluate: two methods named %q", s.Name())
		}
		seen[s.Name()] = true
		semantic[i] = len(s.Classes()) > 0
		iouPred[i] = predictsIoU(s)
		rep.Methods = append(rep.Methods, MethodInfo{Name: s.Name(), Classes: len(s.Classes()), PredictsIoU: iouPred[i]})
	}
	galleryN := opts.GalleryN
	if galleryN == 0 {
		galleryN = DefaultGalleryN
	}

	var objects []objectRef
	var images []*dataset.ImageEntry
	for _, e := range ds.Images {
		if len(e.Masks) == 0 {
			continue
		}
		images = append(images, e)
		rep.entries[e.Path] = e
		for _, m := range e.Masks {
			objects = append(objects, objectRef{e.Path, m.Path})
		}
	}
	if len(objects) == 0 {
		return nil, errors.New("evaluate: the dataset has no object masks")
	}

	var rp *replay
	switch {
	case opts.PromptsFile != "":
		pf, err := ReadPromptFile(opts.PromptsFile)
		if err != nil {
			return nil, err
		}
		rep.Kinds = pf.Kinds
		if opts.Prompt != "" {
			if rep.Kinds, err = ParseKinds(opts.Prompt); err != nil {
				return nil, err
			}
		}
		if rp, err = newReplay(opts.PromptsFile, pf, objects, rep.Kinds); err != nil {
			return nil, err
		}
		rep.PromptsReplayed = opts.PromptsFile
	case opts.Auto && opts.Prompt == "":
		// Automatic rows only.
	default:
		var err error
		if rep.Kinds, err = ParseKinds(opts.Prompt); err != nil {
			return nil, err
		}
	}
	rep.Auto = opts.Auto
	rep.Prompts = &PromptFile{Version: PromptFileVersion, Seed: opts.Seed, Kinds: rep.Kinds}

	var bar *progress.Bar // nil draws nothing
	if opts.Progress != nil {
		bar = progress.New(opts.Progress, len(images), "eval")
		defer bar.Done()
	}
	for _, e := range images {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := e.Width * e.Height
		type job struct {
			mask   int
			gt     []bool
			area   int
			prompt Prompt
		}
		var jobs []job
		var objs []autoObject
		for mi, m := range e.Masks {
			gt, err := e.LoadMaskBits(mi)
			if err != nil {
				return nil, fmt.Errorf("evaluate: %w", err)
			}
			area := count(gt)
			if area == 0 {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("mask %s is empty: object skipped", m.Path))
				continue
			}
			objs = append(objs, autoObject{mask: mi, gt: gt, area: area})
			for _, kind := range rep.Kinds {
				var rec PromptRecord
				if rp != nil {
					if rec, err = rp.lookup(objectRef{e.Path, m.Path}, kind, e.Width, e.Height, area); err != nil {
						return nil, err
					}
				} else {
					p, _ := SimulatePrompt(kind, gt, e.Width, opts.Seed, e.Path, m.Path)
					rec = newPromptRecord(e.Path, m.Path, m.Class, p, e.Width, e.Height, area)
				}
				rec.Class = m.Class
				rep.Prompts.Prompts = append(rep.Prompts.Prompts, rec)
				jobs = append(jobs, job{mask: mi, gt: gt, area: area, prompt: rec.Prompt()})
			}
		}
		if len(objs) == 0 {
			bar.Add(1)
			continue
		}
		rep.Images++
		rep.Objects += len(objs)
		prompts := make([]Prompt, len(jobs))
		for i, j := range jobs {
			prompts[i] = j.prompt
			prompts[i].Modality = e.Modality
		}
		for si, s := range segs {
			if a, ok := s.(AutoSegmenter); ok && opts.Auto {
				if err := rep.recordAuto(ctx, a, s.Name(), semantic[si], galleryN, e, objs); err != nil {
					return nil, err
				}
			}
			if len(jobs) == 0 {
				continue
			}
			segment := func(prompts []Prompt) ([]Prediction, error) {
				preds, err := s.Segment(ctx, e.ImagePath(), e.Height, e.Width, prompts)
				if err != nil {
					return nil, fmt.Errorf("evaluate %s on %s: %w", s.Name(), e.Path, err)
				}
				if len(preds) != len(prompts) {
					return nil, fmt.Errorf("evaluate %s on %s: %d predictions for %d prompts", s.Name(), e.Path, len(preds), len(prompts))
				}
				for i, p := range preds {
					if len(p.Mask) != n || (p.SemanticMask != nil && len(p.SemanticMask) != n) {
						return nil, fmt.Errorf("evaluate %s on %s: prediction %d has a mask of %d (semantic %d) pixels, want %d×%d = %d",
							s.Name(), e.Path, i, len(p.Mask), len(p.SemanticMask), e.Width, e.Height, n)
					}
				}
				return preds, nil
			}
			preds, err := segment(prompts)
			if err != nil {
				return nil, err
			}
			rep.record(s.Name(), semantic[si], iouPred[si], galleryN, e, preds, func(i int) (int, []bool, int, Prompt, string) {
				j := jobs[i]
				return j.mask, j.gt, j.area, j.prompt, j.prompt.Kind
			})
			if opts.Clicks <= 0 || !acceptsClicks(s) {
				continue
			}
			// Interactive rounds (clicks.go).
			round := append([]Prompt(nil), prompts...)
			for r := 0; r < opts.Clicks; r++ {
				for i := range round {
					c, ok := NextClick(preds[i].Mask, jobs[i].gt, e.Width)
					if !ok {
						continue // perfect: no click needed, keep the previous mask input
					}
					round[i].Clicks = append(append([]Click(nil), round[i].Clicks...), c)
					round[i].MaskInput = preds[i].LowRes
				}
				if preds, err = segment(round); err != nil {
					return nil, err
				}
			}
			rep.record(s.Name(), semantic[si], iouPred[si], galleryN, e, preds, func(i int) (int, []bool, int, Prompt, string) {
				j := jobs[i]
				return j.mask, j.gt, j.area, round[i], ClickLabel(j.prompt.Kind, opts.Clicks)
			})
		}
		bar.Add(1)
	}
	if len(rep.Results) == 0 {
		return nil, errors.New("evaluate: every object mask is empty")
	}
	rep.Rows = Summarize(rep.Results)
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// record adds one result per prediction; job(i) gives prediction i's mask
// index, ground truth, its area, prompt and row label.
func (rep *Report) record(method string, semantic, iouPred bool, galleryN int, e *dataset.ImageEntry, preds []Prediction,
	job func(i int) (mask int, gt []bool, area int, prompt Prompt, label string)) {
	for i, p := range preds {
		mi, gt, area, prompt, label := job(i)
		m := e.Masks[mi]
		r := ObjectResult{
			Method: method, Image: e.Path, Mask: m.Path, Class: m.Class, Modality: e.Modality,
			Prompt: label, DSC: Dice(p.Mask, gt), IoU: IoU(p.Mask, gt),
			GTArea: area, PredArea: count(p.Mask),
		}
		r.Box, r.Point = prompt.coords()
		if semantic {
			sm := p.SemanticMask
			if sm == nil {
				sm = p.Mask
			}
			sd := SemanticDice(p.Class, sm, m.Class, gt)
			r.SemanticDSC = &sd
			r.PredClass, r.Confidence = p.Class, p.Confidence
		}
		if iouPred {
			v := p.IoUPred
			r.IoUPred = &v
		}
		rep.Results = append(rep.Results, r)
		if galleryN > 0 {
			rep.keepWorst(rowKey{method, label}, galleryN, worstCase{
				result: len(rep.Results) - 1, pred: p.Mask, gt: gt, prompt: prompt,
			})
		}
	}
}

// keepWorst keeps the n results of a row with the lowest DSC (earliest first
// among equals).
func (rep *Report) keepWorst(k rowKey, n int, c worstCase) {
	list := rep.worst[k]
	dsc := rep.Results[c.result].DSC
	if len(list) == n && dsc >= rep.Results[list[n-1].result].DSC {
		return
	}
	i := sort.Search(len(list), func(i int) bool { return rep.Results[list[i].result].DSC > dsc })
	list = append(list, worstCase{})
	copy(list[i+1:], list[i:])
	list[i] = c
	if len(list) > n {
		list = list[:n]
	}
	rep.worst[k] = list
}
