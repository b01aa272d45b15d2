package medimg

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// WindowKind says how a Window picks the intensity range mapped to 0..255.
type WindowKind int

// The window kinds.
const (
	// Percentile clips to the LowPct and HighPct percentiles of the whole
	// volume (SA-Med2D's preprocessing; the default for MR and PET).
	Percentile WindowKind = iota
	// Fixed maps Level-Width/2 .. Level+Width/2 (a CT window, in HU).
	Fixed
)

// Window is an intensity window. The zero value is not valid; use
// ParseWindow, a preset or DefaultWindow.
type Window struct {
	Kind WindowKind
	// Name is the preset name ("soft", "lung", "bone", "brain"), "custom"
	// for L,W, "auto" or "percentile".
	Name string
	// Level and Width define a Fixed window.
	Level, Width float64
	// LowPct and HighPct (0..100) define a Percentile window.
	LowPct, HighPct float64
}

// The CT window presets (level and width in HU).
var (
	SoftTissueWindow = Window{Kind: Fixed, Name: "soft", Level: 40, Width: 400}
	LungWindow       = Window{Kind: Fixed, Name: "lung", Level: -600, Width: 1500}
	BoneWindow       = Window{Kind: Fixed, Name: "bone", Level: 400, Width: 1800}
	BrainWindow      = Window{Kind: Fixed, Name: "brain", Level: 40, Width: 80}
	// DefaultWindow clips to the 0.5 and 99.5 percentiles of the volume,
	// for every modality, as SA-Med2D-16M (the paper's data) was prepared.
	DefaultWindow = Window{Kind: Percentile, Name: "auto", LowPct: 0.5, HighPct: 99.5}
)

var windowPresets = map[string]Window{
	"soft": SoftTissueWindow, "softtissue": SoftTissueWindow, "soft-tissue": SoftTissueWindow, "abdomen": SoftTissueWindow,
	"lung": LungWindow, "bone": BoneWindow, "brain": BrainWindow,
	"auto": DefaultWindow, "percentile": DefaultWindow,
}

// WindowNames lists the names ParseWindow accepts besides "L,W" and
// "pLOW,HIGH".
var WindowNames = []string{"auto", "soft", "lung", "bone", "brain"}

// ParseWindow parses a window: a preset name ("soft" L40/W400, "lung"
// L-600/W1500, "bone" L400/W1800, "brain" L40/W80), "auto" (percentiles
// 0.5-99.5, DefaultWindow), "L,W" for a custom level and width (e.g.
// "50,350"), or "pLOW,HIGH" for custom percentiles (e.g. "p1,99").
func ParseWindow(s string) (Window, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if w, ok := windowPresets[t]; ok {
		return w, nil
	}
	if rest, ok := strings.CutPrefix(t, "p"); ok {
		lo, hi, err := parsePair(rest)
		if err != nil {
			return Window{}, fmt.Errorf("window %q: %w", s, err)
		}
		if lo < 0 || hi > 100 || lo >= hi {
			return Window{}, fmt.Errorf("window %q: percentiles must satisfy 0 <= low < high <= 100", s)
		}
		return Window{Kind: Percentile, Name: "percentile", LowPct: lo, HighPct: hi}, nil
	}
	l, w, err := parsePair(t)
	if err != nil {
		return Window{}, fmt.Errorf("window %q: want one of %s, LEVEL,WIDTH or pLOW,HIGH", s, strings.Join(WindowNames, ", "))
	}
	if w <= 0 {
		return Window{}, fmt.Errorf("window %q: width must be positive", s)
	}
	return Window{Kind: Fixed, Name: "custom", Level: l, Width: w}, nil
}

func parsePair(s string) (a, b float64, err error) {
	x, y, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, fmt.Errorf("want two comma-separated numbers")
	}
	a, err1 := strconv.ParseFloat(strings.TrimSpace(x), 64)
	b, err2 := strconv.ParseFloat(strings.TrimSpace(y), 64)
	if err1 != nil || err2 != nil || math.IsNaN(a) || math.IsNaN(b) || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return 0, 0, fmt.Errorf("want two comma-separated numbers")
	}
	return a, b, nil
}

// String returns the window in ParseWindow's syntax.
func (w Window) String() string {
	switch {
	case w.Kind == Fixed && w.Name != "" && w.Name != "custom":
		return w.Name
	case w.Kind == Fixed:
		return fmt.Sprintf("%g,%g", w.Level, w.Width)
	case w.Name == "auto":
		return "auto"
	}
	return fmt.Sprintf("p%g,%g", w.LowPct, w.HighPct)
}

// Range returns the intensities of v that the window maps to 0 and 255.
// Percentiles are computed over every finite voxel of the volume (linear
// interpolation, as numpy.percentile) and cached on the volume.
func (w Window) Range(v *Volume) (lo, hi float64, err error) {
	switch w.Kind {
	case Fixed:
		if !(w.Width > 0) {
			return 0, 0, fmt.Errorf("window %v: width must be positive", w)
		}
		return w.Level - w.Width/2, w.Level + w.Width/2, nil
	case Percentile:
		if !(w.LowPct >= 0 && w.HighPct <= 100 && w.LowPct < w.HighPct) {
			return 0, 0, fmt.Errorf("window %v: percentiles must satisfy 0 <= low < high <= 100", w)
		}
		key := [2]float64{w.LowPct, w.HighPct}
		v.mu.Lock()
		r, ok := v.pcts[key]
		v.mu.Unlock()
		if ok {
			return r[0], r[1], nil
		}
		p, err := Percentiles(v.Data, w.LowPct, w.HighPct)
		if err != nil {
			return 0, 0, err
		}
		v.mu.Lock()
		if v.pcts == nil {
			v.pcts = map[[2]float64][2]float64{}
		}
		v.pcts[key] = [2]float64{p[0], p[1]}
		v.mu.Unlock()
		return p[0], p[1], nil
	}
	return 0, 0, fmt.Errorf("invalid window kind %d", int(w.Kind))
}

// Percentiles returns the q-th percentiles (0..100) of the finite values,
// interpolating linearly between order statistics as numpy.percentile's
// default method does.
func Percentiles(vals []float32, q ...float64) ([]float64, error) {
	xs := make([]float32, 0, len(vals))
	for _, x := range vals {
		if !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return nil, fmt.Errorf("no finite values to take percentiles of")
	}
	slices.Sort(xs)
	out := make([]float64, len(q))
	for i, p := range q {
		if p < 0 || p > 100 || math.IsNaN(p) {
			return nil, fmt.Errorf("percentile %v out of 0..100", p)
		}
		pos := p / 100 * float64(len(xs)-1)
		lo := int(math.Floor(pos))
		hi := min(lo+1, len(xs)-1)
		f := pos - float64(lo)
		out[i] = float64(xs[lo]) + f*(float64(xs[hi])-float64(xs[lo]))
	}
	return out, nil
}
