package dataset

import "strings"

// The eight imaging modalities of SA-Med2D-16M, spelled as in the paper's
// tables and in meta.json.
const (
	CT         = "CT"
	MR         = "MR"
	PET        = "PET"
	Dermoscopy = "dermoscopy"
	Endoscopy  = "endoscopy"
	Fundus     = "fundus"
	Ultrasound = "ultrasound"
	XRay       = "X-ray"
	// Unknown is the modality of an image whose meta.json entry is missing
	// or names no modality.
	Unknown = "unknown"
)

// Modalities lists the eight known modalities in the order of the paper's
// tables (CT, MR, PET, Derm., Endo., Fund., Ultr., X-ray).
var Modalities = []string{CT, MR, PET, Dermoscopy, Endoscopy, Fundus, Ultrasound, XRay}

// modalityAliases maps a lower-cased spelling, with spaces, hyphens,
// underscores and dots removed, to its canonical modality.
var modalityAliases = map[string]string{
	"ct":                 CT,
	"computedtomography": CT,
	"mr":                 MR,
	"mri":                MR,
	"magneticresonance":  MR,
	"pet":                PET,
	"petct":              PET,
	"dermoscopy":         Dermoscopy,
	"derm":               Dermoscopy,
	"dermatoscopy":       Dermoscopy,
	"dermoscopic":        Dermoscopy,
	"endoscopy":          Endoscopy,
	"endo":               Endoscopy,
	"endoscopic":         Endoscopy,
	"colonoscopy":        Endoscopy,
	"fundus":             Fundus,
	"fund":               Fundus,
	"fundusphotography":  Fundus,
	"retinalfundus":      Fundus,
	"ultrasound":         Ultrasound,
	"us":                 Ultrasound,
	"ultr":               Ultrasound,
	"ultrasonography":    Ultrasound,
	"xray":               XRay,
	"cxr":                XRay,
	"radiography":        XRay,
	"unknown":            Unknown,
}

// NormalizeModality returns the canonical spelling of a modality name,
// accepting case and punctuation variants ("MRI" and "mr" give MR, "xray" and
// "X-Ray" give X-ray). ok is false when the name is not one of the eight
// modalities (or "unknown"); the returned name is then the trimmed input.
func NormalizeModality(name string) (canonical string, ok bool) {
	key := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '_', '.', '/':
			return -1
		}
		return r
	}, strings.ToLower(strings.TrimSpace(name)))
	if c, found := modalityAliases[key]; found {
		return c, true
	}
	return strings.TrimSpace(name), false
}

// ModalityIndex returns the position of a canonical modality in Modalities,
// or len(Modalities) for any other name, so that sorting by it puts the
// paper's modalities first in the paper's order.
func ModalityIndex(m string) int {
	for i, k := range Modalities {
		if k == m {
			return i
		}
	}
	return len(Modalities)
}
