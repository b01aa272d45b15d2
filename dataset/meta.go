package dataset

import "encoding/json"

// ImageMeta is the meta.json record of one image.
//
// Sizes are [width, height] in pixels, as in the SA-Med2D demo's meta.json.
// Keys of the record that ImageMeta does not name are kept in Other and
// written back unchanged, so reading and rewriting meta.json loses nothing.
type ImageMeta struct {
	// Modality is one of Modalities (normalised on read and write), or
	// Unknown.
	Modality string
	// Group identifies the patient, case or video sequence; SplitByGroup
	// never puts one group in both splits. Empty means the image is its
	// own group.
	Group string
	// Source is where the image came from, e.g. "owner/repo:path@commit".
	Source string
	// License is the licence of the image and its masks as recorded.
	License string
	// Dataset is the name of the source dataset.
	Dataset string
	// MaskSource describes where the masks came from.
	MaskSource string
	// LabelNote describes how the labels were made.
	LabelNote string
	// OriginalSize is the [width, height] of the source image; zero when
	// unknown.
	OriginalSize [2]int
	// StoredSize is the [width, height] of the stored PNG.
	StoredSize [2]int
	// Extra holds free-form per-image details (the "extra" key).
	Extra map[string]any
	// Other holds any further keys of the record, verbatim.
	Other map[string]json.RawMessage
}

// metaJSON is the on-disk shape of ImageMeta's named keys.
type metaJSON struct {
	Modality     string         `json:"modality"`
	Group        string         `json:"group,omitempty"`
	Source       string         `json:"source,omitempty"`
	License      string         `json:"license,omitempty"`
	Dataset      string         `json:"dataset,omitempty"`
	MaskSource   string         `json:"mask_source,omitempty"`
	LabelNote    string         `json:"label_note,omitempty"`
	OriginalSize *[2]int        `json:"original_size,omitempty"`
	StoredSize   *[2]int        `json:"stored_size,omitempty"`
	Extra        map[string]any `json:"extra,omitempty"`
}

var namedMetaKeys = map[string]bool{
	"modality": true, "group": true, "source": true, "license": true, "dataset": true,
	"mask_source": true, "label_note": true, "original_size": true, "stored_size": true, "extra": true,
}

// MarshalJSON writes the record with snake_case keys, omitting empty fields.
func (m ImageMeta) MarshalJSON() ([]byte, error) {
	j := metaJSON{
		Modality: m.Modality, Group: m.Group, Source: m.Source, License: m.License,
		Dataset: m.Dataset, MaskSource: m.MaskSource, LabelNote: m.LabelNote, Extra: m.Extra,
	}
	if m.OriginalSize != [2]int{} {
		s := m.OriginalSize
		j.OriginalSize = &s
	}
	if m.StoredSize != [2]int{} {
		s := m.StoredSize
		j.StoredSize = &s
	}
	named, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	if len(m.Other) == 0 {
		return named, nil
	}
	all := map[string]json.RawMessage{}
	if err := json.Unmarshal(named, &all); err != nil {
		return nil, err
	}
	for k, v := range m.Other {
		if namedMetaKeys[k] {
			continue
		}
		all[k] = v
	}
	return json.Marshal(all)
}

// UnmarshalJSON reads a meta.json record.
func (m *ImageMeta) UnmarshalJSON(data []byte) error {
	var j metaJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	*m = ImageMeta{
		Modality: j.Modality, Group: j.Group, Source: j.Source, License: j.License,
		Dataset: j.Dataset, MaskSource: j.MaskSource, LabelNote: j.LabelNote, Extra: j.Extra,
	}
	if j.OriginalSize != nil {
		m.OriginalSize = *j.OriginalSize
	}
	if j.StoredSize != nil {
		m.StoredSize = *j.StoredSize
	}
	for k, v := range all {
		if !namedMetaKeys[k] {
			if m.Other == nil {
				m.Other = map[string]json.RawMessage{}
			}
			m.Other[k] = v
		}
	}
	return nil
}

// metaFile is the on-disk shape of meta.json.
type metaFile struct {
	Images  map[string]ImageMeta `json:"images"`
	Classes []string             `json:"classes"`
}
