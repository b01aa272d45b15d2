package eval

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/segsam/segsam/dataset"
)

// Output file names written by Report.Write.
const (
	SummaryMDFile  = "summary.md"
	SummaryCSVFile = "summary.csv"
	ResultsFile    = "results.json"
	PromptsFile    = "prompts.json"
	ChartsDir      = "charts"
	GalleryDir     = "gallery"
)

// ResultsVersion is the format version of results.json.
const ResultsVersion = 1

// Results is the content of results.json.
type Results struct {
	Version         int            `json:"version"`
	Data            string         `json:"data"`
	Images          int            `json:"images"`
	Objects         int            `json:"objects"`
	Seed            int64          `json:"seed"`
	Kinds           []string       `json:"kinds"`
	PromptsReplayed string         `json:"prompts_replayed,omitempty"`
	Auto            bool           `json:"auto,omitempty"`
	Methods         []MethodInfo   `json:"methods"`
	Rows            []Row          `json:"rows"`
	Results         []ObjectResult `json:"results"`
	Warnings        []string       `json:"warnings,omitempty"`
}

// paperColumns are the paper's column titles for the eight modalities.
var paperColumns = map[string]string{
	dataset.CT: "CT", dataset.MR: "MR", dataset.PET: "PET", dataset.Dermoscopy: "Derm.",
	dataset.Endoscopy: "Endo.", dataset.Fundus: "Fund.", dataset.Ultrasound: "Ultr.", dataset.XRay: "X-ray",
}

// columns returns the table's modality columns: the paper's eight, then any
// other modality present in the rows.
func (rep *Report) columns() []string {
	cols := append([]string(nil), dataset.Modalities...)
	extra := map[string]bool{}
	for _, r := range rep.Rows {
		for _, m := range r.Modalities {
			if dataset.ModalityIndex(m) == len(dataset.Modalities) {
				extra[m] = true
			}
		}
	}
	var ex []string
	for m := range extra {
		ex = append(ex, m)
	}
	sort.Strings(ex)
	return append(cols, ex...)
}

func columnTitle(m string) string {
	if t, ok := paperColumns[m]; ok {
		return t
	}
	return m
}

func promptTitle(kind string) string {
	switch kind {
	case KindBox:
		return "Box"
	case KindPoint:
		return "Point"
	case KindAuto:
		return "Auto (no prompt)"
	}
	// Interactive rows: "box+3" -> "Box + 3 clicks".
	if base, n, ok := strings.Cut(kind, "+"); ok && (base == KindBox || base == KindPoint) {
		unit := "clicks"
		if n == "1" {
			unit = "click"
		}
		return promptTitle(base) + " + " + n + " " + unit
	}
	return kind
}

func pct(v float64) string { return strconv.FormatFloat(100*v, 'f', 2, 64) }

// Write saves the report into dir (created if needed): summary.md,
// summary.csv, results.json, prompts.json, charts/<modality>.png (plus
// charts/avg.png), confusion_<method>_<prompt>.csv for methods with
// classes, and gallery/<method>_<prompt>/ with the worst cases.
func (rep *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	gallery, err := rep.writeGallery(dir)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		SummaryMDFile:  rep.markdown(gallery),
		SummaryCSVFile: rep.csv(),
	}
	res := Results{
		Version: ResultsVersion, Data: rep.Data, Images: rep.Images, Objects: rep.Objects, Seed: rep.Seed,
		Kinds: rep.Kinds, PromptsReplayed: rep.PromptsReplayed, Auto: rep.Auto, Methods: rep.Methods, Rows: rep.Rows,
		Results: rep.Results, Warnings: rep.Warnings,
	}
	if files[ResultsFile], err = json.MarshalIndent(res, "", " "); err != nil {
		return fmt.Errorf("encode %s: %w", ResultsFile, err)
	}
	if files[PromptsFile], err = json.MarshalIndent(rep.Prompts, "", " "); err != nil {
		return fmt.Errorf("encode %s: %w", PromptsFile, err)
	}
	for _, r := range rep.Rows {
		if r.Semantic {
			files[fmt.Sprintf("confusion_%s_%s.csv", fileSafe(r.Method), r.Prompt)] = confusionCSV(r)
		}
	}
	for name, data := range files {
		if name == ResultsFile || name == PromptsFile {
			data = append(data, '\n')
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return rep.writeCharts(filepath.Join(dir, ChartsDir))
}

// markdown renders summary.md.
func (rep *Report) markdown(gallery map[rowKey][]string) []byte {
	var b bytes.Buffer
	cols := rep.columns()
	fmt.Fprintf(&b, "# segsam eval\n\n")
	fmt.Fprintf(&b, "- data: `%s`: %d images, %d objects\n", rep.Data, rep.Images, rep.Objects)
	if rep.PromptsReplayed != "" {
		fmt.Fprintf(&b, "- prompts: %s, replayed from `%s`\n", strings.Join(rep.Kinds, ", "), rep.PromptsReplayed)
	} else {
		fmt.Fprintf(&b, "- prompts: %s, simulated with seed %d (box: tight extent of the mask, no jitter; point: one uniformly random foreground pixel); each object prompted on its own\n", strings.Join(rep.Kinds, ", "), rep.Seed)
	}
	if rep.Auto {
		fmt.Fprintf(&b, "- auto: no prompt; each image labelled once by the model's automatic segmentation (label everything); DSC: the label region overlapping the object most, whatever its class; mDSC: the pixels labelled the object's class (per-class Dice)\n")
	}
	var ms []string
	for _, m := range rep.Methods {
		s := m.Name
		if m.Classes > 0 {
			s += fmt.Sprintf(" (%d classes)", m.Classes)
		} else {
			s += " (binary only)"
		}
		ms = append(ms, s)
	}
	fmt.Fprintf(&b, "- methods: %s\n", strings.Join(ms, ", "))
	fmt.Fprintf(&b, "- time: %s\n", rep.Elapsed.Round(1e7))

	rep.writeTables(&b, true)

	if len(rep.Rows) > 0 {
		r := rep.Rows[0]
		b.WriteString("\n## Objects per modality\n\n")
		b.WriteString("| Objects")
		for _, c := range cols {
			b.WriteString(" | " + columnTitle(c))
		}
		b.WriteString(" | Total |\n|")
		for range len(cols) + 2 {
			b.WriteString("---|")
		}
		total := 0
		b.WriteString("\n| n")
		for _, c := range cols {
			fmt.Fprintf(&b, " | %d", r.Objects[c])
			total += r.Objects[c]
		}
		fmt.Fprintf(&b, " | %d |\n", total)
	}

	b.WriteString("\n## Predicted-IoU calibration\n\n")
	calibrated := false
	for _, r := range rep.Rows {
		if r.Calibration != nil {
			calibrated = true
		}
	}
	if !calibrated {
		b.WriteString("No method in this run predicts IoU.\n")
	} else {
		b.WriteString("Predicted IoU against the true IoU of the binary mask: mean absolute error, Pearson r, and the mean true IoU per bin of predicted IoU (n in brackets).\n\n")
		b.WriteString("| Method | Prompt | Objects | MAE | r |")
		for i := range 10 {
			fmt.Fprintf(&b, " %.1f–%.1f |", float64(i)/10, float64(i+1)/10)
		}
		b.WriteString("\n|---|---|---|---|---|")
		b.WriteString(strings.Repeat("---|", 10) + "\n")
		for _, r := range rep.Rows {
			c := r.Calibration
			if c == nil {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %.3f | %.3f |", r.Method, promptTitle(r.Prompt), c.Objects, c.MAE, c.Corr)
			for _, bin := range c.Bins {
				if bin.Objects == 0 {
					b.WriteString(" – |")
				} else {
					fmt.Fprintf(&b, " %.2f (%d) |", bin.MeanIoU, bin.Objects)
				}
			}
			b.WriteString("\n")
		}
	}

	b.WriteString("\n## Per-class DSC (%)\n\n")
	b.WriteString("Mean binary DSC per class within each modality; for methods with classes the semantic DSC follows after a slash.\n\n")
	b.WriteString("| Modality | Class | Objects |")
	for _, r := range rep.Rows {
		fmt.Fprintf(&b, " %s / %s |", r.Method, r.Prompt)
	}
	b.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(rep.Rows)) + "\n")
	if len(rep.Rows) > 0 {
		type mc struct{ modality, class string }
		byRow := make([]map[mc]ClassStat, len(rep.Rows))
		for i, r := range rep.Rows {
			byRow[i] = map[mc]ClassStat{}
			for _, c := range r.PerClass {
				byRow[i][mc{c.Modality, c.Class}] = c
			}
		}
		for _, cs := range rep.Rows[0].PerClass {
			fmt.Fprintf(&b, "| %s | %s | %d |", cs.Modality, cs.Class, cs.Objects)
			for i, r := range rep.Rows {
				c, ok := byRow[i][mc{cs.Modality, cs.Class}]
				switch {
				case !ok:
					b.WriteString(" – |")
				case r.Semantic:
					fmt.Fprintf(&b, " %s / %s |", pct(c.DSC), pct(c.SemanticDSC))
				default:
					fmt.Fprintf(&b, " %s |", pct(c.DSC))
				}
			}
			b.WriteString("\n")
		}
	}

	if len(gallery) > 0 {
		b.WriteString("\n## Worst cases\n\nLowest-DSC objects per row: image with the ground truth outlined in green, the prediction filled and outlined in red, the prompt in yellow.\n\n")
		for _, r := range rep.Rows {
			files := gallery[rowKey{r.Method, r.Prompt}]
			if len(files) == 0 {
				continue
			}
			fmt.Fprintf(&b, "### %s, %s\n\n", r.Method, r.Prompt)
			for _, f := range files {
				fmt.Fprintf(&b, "![%s](%s) ", f, f)
			}
			b.WriteString("\n\n")
		}
	}
	b.WriteString("\nCharts: `charts/<modality>.png`. Per-object results: `results.json`. Prompts (replay with `--prompts`): `prompts.json`.\n")
	if len(rep.Warnings) > 0 {
		b.WriteString("\n## Warnings\n\n")
		for _, w := range rep.Warnings {
			fmt.Fprintf(&b, "- %s\n", w)
		}
	}
	return b.Bytes()
}

func (rep *Report) anySemantic() bool {
	for _, r := range rep.Rows {
		if r.Semantic {
			return true
		}
	}
	return false
}

// WriteTables writes the paper-shaped tables (DSC; mDSC and class accuracy
// when a method predicts classes) as Markdown.
func (rep *Report) WriteTables(w io.Writer) error {
	var b bytes.Buffer
	rep.writeTables(&b, false)
	_, err := w.Write(b.Bytes())
	return err
}

func (rep *Report) writeTables(b *bytes.Buffer, full bool) {
	cols := rep.columns()
	// header writes the title row; extra columns follow Avg.
	header := func(first []string, extra ...string) {
		b.WriteString("| " + strings.Join(first, " | "))
		for _, c := range cols {
			b.WriteString(" | " + columnTitle(c))
		}
		b.WriteString(" | Avg.")
		for _, e := range extra {
			b.WriteString(" | " + e)
		}
		b.WriteString(" |\n|")
		for range len(first) + len(cols) + 1 + len(extra) {
			b.WriteString("---|")
		}
		b.WriteString("\n")
	}
	cells := func(vals map[string]float64, avg float64, extra ...float64) {
		for _, c := range cols {
			if v, ok := vals[c]; ok {
				b.WriteString(" | " + pct(v))
			} else {
				b.WriteString(" | –")
			}
		}
		b.WriteString(" | " + pct(avg))
		for _, e := range extra {
			b.WriteString(" | " + pct(e))
		}
		b.WriteString(" |\n")
	}
	methodPrompt := []string{"Method", "Prompt"}
	note := func(s string) {
		if full {
			b.WriteString(s + "\n\n")
		}
	}

	b.WriteString("\n## Binary segmentation: DSC (%) (as the paper's Table 1)\n\n")
	note("Binary (Dec_sag) mask of each prompted object. A modality column is the mean DSC over that modality's objects; Avg. is the mean of the modality columns. – : no objects.")
	header(methodPrompt)
	for _, r := range rep.Rows {
		fmt.Fprintf(b, "| %s | %s", r.Method, promptTitle(r.Prompt))
		cells(r.DSC, r.DSCAvg)
	}

	if !rep.anySemantic() {
		if full {
			b.WriteString("\n## Semantic segmentation: mDSC (%) (as the paper's Table 2)\n\nNo method in this run predicts classes.\n")
		}
		return
	}
	b.WriteString("\n## Semantic segmentation: mDSC (%) (as the paper's Table 2)\n\n")
	note("Semantic DSC of an object is the Dice of the predicted semantic mask with the ground truth when the predicted class is right, 0 when it is wrong. A modality column is the mean over the classes present in that modality of each class's mean semantic DSC; Avg. is the mean of the modality columns.")
	header(methodPrompt)
	for _, r := range rep.Rows {
		if r.Semantic {
			fmt.Fprintf(b, "| %s | %s", r.Method, promptTitle(r.Prompt))
			cells(r.MDSC, r.MDSCAvg)
		}
	}
	b.WriteString("\n### Class accuracy (%)\n\n")
	note("Share of objects whose predicted class is the ground-truth class. A modality column is over that modality's objects; Avg. is the mean of the modality columns, as in the DSC tables; All objects pools the objects of every modality (so large modalities weigh more).")
	header(methodPrompt, "All objects")
	for _, r := range rep.Rows {
		if r.Semantic {
			fmt.Fprintf(b, "| %s | %s", r.Method, promptTitle(r.Prompt))
			cells(r.ClassAcc, r.ClassAccAvg, r.ClassAccAll)
		}
	}
	if !full {
		return
	}
	b.WriteString("\n### Most frequent confusions\n\n")
	for _, r := range rep.Rows {
		if r.Semantic {
			fmt.Fprintf(b, "- %s, %s: %s (full matrix: `confusion_%s_%s.csv`)\n", r.Method, r.Prompt,
				topConfusions(r, 8), fileSafe(r.Method), r.Prompt)
		}
	}
}

// csv renders summary.csv: one line per row and metric, values in percent
// (objects as counts), an empty cell where a modality has no objects.
func (rep *Report) csv() []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	cols := rep.columns()
	head := append([]string{"method", "prompt", "metric"}, cols...)
	w.Write(append(head, "Avg"))
	line := func(r Row, metric string, vals map[string]float64, avg float64) {
		rec := []string{r.Method, r.Prompt, metric}
		for _, c := range cols {
			if v, ok := vals[c]; ok {
				rec = append(rec, strconv.FormatFloat(100*v, 'f', 4, 64))
			} else {
				rec = append(rec, "")
			}
		}
		w.Write(append(rec, strconv.FormatFloat(100*avg, 'f', 4, 64)))
	}
	for _, r := range rep.Rows {
		rec := []string{r.Method, r.Prompt, "objects"}
		total := 0
		for _, c := range cols {
			if n, ok := r.Objects[c]; ok {
				rec = append(rec, strconv.Itoa(n))
				total += n
			} else {
				rec = append(rec, "")
			}
		}
		w.Write(append(rec, strconv.Itoa(total)))
		line(r, "DSC", r.DSC, r.DSCAvg)
		if r.Semantic {
			line(r, "mDSC", r.MDSC, r.MDSCAvg)
			line(r, "class_acc", r.ClassAcc, r.ClassAccAvg)
		}
	}
	w.Flush()
	return b.Bytes()
}

// confusionCSV renders a row's confusion matrix: ground-truth classes down,
// predicted classes across.
func confusionCSV(r Row) []byte {
	gts := make([]string, 0, len(r.Confusion))
	predSet := map[string]bool{}
	for g, preds := range r.Confusion {
		gts = append(gts, g)
		for p := range preds {
			predSet[p] = true
		}
	}
	sort.Strings(gts)
	preds := make([]string, 0, len(predSet))
	for p := range predSet {
		preds = append(preds, p)
	}
	sort.Strings(preds)
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(append([]string{"gt\\pred"}, preds...))
	for _, g := range gts {
		rec := []string{g}
		for _, p := range preds {
			rec = append(rec, strconv.Itoa(r.Confusion[g][p]))
		}
		w.Write(rec)
	}
	w.Flush()
	return b.Bytes()
}

// topConfusions lists the n most frequent wrong (gt → predicted) pairs.
func topConfusions(r Row, n int) string {
	type pair struct {
		gt, pred string
		n        int
	}
	var ps []pair
	for g, preds := range r.Confusion {
		for p, c := range preds {
			if p != g {
				ps = append(ps, pair{g, p, c})
			}
		}
	}
	if len(ps) == 0 {
		return "none"
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].n != ps[j].n {
			return ps[i].n > ps[j].n
		}
		if ps[i].gt != ps[j].gt {
			return ps[i].gt < ps[j].gt
		}
		return ps[i].pred < ps[j].pred
	})
	var out []string
	for _, p := range ps[:min(n, len(ps))] {
		out = append(out, fmt.Sprintf("%s → %s (%d)", p.gt, p.pred, p.n))
	}
	return strings.Join(out, ", ")
}

// fileSafe maps a name to a file-name-safe form.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
