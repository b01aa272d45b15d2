package eval

import (
	"math"
	"sort"

	"github.com/segsam/segsam/dataset"
)

// Dice returns the Dice similarity coefficient 2|P∩G| / (|P|+|G|) of two
// row-major masks of equal length (a shorter mask counts as background
// beyond its end). By convention both masks empty gives 1
// (nothing to find, nothing found) and exactly one empty gives 0.
func Dice(pred, gt []bool) float64 {
	inter, np, ng := overlap(pred, gt)
	if np+ng == 0 {
		return 1
	}
	return 2 * float64(inter) / float64(np+ng)
}

// IoU returns the intersection over union |P∩G| / |P∪G|, with the same
// conventions as Dice for empty masks.
func IoU(pred, gt []bool) float64 {
	inter, np, ng := overlap(pred, gt)
	if np+ng == 0 {
		return 1
	}
	return float64(inter) / float64(np+ng-inter)
}

// SemanticDice is the semantic DSC of one prompted object: the Dice of the
// predicted semantic mask with the ground truth when the predicted class is
// the ground-truth class, and 0 when it is not.
func SemanticDice(predClass string, predMask []bool, gtClass string, gt []bool) float64 {
	if predClass != gtClass {
		return 0
	}
	return Dice(predMask, gt)
}

// overlap counts |P∩G|, |P| and |G|; a shorter mask counts as background
// beyond its end.
func overlap(pred, gt []bool) (inter, np, ng int) {
	np = count(pred[min(len(pred), len(gt)):])
	for i, g := range gt {
		p := i < len(pred) && pred[i]
		if p {
			np++
		}
		if g {
			ng++
			if p {
				inter++
			}
		}
	}
	return inter, np, ng
}

func count(m []bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

// ObjectResult is the evaluation of one prompted object by one method.
type ObjectResult struct {
	// Method is the Segmenter's name.
	Method string `json:"method"`
	// Image and Mask are the paths of image2label.json.
	Image string `json:"image"`
	Mask  string `json:"mask"`
	// Class and Modality are the object's ground truth.
	Class    string `json:"class"`
	Modality string `json:"modality"`
	// Prompt is the kind of prompt; Box or Point holds it.
	Prompt string      `json:"prompt"`
	Box    *[4]float64 `json:"box,omitempty"`
	Point  *[2]float64 `json:"point,omitempty"`
	// DSC and IoU compare the binary (Dec_sag) mask with the ground truth.
	DSC float64 `json:"dsc"`
	IoU float64 `json:"iou"`
	// SemanticDSC is nil for models without classes.
	SemanticDSC *float64 `json:"semantic_dsc"`
	// PredClass and Confidence are the predicted class and its confidence
	// ("" and 0 for models without classes).
	PredClass  string  `json:"predicted_class"`
	Confidence float32 `json:"confidence"`
	// IoUPred is the model's own estimate of IoU; nil when the method makes
	// none.
	IoUPred *float32 `json:"iou_pred"`
	// GTArea and PredArea are foreground pixel counts.
	GTArea   int `json:"gt_area"`
	PredArea int `json:"pred_area"`
}

// Row is one row of the paper's tables: one method with one prompt kind,
// aggregated per modality.
type Row struct {
	Method string `json:"method"`
	Prompt string `json:"prompt"`
	// Semantic is true when the method predicts classes (mDSC, accuracy and
	// the confusion matrix are then filled).
	Semantic bool `json:"semantic"`
	// Modalities lists the modalities with objects, in the paper's order.
	Modalities []string `json:"modalities"`
	// Objects counts objects per modality.
	Objects map[string]int `json:"objects"`
	// DSC is the mean binary DSC over the objects of each modality; DSCAvg
	// the mean of those modality means (as the paper's "Avg." column).
	DSC    map[string]float64 `json:"dsc"`
	DSCAvg float64            `json:"dsc_avg"`
	// MDSC is, per modality, the mean over the classes present in that
	// modality of the class's mean semantic DSC; MDSCAvg the mean over
	// modalities.
	MDSC    map[string]float64 `json:"mdsc,omitempty"`
	MDSCAvg float64            `json:"mdsc_avg,omitempty"`
	// ClassAcc is the fraction of objects whose class was predicted right,
	// per modality; ClassAccAvg the mean of those modality values (the
	// "Avg." column, as for DSC and mDSC); ClassAccAll pooled over all
	// objects (weighted by each modality's object count).
	ClassAcc    map[string]float64 `json:"class_acc,omitempty"`
	ClassAccAvg float64            `json:"class_acc_avg,omitempty"`
	ClassAccAll float64            `json:"class_acc_all,omitempty"`
	// PerClass holds per (modality, class) statistics.
	PerClass []ClassStat `json:"per_class"`
	// Confusion counts ground-truth class → predicted class over all
	// objects (predicted "" is counted under NoClass).
	Confusion map[string]map[string]int `json:"confusion,omitempty"`
	// Calibration is nil when the method makes no IoU prediction.
	Calibration *Calibration `json:"calibration,omitempty"`
}

// NoClass labels a missing class prediction in confusion matrices.
const NoClass = "(none)"

// ClassStat is the statistics of one class within one modality.
type ClassStat struct {
	Modality string  `json:"modality"`
	Class    string  `json:"class"`
	Objects  int     `json:"objects"`
	DSC      float64 `json:"dsc"`
	// SemanticDSC and Accuracy are zero for methods without classes.
	SemanticDSC float64 `json:"semantic_dsc"`
	Accuracy    float64 `json:"accuracy"`
}

// Calibration compares predicted IoU with the true IoU of the binary mask.
type Calibration struct {
	Objects int `json:"objects"`
	// MAE is the mean |IoUPred − IoU|; Corr the Pearson correlation
	// (0 when either side is constant).
	MAE  float64 `json:"mae"`
	Corr float64 `json:"corr"`
	// Bins is a reliability table over IoUPred in ten bins of width 0.1.
	Bins []CalibrationBin `json:"bins"`
}

// CalibrationBin is one bin of predicted IoU.
type CalibrationBin struct {
	Lo       float64 `json:"lo"`
	Hi       float64 `json:"hi"`
	Objects  int     `json:"objects"`
	MeanPred float64 `json:"mean_pred"`
	MeanIoU  float64 `json:"mean_iou"`
}

// Summarize aggregates per-object results into table rows, one per
// (method, prompt) in order of first appearance.
//
// Binary DSC per modality is the mean over that modality's objects. mDSC per
// modality is the mean, over the classes present in the modality, of each
// class's mean semantic DSC there. Avg is the unweighted mean over the
// modalities that have objects, for both.
func Summarize(results []ObjectResult) []Row {
	type key struct{ method, prompt string }
	var order []key
	groups := map[key][]ObjectResult{}
	for _, r := range results {
		k := key{r.Method, r.Prompt}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	rows := make([]Row, 0, len(order))
	for _, k := range order {
		rows = append(rows, summarizeRow(k.method, k.prompt, groups[k]))
	}
	return rows
}

func summarizeRow(method, prompt string, objs []ObjectResult) Row {
	row := Row{Method: method, Prompt: prompt, Objects: map[string]int{}, DSC: map[string]float64{}}
	row.Semantic = len(objs) > 0
	for _, o := range objs {
		if o.SemanticDSC == nil {
			row.Semantic = false
		}
	}
	type mc struct{ modality, class string }
	type acc struct {
		n                 int
		dsc, sem, correct float64
	}
	perClass := map[mc]*acc{}
	perMod := map[string]*acc{}
	var correctAll float64
	for _, o := range objs {
		if perMod[o.Modality] == nil {
			perMod[o.Modality] = &acc{}
			row.Modalities = append(row.Modalities, o.Modality)
		}
		k := mc{o.Modality, o.Class}
		if perClass[k] == nil {
			perClass[k] = &acc{}
		}
		for _, a := range []*acc{perMod[o.Modality], perClass[k]} {
			a.n++
			a.dsc += o.DSC
			if row.Semantic {
				a.sem += *o.SemanticDSC
				if o.PredClass == o.Class {
					a.correct++
				}
			}
		}
		if row.Semantic && o.PredClass == o.Class {
			correctAll++
		}
	}
	dataset.SortModalities(row.Modalities)
	for k, a := range perClass {
		cs := ClassStat{Modality: k.modality, Class: k.class, Objects: a.n, DSC: a.dsc / float64(a.n)}
		if row.Semantic {
			cs.SemanticDSC = a.sem / float64(a.n)
			cs.Accuracy = a.correct / float64(a.n)
		}
		row.PerClass = append(row.PerClass, cs)
	}
	sort.Slice(row.PerClass, func(i, j int) bool {
		a, b := row.PerClass[i], row.PerClass[j]
		if a.Modality != b.Modality {
			return dataset.ModalityIndex(a.Modality) < dataset.ModalityIndex(b.Modality) ||
				(dataset.ModalityIndex(a.Modality) == dataset.ModalityIndex(b.Modality) && a.Modality < b.Modality)
		}
		return a.Class < b.Class
	})
	if row.Semantic {
		row.MDSC = map[string]float64{}
		row.ClassAcc = map[string]float64{}
		row.Confusion = map[string]map[string]int{}
		for _, o := range objs {
			p := o.PredClass
			if p == "" {
				p = NoClass
			}
			if row.Confusion[o.Class] == nil {
				row.Confusion[o.Class] = map[string]int{}
			}
			row.Confusion[o.Class][p]++
		}
		row.ClassAccAll = correctAll / float64(len(objs))
	}
	for _, m := range row.Modalities {
		a := perMod[m]
		row.Objects[m] = a.n
		row.DSC[m] = a.dsc / float64(a.n)
		row.DSCAvg += row.DSC[m]
		if row.Semantic {
			row.ClassAcc[m] = a.correct / float64(a.n)
			row.ClassAccAvg += row.ClassAcc[m]
			var sum float64
			var nc int
			for _, cs := range row.PerClass {
				if cs.Modality == m {
					sum += cs.SemanticDSC
					nc++
				}
			}
			row.MDSC[m] = sum / float64(nc)
			row.MDSCAvg += row.MDSC[m]
		}
	}
	if n := len(row.Modalities); n > 0 {
		row.DSCAvg /= float64(n)
		row.MDSCAvg /= float64(n)
		row.ClassAccAvg /= float64(n)
	}
	row.Calibration = calibrate(objs)
	return row
}

// calibrate returns the predicted-IoU calibration of the objects that carry
// an IoU prediction, or nil when none does.
func calibrate(objs []ObjectResult) *Calibration {
	var pred, truth []float64
	for _, o := range objs {
		if o.IoUPred != nil {
			pred = append(pred, float64(*o.IoUPred))
			truth = append(truth, o.IoU)
		}
	}
	if len(pred) == 0 {
		return nil
	}
	c := &Calibration{Objects: len(pred)}
	for i := range pred {
		c.MAE += math.Abs(pred[i] - truth[i])
	}
	c.MAE /= float64(len(pred))
	c.Corr = pearson(pred, truth)
	c.Bins = make([]CalibrationBin, 10)
	for i := range c.Bins {
		c.Bins[i].Lo, c.Bins[i].Hi = float64(i)/10, float64(i+1)/10
	}
	for i, p := range pred {
		// The epsilon keeps float32 predictions such as 0.7 (0.69999999)
		// in the bin their decimal value names.
		b := max(0, min(9, int(p*10+1e-6)))
		c.Bins[b].Objects++
		c.Bins[b].MeanPred += p
		c.Bins[b].MeanIoU += truth[i]
	}
	for i := range c.Bins {
		if n := c.Bins[i].Objects; n > 0 {
			c.Bins[i].MeanPred /= float64(n)
			c.Bins[i].MeanIoU /= float64(n)
		}
	}
	return c
}

func pearson(a, b []float64) float64 {
	n := float64(len(a))
	var ma, mb float64
	for i := range a {
		ma += a[i]
		mb += b[i]
	}
	ma /= n
	mb /= n
	var cov, va, vb float64
	for i := range a {
		da, db := a[i]-ma, b[i]-mb
		cov += da * db
		va += da * da
		vb += db * db
	}
	if va == 0 || vb == 0 {
		return 0
	}
	return cov / math.Sqrt(va*vb)
}
