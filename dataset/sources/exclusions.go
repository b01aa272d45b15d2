package sources

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
)

// Exclusions are the training-data rules of training_exclusions.json.
type Exclusions struct {
	About          string      `json:"about"`
	ReservedWhole  ReservedSet `json:"reserved_whole_datasets"`
	ReservedBeyond ReservedSet `json:"reserved_beyond_demo2d"`
	PatientSplit   struct {
		Why      string                   `json:"why"`
		Datasets map[string]*SplitDataset `json:"datasets"`
	} `json:"patient_split"`

	// File is the path the rules were read from.
	File string `json:"-"`
}

// ReservedSet is a list of datasets training must not use at all (or
// beyond the demo data segsam was given), with the repositories known to host them.
type ReservedSet struct {
	Why               string   `json:"why"`
	Datasets          []string `json:"datasets"`
	KnownRepositories []string `json:"known_repositories"`
	Note              string   `json:"note,omitempty"`
}

// SplitDataset is a dataset of which some groups and files are reserved.
type SplitDataset struct {
	HostingRepositories []string `json:"hosting_repositories"`
	GroupRule           string   `json:"group_rule"`
	ExcludedGroups      []string `json:"excluded_groups"`
	ExcludedFiles       []string `json:"excluded_files"`
}

// extraReservedNames are further names of reserved datasets, by the
// lower-cased short name of the reserved entry: datasets that contain it or
// are it (from the entries' parenthesised notes, plus the later KiTS
// challenges, whose training cases include all of KiTS19's).
var extraReservedNames = map[string][]string{
	"cvc-colondb": {"CVC-300", "EndoScene"},
	"ham10000":    {"ISIC 2018 task 3", "ISIC2018 task 3"},
	"kits19":      {"KiTS21", "KiTS23"},
}

var yearSuffixRe = regexp.MustCompile(`^(.+?) \d{4}$`)

// LoadExclusions reads training_exclusions.json. Unknown keys are allowed
// (they do not weaken the known rules), but every section must be present
// and non-empty, so that a renamed section cannot switch a rule off.
func LoadExclusions(p string) (*Exclusions, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("load exclusions: %w", err)
	}
	var e Exclusions
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("load exclusions %s: %w", p, err)
	}
	e.File = p
	switch {
	case len(e.ReservedWhole.Datasets) == 0 || len(e.ReservedWhole.KnownRepositories) == 0:
		return nil, fmt.Errorf("load exclusions %s: \"reserved_whole_datasets\" lacks datasets or known_repositories", p)
	case len(e.ReservedBeyond.Datasets) == 0 || len(e.ReservedBeyond.KnownRepositories) == 0:
		return nil, fmt.Errorf("load exclusions %s: \"reserved_beyond_demo2d\" lacks datasets or known_repositories", p)
	case len(e.PatientSplit.Datasets) == 0:
		return nil, fmt.Errorf("load exclusions %s: \"patient_split\" lists no datasets", p)
	}
	for name, d := range e.PatientSplit.Datasets {
		if d == nil || len(d.ExcludedGroups) == 0 && len(d.ExcludedFiles) == 0 {
			return nil, fmt.Errorf("load exclusions %s: patient_split %q lists no excluded groups or files", p, name)
		}
	}
	return &e, nil
}

// ShortName is a dataset name up to " (": "HC18 (fetal head ...)" gives
// "HC18".
func ShortName(s string) string {
	if i := strings.Index(s, " ("); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// repoName strips an "@commit" suffix and lower-cases.
func repoName(r string) string {
	if i := strings.IndexByte(r, '@'); i >= 0 {
		r = r[:i]
	}
	return strings.ToLower(strings.TrimSpace(r))
}

// namesMatch reports whether the dataset string d names the dataset key:
// key appears in d (case-insensitively) as a whole word, that is not
// preceded by a letter or digit nor followed by a letter. "BraTS 2021",
// "BraTS2021" and "Brain tumours (BraTS)" name BraTS; "PH2Dataset" does
// not name PH2.
func namesMatch(d, key string) bool {
	d, key = strings.ToLower(d), strings.ToLower(strings.TrimSpace(key))
	if key == "" {
		return false
	}
	for from := 0; ; {
		i := strings.Index(d[from:], key)
		if i < 0 {
			return false
		}
		i += from
		before := i == 0 || !isAlnum(d[i-1])
		j := i + len(key)
		after := j == len(d) || !isLetter(d[j])
		if before && after {
			return true
		}
		from = i + 1
	}
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool  { return isLetter(c) || c >= '0' && c <= '9' }

// reservedKeys lists the names a reserved entry is known by.
func reservedKeys(entry string) []string {
	short := ShortName(entry)
	keys := []string{short}
	if m := yearSuffixRe.FindStringSubmatch(short); m != nil {
		keys = append(keys, m[1]) // "CURVAS 2024" -> "CURVAS"
	}
	keys = append(keys, extraReservedNames[strings.ToLower(short)]...)
	return keys
}

// ReservedNames lists every dataset name that Check refuses.
func (e *Exclusions) ReservedNames() []string {
	var out []string
	for _, set := range []ReservedSet{e.ReservedWhole, e.ReservedBeyond} {
		for _, d := range set.Datasets {
			out = append(out, reservedKeys(d)...)
		}
	}
	return out
}

// Check refuses a source whose repository is a known repository of a
// reserved dataset, or whose dataset names a reserved one.
func (e *Exclusions) Check(s *Source) error {
	if e == nil {
		return errors.New("no training exclusions given")
	}
	for _, set := range []struct {
		name string
		ReservedSet
	}{{"reserved_whole_datasets", e.ReservedWhole}, {"reserved_beyond_demo2d", e.ReservedBeyond}} {
		for _, r := range set.KnownRepositories {
			if repoName(r) == repoName(s.Repo) {
				return fmt.Errorf("source %s refused: repository %s is a known repository of a reserved dataset (%s in %s)", s.ID, s.Repo, set.name, e.File)
			}
		}
		for _, d := range set.Datasets {
			for _, key := range reservedKeys(d) {
				if namesMatch(s.Dataset, key) {
					return fmt.Errorf("source %s refused: dataset %q names the reserved dataset %q (%s in %s)", s.ID, s.Dataset, d, set.name, e.File)
				}
			}
		}
	}
	return nil
}

// splitRule is the patient-split rule that applies to one source.
type splitRule struct {
	name   string // the exclusions entry
	groups map[string]bool
	files  map[string]bool // full paths
	bases  map[string]bool // file names that occur once among the excluded files
	group  func(p string) string
}

var (
	hc18Re  = regexp.MustCompile(`^(\d+)_`)
	ph2Re   = regexp.MustCompile(`IMD\d+`)
	driveRe = regexp.MustCompile(`^(\d{2})_`)
	stsRe   = regexp.MustCompile(`STS_\d+`)
)

// datasetGroup returns the group of an image path by the rule of a
// patient-split dataset ("" when the rule does not say: the source's own
// group applies).
func datasetGroup(short, p string) string {
	base := path.Base(p)
	switch strings.ToLower(short) {
	case "hc18":
		if m := hc18Re.FindStringSubmatch(base); m != nil {
			return m[1]
		}
	case "ph2":
		if all := ph2Re.FindAllString(p, -1); len(all) > 0 {
			return all[len(all)-1]
		}
	case "drive":
		if m := driveRe.FindStringSubmatch(base); m != nil {
			return m[1]
		}
	case "soft-tissue sarcoma":
		if all := stsRe.FindAllString(p, -1); len(all) > 0 {
			return all[len(all)-1]
		}
	}
	return ""
}

// splitRules returns the patient-split rules that apply to a source: those
// whose dataset it names or whose hosting repository it reads.
func (e *Exclusions) splitRules(s *Source) []*splitRule {
	names := make([]string, 0, len(e.PatientSplit.Datasets))
	for n := range e.PatientSplit.Datasets {
		names = append(names, n)
	}
	sort.Strings(names)
	var rules []*splitRule
	for _, name := range names {
		d := e.PatientSplit.Datasets[name]
		short := ShortName(name)
		applies := namesMatch(s.Dataset, short)
		for _, r := range d.HostingRepositories {
			applies = applies || repoName(r) == repoName(s.Repo)
		}
		if !applies {
			continue
		}
		r := &splitRule{name: short, groups: map[string]bool{}, files: map[string]bool{}, bases: map[string]bool{}}
		for _, g := range d.ExcludedGroups {
			r.groups[strings.ToLower(g)] = true
		}
		baseCount := map[string]int{}
		for _, f := range d.ExcludedFiles {
			r.files[f] = true
			baseCount[path.Base(f)]++
		}
		for b, n := range baseCount {
			if n == 1 {
				r.bases[b] = true
			}
		}
		r.group = func(p string) string { return datasetGroup(short, p) }
		rules = append(rules, r)
	}
	return rules
}

// excludedWhy says which rule excluded a path: rule is "<dataset>
// excluded group" or "<dataset> excluded file", detail the group or file;
// rule is "" when the path is not excluded.
type excludedWhy struct{ rule, detail string }

// excluded says why an image (or volume) path of group g is excluded by
// the rules. A path is excluded when it (or one of others, its masks), or
// its file name, is an excluded file, or when its group by the dataset's
// rule or the source's own group is an excluded group. File names count
// only when distinctive: once among the excluded files and at most once
// among the source's candidate paths (baseCount), so that
// ".../STS_003/CT_image.nii.gz" does not exclude every CT_image.nii.gz.
func excluded(rules []*splitRule, baseCount map[string]int, p, g string, others ...string) excludedWhy {
	for _, r := range rules {
		for i, q := range append([]string{p}, others...) {
			if q == "" {
				continue
			}
			base := path.Base(q)
			hit := r.files[q] || i == 0 && r.bases[base] && baseCount[base] <= 1
			for f := range r.files {
				hit = hit || strings.HasSuffix(q, "/"+f)
			}
			if hit {
				return excludedWhy{r.name + " excluded file", q}
			}
		}
		if dg := r.group(p); dg != "" && r.groups[strings.ToLower(dg)] {
			return excludedWhy{r.name + " excluded group", dg}
		}
		if g != "" && r.groups[strings.ToLower(g)] {
			return excludedWhy{r.name + " excluded group", g}
		}
	}
	return excludedWhy{}
}
