package segsam

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gomlx/compute"

	"github.com/segsam/segsam/checkpoint"
)

// A segsam checkpoint is one .safetensors file: every weight under its
// state_dict-style name (SAM's keys unchanged, the new parts beside them,
// the text embeddings f_t included), and in its metadata the format marker
// and the JSON Config (architecture, parts, class vocabulary, identity of the
// text embeddings). predict, eval and serve need nothing else.
const (
	metaFormat  = "format"
	metaConfig  = "segsam_config"
	formatValue = "segsam/1"
)

// ErrNotSEGSAM is returned (wrapped) by Load for a checkpoint that is not a
// segsam checkpoint (e.g. an official SAM .pth).
var ErrNotSEGSAM = errors.New("not a segsam checkpoint")

// Save writes the model to a segsam checkpoint (atomically: a failed save
// leaves an existing file untouched).
func (m *Model) Save(path string, extra map[string]string) error {
	ts, err := m.Tensors()
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	cfg, err := json.Marshal(m.Config)
	if err != nil {
		return err
	}
	meta := map[string]string{metaFormat: formatValue, metaConfig: string(cfg)}
	for k, v := range extra {
		if _, taken := meta[k]; !taken {
			meta[k] = v
		}
	}
	return checkpoint.SaveSafetensors(path, ts, meta)
}

// IsCheckpoint reports whether a loaded state dict is a segsam checkpoint.
func IsCheckpoint(sd *checkpoint.StateDict) bool { return sd.Metadata[metaFormat] == formatValue }

// ConfigOf reads the configuration stored in a segsam checkpoint.
func ConfigOf(sd *checkpoint.StateDict) (Config, error) {
	if !IsCheckpoint(sd) {
		return Config{}, ErrNotSEGSAM
	}
	var cfg Config
	if err := json.Unmarshal([]byte(sd.Metadata[metaConfig]), &cfg); err != nil {
		return Config{}, fmt.Errorf("segsam checkpoint config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("segsam checkpoint config: %w", err)
	}
	return cfg, nil
}

// Load reads a segsam checkpoint.
func Load(path string, backend compute.Backend) (*Model, error) {
	sd, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	return FromStateDict(sd, backend)
}

// FromStateDict builds a model from a loaded segsam checkpoint.
func FromStateDict(sd *checkpoint.StateDict, backend compute.Backend) (*Model, error) {
	cfg, err := ConfigOf(sd)
	if err != nil {
		return nil, err
	}
	m, err := New(cfg, backend)
	if err != nil {
		return nil, err
	}
	if err := m.SetWeights(sd, false); err != nil {
		return nil, err
	}
	return m, nil
}

func loadStateDict(path string) (*checkpoint.StateDict, error) { return checkpoint.Load(path) }

// WriteModalityClasses copies the segsam checkpoint in to out with table as
// its configuration's ModalityClasses (the modality prior, modality.go):
// weights and the other metadata unchanged. For checkpoints trained before
// training recorded the table; in and out may be the same file.
func WriteModalityClasses(in, out string, table map[string][]string) error {
	sd, err := checkpoint.Load(in)
	if err != nil {
		return err
	}
	cfg, err := ConfigOf(sd)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	cfg.ModalityClasses = table
	js, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	meta := make(map[string]string, len(sd.Metadata))
	for k, v := range sd.Metadata {
		meta[k] = v
	}
	meta[metaConfig] = string(js)
	if err := checkpoint.SaveSafetensors(out, sd.Tensors, meta); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}
