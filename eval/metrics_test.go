package eval

import (
	"maps"
	"math"
	"strings"
	"testing"
)

func bits(s string) []bool {
	out := make([]bool, len(s))
	for i, c := range s {
		out[i] = c == '1'
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestDiceIoU(t *testing.T) {
	tests := []struct {
		name      string
		pred, gt  string
		dice, iou float64
	}{
		{"both empty", "0000", "0000", 1, 1},
		{"empty prediction", "0000", "0110", 0, 0},
		{"empty ground truth", "0110", "0000", 0, 0},
		{"identical", "0110", "0110", 1, 1},
		{"disjoint", "1100", "0011", 0, 0},
		{"2 of 3 and 3", "1110", "0111", 4.0 / 6, 2.0 / 4},
		{"1 of 3 and 2", "11100", "10001", 2.0 / 5, 1.0 / 4},
		{"shorter prediction", "11", "1111", 2.0 * 2 / 6, 2.0 / 4},
		{"longer prediction", "111111", "1100", 2.0 * 2 / 8, 2.0 / 6},
	}
	for _, tt := range tests {
		if got := Dice(bits(tt.pred), bits(tt.gt)); !near(got, tt.dice) {
			t.Errorf("%s: Dice = %v, want %v", tt.name, got, tt.dice)
		}
		if got := IoU(bits(tt.pred), bits(tt.gt)); !near(got, tt.iou) {
			t.Errorf("%s: IoU = %v, want %v", tt.name, got, tt.iou)
		}
	}
}

func TestSemanticDice(t *testing.T) {
	tests := []struct {
		name               string
		predClass, gtClass string
		pred, gt           string
		want               float64
	}{
		{"right class", "liver", "liver", "1110", "0111", 4.0 / 6},
		{"wrong class, perfect mask", "kidney", "liver", "0110", "0110", 0},
		{"no class predicted", "", "liver", "0110", "0110", 0},
		{"right class, empty prediction", "liver", "liver", "0000", "0110", 0},
	}
	for _, tt := range tests {
		if got := SemanticDice(tt.predClass, bits(tt.pred), tt.gtClass, bits(tt.gt)); !near(got, tt.want) {
			t.Errorf("%s: SemanticDice = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func f64(v float64) *float64 { return &v }
func f32(v float32) *float32 { return &v }

func TestSummarize(t *testing.T) {
	obj := func(method, mod, class string, dsc float64, sem *float64, pred string, iou float64, iouPred *float32) ObjectResult {
		return ObjectResult{Method: method, Prompt: KindBox, Modality: mod, Class: class, DSC: dsc, SemanticDSC: sem, PredClass: pred, IoU: iou, IoUPred: iouPred}
	}
	results := []ObjectResult{
		// Semantic model: CT has liver (twice, once with the wrong class) and
		// kidney (CT only); MR has prostate and soft_tissue_sarcoma (MR only,
		// no class predicted).
		obj("seg", "MR", "prostate", 0.8, f64(0.8), "prostate", 0.7, f32(0.7)),
		obj("seg", "CT", "liver", 1.0, f64(1.0), "liver", 1.0, f32(0.9)),
		obj("seg", "CT", "liver", 0.5, f64(0), "kidney", 0.3, f32(0.5)),
		obj("seg", "CT", "kidney", 0.6, f64(0.6), "kidney", 0.4, f32(0.6)),
		obj("seg", "MR", "soft_tissue_sarcoma", 0.2, f64(0), "", 0.1, f32(0.1)),
		// Binary-only method on two of the objects.
		obj("bin", "CT", "liver", 0.9, nil, "", 0.8, nil),
		obj("bin", "MR", "prostate", 0.3, nil, "", 0.2, nil),
	}
	rows := Summarize(results)
	if len(rows) != 2 || rows[0].Method != "seg" || rows[1].Method != "bin" {
		t.Fatalf("rows %+v", rows)
	}
	seg, bin := rows[0], rows[1]
	checks := []struct {
		name      string
		got, want float64
	}{
		// DSC: mean over objects per modality, Avg over modalities.
		{"seg DSC CT", seg.DSC["CT"], (1 + 0.5 + 0.6) / 3},
		{"seg DSC MR", seg.DSC["MR"], (0.8 + 0.2) / 2},
		{"seg DSC Avg", seg.DSCAvg, (0.7 + 0.5) / 2},
		// mDSC: mean over classes of the per-class mean semantic DSC. The
		// object mean of CT would be 0.5333; the class mean is 0.55.
		{"seg mDSC CT", seg.MDSC["CT"], ((1+0)/2.0 + 0.6) / 2},
		{"seg mDSC MR", seg.MDSC["MR"], (0.8 + 0) / 2},
		{"seg mDSC Avg", seg.MDSCAvg, (0.55 + 0.4) / 2},
		{"seg acc CT", seg.ClassAcc["CT"], 2.0 / 3},
		{"seg acc MR", seg.ClassAcc["MR"], 1.0 / 2},
		{"seg acc all", seg.ClassAccAll, 3.0 / 5},
		// Avg. over modalities, as for DSC: not the pooled 3/5.
		{"seg acc Avg", seg.ClassAccAvg, (2.0/3 + 1.0/2) / 2},
		{"seg calibration MAE", seg.Calibration.MAE, (0 + 0.1 + 0.2 + 0.2 + 0) / 5},
		{"bin DSC CT", bin.DSC["CT"], 0.9},
		{"bin DSC Avg", bin.DSCAvg, (0.9 + 0.3) / 2},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-6 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// The console's class-accuracy table: Avg. over modalities like the
	// DSC tables, then the pooled share under its own title.
	var tables strings.Builder
	if err := (&Report{Rows: rows}).WriteTables(&tables); err != nil {
		t.Fatal(err)
	}
	accTable := tables.String()[strings.Index(tables.String(), "Class accuracy"):]
	if !strings.Contains(accTable, "| Avg. | All objects |") || !strings.Contains(accTable, "| 66.67 | 50.00 |") || !strings.Contains(accTable, "| 58.33 | 60.00 |") {
		t.Errorf("class accuracy table:\n%s", accTable)
	}
	if !seg.Semantic || bin.Semantic || bin.MDSC != nil || bin.Calibration != nil || bin.Confusion != nil {
		t.Errorf("semantic flags: seg %v; bin %v, mdsc %v, calibration %v", seg.Semantic, bin.Semantic, bin.MDSC, bin.Calibration)
	}
	if got := seg.Modalities; len(got) != 2 || got[0] != "CT" || got[1] != "MR" {
		t.Errorf("modalities %q, want CT, MR (paper order)", got)
	}
	if seg.Objects["CT"] != 3 || seg.Objects["MR"] != 2 {
		t.Errorf("objects %v", seg.Objects)
	}
	wantConf := map[string]map[string]int{
		"liver": {"liver": 1, "kidney": 1}, "kidney": {"kidney": 1},
		"prostate": {"prostate": 1}, "soft_tissue_sarcoma": {NoClass: 1},
	}
	for g, row := range wantConf {
		if !maps.Equal(seg.Confusion[g], row) {
			t.Errorf("confusion[%s] = %v, want %v", g, seg.Confusion[g], row)
		}
	}
	wantClasses := []ClassStat{
		{"CT", "kidney", 1, 0.6, 0.6, 1},
		{"CT", "liver", 2, 0.75, 0.5, 0.5},
		{"MR", "prostate", 1, 0.8, 0.8, 1},
		{"MR", "soft_tissue_sarcoma", 1, 0.2, 0, 0},
	}
	if len(seg.PerClass) != len(wantClasses) {
		t.Fatalf("per class %+v", seg.PerClass)
	}
	for i, w := range wantClasses {
		g := seg.PerClass[i]
		if g.Modality != w.Modality || g.Class != w.Class || g.Objects != w.Objects || !near(g.DSC, w.DSC) || !near(g.SemanticDSC, w.SemanticDSC) || !near(g.Accuracy, w.Accuracy) {
			t.Errorf("per class %d = %+v, want %+v", i, g, w)
		}
	}
	// Reliability bins: 0.1, 0.5, 0.6, 0.7 and 0.9 each in their own bin.
	wantBins := map[int]float64{1: 0.1, 5: 0.3, 6: 0.4, 7: 0.7, 9: 1.0}
	for i, b := range seg.Calibration.Bins {
		want, ok := wantBins[i]
		if ok != (b.Objects == 1) || (ok && !near(b.MeanIoU, want)) {
			t.Errorf("bin %d: %+v, want mean IoU %v (present %v)", i, b, want, ok)
		}
	}
	if c := seg.Calibration.Corr; c < 0.9 || c > 1 {
		t.Errorf("correlation %v, want close to 1", c)
	}
}

func TestPearson(t *testing.T) {
	tests := []struct {
		a, b []float64
		want float64
	}{
		{[]float64{1, 2, 3}, []float64{2, 4, 6}, 1},
		{[]float64{1, 2, 3}, []float64{3, 2, 1}, -1},
		{[]float64{1, 1, 1}, []float64{3, 2, 1}, 0},
		{[]float64{1, 2, 3, 4}, []float64{1, 3, 2, 4}, 0.8},
	}
	for _, tt := range tests {
		if got := pearson(tt.a, tt.b); !near(got, tt.want) {
			t.Errorf("pearson(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
