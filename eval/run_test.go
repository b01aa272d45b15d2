package eval

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/segsam/segsam/dataset"
)

const subsetDir = "../testdata/dataset/demo_subset"

func openSubset(t *testing.T) *dataset.Dataset {
	t.Helper()
	ds, err := dataset.Open(subsetDir)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// ruleSegmenter is a semantic test model: it draws the ellipse baseline,
// guesses the class from the image name, gives an empty semantic mask for
// HC18 images (so a right class can still score 0) and none elsewhere (the
// binary mask stands in), and predicts IoU 0.5.
type ruleSegmenter struct{ Baseline }

func (r *ruleSegmenter) Name() string      { return "rule" }
func (r *ruleSegmenter) Classes() []string { return []string{"kidney", "fetal_head", "liver"} }
func (r *ruleSegmenter) PredictsIoU() bool { return true }

func (r *ruleSegmenter) Segment(ctx context.Context, path string, h, w int, prompts []Prompt) ([]Prediction, error) {
	preds, err := r.Baseline.Segment(ctx, path, h, w, prompts)
	if err != nil {
		return nil, err
	}
	for i := range preds {
		p := &preds[i]
		p.IoUPred, p.Confidence = 0.5, 0.9
		switch base := filepath.Base(path); {
		case strings.HasPrefix(base, "kits19"):
			p.Class = "kidney"
		case strings.HasPrefix(base, "hc18"):
			p.Class = "fetal_head"
			p.SemanticMask = make([]bool, h*w)
		default:
			p.Class = "liver"
		}
	}
	return preds, nil
}

func readCSV(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{} // "method/prompt/metric" -> column -> cell
	for _, rec := range recs[1:] {
		row := map[string]string{}
		for i, col := range recs[0][3:] {
			row[col] = rec[3+i]
		}
		out[rec[0]+"/"+rec[1]+"/"+rec[2]] = row
	}
	return out
}

// TestRunEndToEnd evaluates the baselines and a rule model on the test
// subset, writes the report, and recomputes its tables from results.json.
func TestRunEndToEnd(t *testing.T) {
	ds := openSubset(t)
	segs := []Segmenter{&Baseline{Shape: ShapeBox}, &Baseline{Shape: ShapeEllipse}, &ruleSegmenter{Baseline{Shape: ShapeEllipse}}}
	var progress bytes.Buffer
	rep, err := Run(context.Background(), ds, segs, Options{Prompt: "both", Seed: 3, Progress: &progress, GalleryN: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Not a terminal and under 5 s: the final line only, not one per image.
	if !strings.Contains(progress.String(), "18/18") || strings.Count(progress.String(), "\n") > 2 {
		t.Errorf("progress output %q", progress.String())
	}
	out := t.TempDir()
	if err := rep.Write(out); err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(filepath.Join(out, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Images != 18 || res.Objects != 34 || len(res.Results) != 34*2*3 {
		t.Fatalf("results.json: %d images, %d objects, %d results", res.Images, res.Objects, len(res.Results))
	}

	// Recompute every table cell from the per-object results.
	type key struct{ method, prompt string }
	type acc struct {
		n   int
		sum float64
	}
	dsc := map[key]map[string]*acc{}
	sem := map[key]map[string]map[string]*acc{} // modality -> class
	for _, r := range res.Results {
		k := key{r.Method, r.Prompt}
		if dsc[k] == nil {
			dsc[k] = map[string]*acc{}
			sem[k] = map[string]map[string]*acc{}
		}
		if dsc[k][r.Modality] == nil {
			dsc[k][r.Modality] = &acc{}
			sem[k][r.Modality] = map[string]*acc{}
		}
		dsc[k][r.Modality].n++
		dsc[k][r.Modality].sum += r.DSC
		if r.SemanticDSC != nil {
			if sem[k][r.Modality][r.Class] == nil {
				sem[k][r.Modality][r.Class] = &acc{}
			}
			sem[k][r.Modality][r.Class].n++
			sem[k][r.Modality][r.Class].sum += *r.SemanticDSC
		}
		// The rule model's semantic DSC follows its class rule.
		if r.Method == "rule" {
			want := 0.0
			switch {
			case strings.Contains(r.Image, "kits19"):
				want = r.DSC
			case strings.Contains(r.Image, "amos") && r.Class == "liver":
				want = r.DSC
			}
			if r.SemanticDSC == nil || math.Abs(*r.SemanticDSC-want) > 1e-12 {
				t.Errorf("%s %s: semantic DSC %v, want %v", r.Mask, r.Prompt, r.SemanticDSC, want)
			}
			if r.IoUPred == nil || *r.IoUPred != 0.5 {
				t.Errorf("%s: iou_pred %v", r.Mask, r.IoUPred)
			}
		} else if r.SemanticDSC != nil || r.IoUPred != nil {
			t.Errorf("baseline result with semantic DSC or IoU prediction: %+v", r)
		}
	}
	table := readCSV(t, filepath.Join(out, SummaryCSVFile))
	md, err := os.ReadFile(filepath.Join(out, SummaryMDFile))
	if err != nil {
		t.Fatal(err)
	}
	cell := func(k key, metric, col string) float64 {
		s := table[k.method+"/"+k.prompt+"/"+metric][col]
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("summary.csv %v %s %s: %q", k, metric, col, s)
		}
		return v / 100
	}
	for k, mods := range dsc {
		var avg, mavg float64
		for m, a := range mods {
			mean := a.sum / float64(a.n)
			avg += mean
			if got := cell(k, "DSC", m); math.Abs(got-mean) > 1e-6 {
				t.Errorf("%v DSC %s: table %v, per-object mean %v", k, m, got, mean)
			}
			if k.method == "rule" {
				var cs float64
				for _, c := range sem[k][m] {
					cs += c.sum / float64(c.n)
				}
				cs /= float64(len(sem[k][m]))
				mavg += cs
				if got := cell(k, "mDSC", m); math.Abs(got-cs) > 1e-6 {
					t.Errorf("%v mDSC %s: table %v, recomputed %v", k, m, got, cs)
				}
			}
		}
		if len(mods) != 8 {
			t.Errorf("%v: %d modalities, want 8", k, len(mods))
		}
		avg /= float64(len(mods))
		if got := cell(k, "DSC", "Avg"); math.Abs(got-avg) > 1e-6 {
			t.Errorf("%v DSC Avg: table %v, recomputed %v", k, got, avg)
		}
		// summary.md shows the same Avg. with two decimals.
		line := fmt.Sprintf("| %s | %s |", k.method, promptTitle(k.prompt))
		if !strings.Contains(string(md), line) || !strings.Contains(lineOf(string(md), line), fmt.Sprintf("| %.2f |", 100*avg)) {
			t.Errorf("summary.md has no row %q ending in %.2f", line, 100*avg)
		}
		if k.method == "rule" {
			mavg /= float64(len(mods))
			if got := cell(k, "mDSC", "Avg"); math.Abs(got-mavg) > 1e-6 {
				t.Errorf("%v mDSC Avg: table %v, recomputed %v", k, got, mavg)
			}
		} else if _, ok := table[k.method+"/"+k.prompt+"/mDSC"]; ok {
			t.Errorf("%v: binary-only method has an mDSC row", k)
		}
	}
	for _, want := range []string{"Table 1", "Table 2", "Class accuracy", "Predicted-IoU calibration", "Per-class DSC", "Worst cases", "kidney"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("summary.md lacks %q", want)
		}
	}

	// Charts for the eight modalities and the average; gallery tiles.
	for _, m := range append(dataset.Modalities, "avg") {
		checkPNG(t, filepath.Join(out, ChartsDir, fileSafe(m)+".png"))
	}
	for _, sub := range []string{"baseline-box_box", "baseline-ellipse_point", "rule_box"} {
		files, _ := filepath.Glob(filepath.Join(out, GalleryDir, sub, "*.png"))
		if len(files) != 3 {
			t.Errorf("gallery %s: %d files, want 3", sub, len(files))
		}
		for _, f := range files {
			checkPNG(t, f)
		}
	}
	// The gallery holds the lowest DSC of its row.
	box := rep.worst[rowKey{"baseline-box", KindBox}]
	for _, r := range res.Results {
		if r.Method == "baseline-box" && r.Prompt == KindBox && r.DSC < rep.Results[box[len(box)-1].result].DSC {
			found := false
			for _, c := range box {
				found = found || rep.Results[c.result].Mask == r.Mask
			}
			if !found {
				t.Errorf("object %s (DSC %v) is not in the worst cases", r.Mask, r.DSC)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(out, "confusion_rule_box.csv")); err != nil {
		t.Error(err)
	}
}

func lineOf(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() < 50 || img.Bounds().Dy() < 50 {
		t.Errorf("%s: %v", path, err)
	}
}

// TestPromptsDeterministicAndReplayed checks that prompts depend only on the
// seed and the object, and that a replayed prompts.json reproduces a run.
func TestPromptsDeterministicAndReplayed(t *testing.T) {
	ctx := context.Background()
	ds := openSubset(t)
	segs := []Segmenter{&Baseline{Shape: ShapeEllipse}}
	first, err := Run(ctx, ds, segs, Options{Prompt: "both", Seed: 11, GalleryN: -1})
	if err != nil {
		t.Fatal(err)
	}
	byObject := func(rep *Report) map[promptKey]PromptRecord {
		m := map[promptKey]PromptRecord{}
		for _, r := range rep.Prompts.Prompts {
			m[promptKey{r.Image, r.Mask, r.Kind}] = r
		}
		return m
	}
	want := byObject(first)
	if len(want) != 68 {
		t.Fatalf("%d prompts, want 68", len(want))
	}

	// Same seed on a subset in reverse order: the shared objects get the
	// same prompts.
	half := ds.Subset(func(e *dataset.ImageEntry) bool { return e.Modality != dataset.CT })
	for i, j := 0, len(half.Images)-1; i < j; i, j = i+1, j-1 {
		half.Images[i], half.Images[j] = half.Images[j], half.Images[i]
	}
	part, err := Run(ctx, half, segs, Options{Prompt: "point", Seed: 11, GalleryN: -1})
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range byObject(part) {
		if w := want[k]; *w.Point != *r.Point {
			t.Errorf("%s: point %v on the subset, %v on the full set", k.mask, *r.Point, *w.Point)
		}
	}
	// Another seed moves some points but no box.
	other, err := Run(ctx, ds, segs, Options{Prompt: "both", Seed: 12, GalleryN: -1})
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for k, r := range byObject(other) {
		w := want[k]
		switch k.kind {
		case KindBox:
			if *w.Box != *r.Box {
				t.Errorf("%s: box changed with the seed", k.mask)
			}
		case KindPoint:
			if *w.Point != *r.Point {
				moved++
			}
		}
	}
	if moved < 17 {
		t.Errorf("only %d of 34 points moved with another seed", moved)
	}

	// Replay with a different seed: identical prompts and results.
	dir := t.TempDir()
	if err := first.Write(dir); err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(dir, PromptsFile)
	again, err := Run(ctx, ds, segs, Options{Seed: 99, PromptsFile: pf, GalleryN: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Results) != len(first.Results) || again.PromptsReplayed != pf {
		t.Fatalf("replay: %d results, want %d", len(again.Results), len(first.Results))
	}
	for i := range first.Results {
		a, b := first.Results[i], again.Results[i]
		if a.Mask != b.Mask || a.Prompt != b.Prompt || a.DSC != b.DSC {
			t.Errorf("replay result %d: %+v vs %+v", i, b, a)
		}
	}
	if a, b := first.Rows[0].DSCAvg, again.Rows[0].DSCAvg; a != b {
		t.Errorf("replay DSC Avg %v, first %v", b, a)
	}

	// Replays that do not match the data are refused, naming the mismatch.
	edited := func(edit func(*PromptFile)) string {
		f, err := ReadPromptFile(pf)
		if err != nil {
			t.Fatal(err)
		}
		edit(f)
		p := filepath.Join(t.TempDir(), "prompts.json")
		if err := WritePromptFile(p, f); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mismatches := []struct {
		name    string
		ds      *dataset.Dataset
		prompts string
		kind    string
		wantErr string
	}{
		{"fewer images in the data", half, pf, "", "prompt(s) for objects not in the data"},
		{"object missing from the file", ds, edited(func(f *PromptFile) { f.Prompts = f.Prompts[2:] }), "", "missing from the file"},
		{"mask changed", ds, edited(func(f *PromptFile) { f.Prompts[0].Area++ }), "", "foreground pixels"},
		{"image size changed", ds, edited(func(f *PromptFile) { f.Prompts[0].Size[0]++ }), "", "the prompts were made on"},
		{"kind not in the file", ds, edited(func(f *PromptFile) {
			var boxes []PromptRecord
			for _, r := range f.Prompts {
				if r.Kind == KindBox {
					boxes = append(boxes, r)
				}
			}
			f.Prompts = boxes
		}), "point", "missing from the file"},
	}
	for _, tt := range mismatches {
		_, err := Run(ctx, tt.ds, segs, Options{Prompt: tt.kind, PromptsFile: tt.prompts, GalleryN: -1})
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "do not match") {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.wantErr)
		}
	}
}

// badSegmenter returns malformed predictions.
type badSegmenter struct {
	name string
	n    int // predictions returned per prompt list: -1 for len(prompts)
	size int // mask length; -1 for h*w
	err  error
}

func (b *badSegmenter) Name() string      { return b.name }
func (b *badSegmenter) Classes() []string { return nil }
func (b *badSegmenter) Segment(_ context.Context, _ string, h, w int, prompts []Prompt) ([]Prediction, error) {
	if b.err != nil {
		return nil, b.err
	}
	n, size := b.n, b.size
	if n < 0 {
		n = len(prompts)
	}
	if size < 0 {
		size = h * w
	}
	out := make([]Prediction, n)
	for i := range out {
		out[i].Mask = make([]bool, size)
	}
	return out, nil
}

func TestRunErrors(t *testing.T) {
	ctx := context.Background()
	ds := openSubset(t)
	ok := &Baseline{Shape: ShapeBox}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		ds      *dataset.Dataset
		segs    []Segmenter
		opts    Options
		wantErr string
	}{
		{"no methods", ctx, ds, nil, Options{Prompt: "box"}, "no method"},
		{"bad prompt", ctx, ds, []Segmenter{ok}, Options{Prompt: "lasso"}, "want box, point or both"},
		{"no prompt", ctx, ds, []Segmenter{ok}, Options{}, "want box, point or both"},
		{"duplicate names", ctx, ds, []Segmenter{ok, &Baseline{Shape: ShapeBox}}, Options{Prompt: "box"}, "two methods named"},
		{"empty dataset", ctx, ds.Subset(func(*dataset.ImageEntry) bool { return false }), []Segmenter{ok}, Options{Prompt: "box"}, "no images"},
		{"missing prompts file", ctx, ds, []Segmenter{ok}, Options{PromptsFile: "nope.json"}, "nope.json"},
		{"too few predictions", ctx, ds, []Segmenter{&badSegmenter{name: "few", n: 0, size: -1}}, Options{Prompt: "box"}, "0 predictions for"},
		{"wrong mask size", ctx, ds, []Segmenter{&badSegmenter{name: "size", n: -1, size: 3}}, Options{Prompt: "box"}, "mask of 3"},
		{"model error", ctx, ds, []Segmenter{&badSegmenter{name: "err", err: errors.New("out of memory")}}, Options{Prompt: "box"}, "evaluate err on images/"},
		{"cancelled", cancelled, ds, []Segmenter{ok}, Options{Prompt: "box"}, "canceled"},
	}
	for _, tt := range tests {
		_, err := Run(tt.ctx, tt.ds, tt.segs, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.wantErr)
		}
	}
}
