package textembed

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ReadClassList returns the class vocabulary of a dataset: the "classes"
// array of its meta.json. path is the dataset directory (meta.json is read
// from it) or the JSON file itself.
func ReadClassList(path string) ([]string, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "meta.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read class list: %w", err)
	}
	var meta struct {
		Classes *[]string `json:"classes"`
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return nil, fmt.Errorf("read class list %s: %w", path, err)
	}
	if meta.Classes == nil {
		return nil, fmt.Errorf("read class list %s: no \"classes\" array", path)
	}
	classes := *meta.Classes
	if len(classes) == 0 {
		return nil, fmt.Errorf("read class list %s: \"classes\" is empty", path)
	}
	for i, c := range classes {
		if strings.TrimSpace(c) == "" {
			return nil, fmt.Errorf("read class list %s: class %d is empty", path, i)
		}
	}
	return classes, nil
}

// ReadDescriptions reads a JSON object mapping class names to description
// texts, for classes the knowledge lacks (see WithDescriptions).
func ReadDescriptions(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read descriptions: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read descriptions %s: want a JSON object of class name to text: %w", path, err)
	}
	if len(m) == 0 {
		return nil, errors.New("read descriptions " + path + ": no entries")
	}
	return m, nil
}
