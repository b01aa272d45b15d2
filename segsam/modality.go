package segsam

import (
	"slices"
	"sort"

	"github.com/segsam/segsam/dataset"
)

// The modality prior: a SEG-SAM class head chooses among every class of its
// vocabulary, so a CT organ can be named "polyp" (an endoscopy class) when
// the head is unsure. When the image's modality is known (the user says it,
// a DICOM header or a dataset's meta.json does), the class can be chosen
// among the classes the training data had in that modality: their
// probabilities renormalised, the others set to 0. The table is
// Config.ModalityClasses, written by training; a model without it, or a
// modality it never saw, is left as it is.

// ModalityClassesOf returns, for each modality of a data set (canonical
// names, see dataset.Modalities; Unknown left out), the sorted classes of its
// objects.
func ModalityClassesOf(sets ...*dataset.Dataset) map[string][]string {
	seen := map[string]map[string]bool{}
	for _, ds := range sets {
		if ds == nil {
			continue
		}
		for _, e := range ds.Images {
			if e.Modality == "" || e.Modality == dataset.Unknown {
				continue
			}
			for _, m := range e.Masks {
				if seen[e.Modality] == nil {
					seen[e.Modality] = map[string]bool{}
				}
				seen[e.Modality][m.Class] = true
			}
		}
	}
	out := make(map[string][]string, len(seen))
	for mod, cs := range seen {
		names := make([]string, 0, len(cs))
		for c := range cs {
			names = append(names, c)
		}
		sort.Strings(names)
		out[mod] = names
	}
	return out
}

// ClassesOfModality returns which classes of the vocabulary the training
// data had in a modality (any spelling dataset.NormalizeModality accepts),
// or nil when the model has no such record: no table, an empty or unknown
// modality, or one whose classes are none of the vocabulary's.
func (c Config) ClassesOfModality(modality string) []bool {
	if len(c.ModalityClasses) == 0 || modality == "" {
		return nil
	}
	canon, _ := dataset.NormalizeModality(modality)
	names, ok := c.ModalityClasses[canon]
	if !ok {
		return nil
	}
	allowed := make([]bool, len(c.Classes))
	any := false
	for i, cl := range c.Classes {
		if slices.Contains(names, cl) {
			allowed[i], any = true, true
		}
	}
	if !any {
		return nil
	}
	return allowed
}

// restrictClasses sets the probabilities of the classes outside allowed to
// 0 and renormalises the rest, in place; nil allowed (no prior) or allowed
// classes of total probability 0 leave probs as they are.
func restrictClasses(probs []float32, allowed []bool) []float32 {
	if allowed == nil {
		return probs
	}
	var sum float64
	for i, p := range probs {
		if allowed[i] {
			sum += float64(p)
		}
	}
	if sum <= 0 {
		return probs
	}
	for i, p := range probs {
		if allowed[i] {
			probs[i] = float32(float64(p) / sum)
		} else {
			probs[i] = 0
		}
	}
	return probs
}
