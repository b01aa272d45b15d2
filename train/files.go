package train

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"math"

	"os"
	"path/filepath"
	"sort"
	"strconv"
)

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// writeJSONAtomic writes v as indented JSON through a temporary file.
func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeHistory writes RUN_DIR/history.csv (one row per epoch: train and
// validation terms) and RUN_DIR/loss.png.
func writeHistory(dir string, hist []EpochStats) error {
	keys := map[string]bool{}
	for _, h := range hist {
		for k := range h.Train {
			keys["train_"+k] = true
		}
		for k := range h.Val {
			keys["val_"+k] = true
		}
	}
	cols := make([]string, 0, len(keys))
	for k := range keys {
		cols = append(cols, k)
	}
	sort.Strings(cols)
	path := filepath.Join(dir, "history.csv")
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write(append([]string{"epoch", "learning_rate", "seconds"}, cols...))
	for _, h := range hist {
		row := []string{strconv.Itoa(h.Epoch), strconv.FormatFloat(h.LearningRate, 'g', 6, 64), strconv.FormatFloat(h.Seconds, 'f', 1, 64)}
		for _, c := range cols {
			var v float64
			var ok bool
			if len(c) > 6 && c[:6] == "train_" {
				v, ok = h.Train[c[6:]]
			} else {
				v, ok = h.Val[c[4:]]
			}
			if ok {
				row = append(row, strconv.FormatFloat(v, 'g', 6, 64))
			} else {
				row = append(row, "")
			}
		}
		_ = w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return err
	}
	return plotHistory(filepath.Join(dir, "loss.png"), hist)
}

// series is a named line of a plot.
type series struct {
	name   string
	values []float64
}

func historySeries(hist []EpochStats) []series {
	get := func(name string, val bool) series {
		s := series{name: name}
		for _, h := range hist {
			m := h.Train
			if val {
				m = h.Val
			}
			v, ok := m[name]
			if !ok {
				v = math.NaN()
			}
			s.values = append(s.values, v)
		}
		if val {
			s.name = "val " + name
		} else {
			s.name = "train " + name
		}
		return s
	}
	return []series{get("total", false), get("binary", false), get("semantic", false), get("total", true), get("dsc", true)}
}
