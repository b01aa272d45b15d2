package dataset

import (
	"fmt"
	"sort"
	"strings"
)

// Assembly is how Assemble joined sets into a training and a validation set.
type Assembly struct {
	Train, Val *Dataset
	// DroppedTrain counts training images left out because a validation
	// image shares their source file or their patient, per set directory.
	DroppedTrain map[string]int
	// DroppedVal counts validation images left out because a training set
	// holds the same repository folder with patient ids that cannot be matched to
	// theirs (so the same patient could be on both sides), per set directory.
	DroppedVal map[string]int
}

// Assemble builds a training and a validation set from three kinds of sets:
// train sets (used whole for training), val sets (held out whole: unseen
// datasets) and split sets (each split by its own groups with SplitByGroup,
// as 'segsam train' splits one). Images taken from the same public
// repository by different sets are de-duplicated against validation: a
// training image whose source file (meta "source", without its commit) or
// whose patient (repository folder + the group id after its "<set>:"
// prefix) is also in validation is dropped; where a training set's patient
// ids for a repository folder match none of the validation set's own naming for it (e.g.
// frame numbers against sequence ids), the validation images of that
// repository are dropped instead, since no patient could be told apart.
func Assemble(train, val, split []*Dataset, valFraction float64, seed int64) (*Assembly, error) {
	type part struct {
		ds    *Dataset
		owner int // index of the split set it came from, or -1
	}
	var trains, vals []part
	for _, ds := range train {
		trains = append(trains, part{ds, -1})
	}
	for _, ds := range val {
		vals = append(vals, part{ds, -1})
	}
	for i, ds := range split {
		tr, va := ds.SplitByGroup(valFraction, seed)
		trains = append(trains, part{tr, i})
		vals = append(vals, part{va, i})
	}
	a := &Assembly{DroppedTrain: map[string]int{}, DroppedVal: map[string]int{}}

	// Patient ids each split set uses per repository (both of its parts).
	splitPatients := make([]map[string]bool, len(split))
	for i, ds := range split {
		splitPatients[i] = map[string]bool{}
		for _, e := range ds.Images {
			splitPatients[i][scopeOf(e)+"|"+patientOf(e)] = true
		}
	}
	// A validation image of split set i is unsafe when a training set from
	// elsewhere holds its repository with patient ids none of which split
	// set i uses for that repository.
	incompatible := map[string]bool{} // "i|repo"
	for _, tp := range trains {
		repoIDs := map[string][]string{} // scope -> patient ids
		for _, e := range tp.ds.Images {
			repoIDs[scopeOf(e)] = append(repoIDs[scopeOf(e)], patientOf(e))
		}
		for i := range split {
			if tp.owner == i {
				continue
			}
			for repo, ids := range repoIDs {
				shared := false
				for _, id := range ids {
					if splitPatients[i][repo+"|"+id] {
						shared = true
						break
					}
				}
				hasRepo := false
				for k := range splitPatients[i] {
					if strings.HasPrefix(k, repo+"|") {
						hasRepo = true
						break
					}
				}
				if hasRepo && !shared {
					incompatible[fmt.Sprint(i)+"|"+repo] = true
				}
			}
		}
	}
	var valSets []*Dataset
	valSources, valPatients := map[string]bool{}, map[string]bool{}
	for _, vp := range vals {
		kept := vp.ds
		if vp.owner >= 0 {
			kept = vp.ds.Subset(func(e *ImageEntry) bool {
				if incompatible[fmt.Sprint(vp.owner)+"|"+scopeOf(e)] {
					a.DroppedVal[vp.ds.Dir]++
					return false
				}
				return true
			})
		}
		for _, e := range kept.Images {
			valSources[sourceKey(e)] = true
			valPatients[scopeOf(e)+"|"+patientOf(e)] = true
		}
		valSets = append(valSets, kept)
	}
	var trainSets []*Dataset
	for _, tp := range trains {
		trainSets = append(trainSets, tp.ds.Subset(func(e *ImageEntry) bool {
			if (sourceKey(e) != "" && valSources[sourceKey(e)]) || (scopeOf(e) != "" && valPatients[scopeOf(e)+"|"+patientOf(e)]) {
				a.DroppedTrain[tp.ds.Dir]++
				return false
			}
			return true
		}))
	}
	var err error
	if a.Train, err = Merge(trainSets...); err != nil {
		return nil, err
	}
	if a.Val, err = Merge(valSets...); err != nil {
		return nil, err
	}
	return a, nil
}

// Summary lists what Assemble dropped, one line per set, sorted.
func (a *Assembly) Summary() []string {
	var lines []string
	for dir, n := range a.DroppedTrain {
		lines = append(lines, fmt.Sprintf("%s: %d training images dropped (same source file or patient as a validation image)", dir, n))
	}
	for dir, n := range a.DroppedVal {
		lines = append(lines, fmt.Sprintf("%s: %d validation images dropped (a training set holds their repository with unmatched patient ids)", dir, n))
	}
	sort.Strings(lines)
	return lines
}

// sourceKey is the image's source file without the commit ("owner/repo:path").
func sourceKey(e *ImageEntry) string {
	s := e.Meta.Source
	if i := strings.LastIndex(s, "@"); i > strings.Index(s, ":") && i > 0 {
		s = s[:i]
	}
	return s
}

// scopeOf is where patient ids of the image's source are comparable: its
// repository and the first two folders of its path ("owner/repo:a/b"), which
// keeps apart datasets that share a repository; "" without a source.
func scopeOf(e *ImageEntry) string {
	src := sourceKey(e)
	i := strings.Index(src, ":")
	if i <= 0 {
		return ""
	}
	parts := strings.Split(src[i+1:], "/")
	if len(parts) > 3 {
		parts = parts[:2]
	} else if len(parts) > 1 {
		parts = parts[:len(parts)-1]
	}
	return src[:i] + ":" + strings.Join(parts, "/")
}

// patientOf is the image's group without its "<set>:" prefix.
func patientOf(e *ImageEntry) string {
	g := e.Group
	if i := strings.Index(g, ":"); i >= 0 {
		g = g[i+1:]
	}
	return g
}
