package main

import (
	"github.com/segsam/segsam/models"
	"github.com/segsam/segsam/segsam"
)

// modelFlags are the flags that choose a model: a checkpoint (a segsam
// checkpoint, or an official SAM / SAM-Med2D / MedSAM one) and, for the
// latter, its architecture (a preset or a JSON config; inferred from the
// weights when neither is given).
type modelFlags struct {
	checkpoint, arch, config string
}

func (f *modelFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	fs.StringVar(&f.checkpoint, "checkpoint", "", "model: a segsam checkpoint (.safetensors), or SAM / SAM-Med2D / MobileSAM / LiteMedSAM weights (.pth, .safetensors); default: the built-in "+models.DefaultName)
	fs.StringVar(&f.arch, "arch", "", "architecture of SAM weights: vit_b, vit_l, vit_h, sammed2d_vit_b, mobilesam_vit_t, litemedsam (default: inferred from the weights)")
	fs.StringVar(&f.config, "config", "", "architecture of SAM weights as a JSON config (the fixtures' config.json schema)")
}

// load builds the predictor the flags describe.
func (f *modelFlags) load() (*segsam.Predictor, error) {
	if f.arch != "" && f.config != "" {
		return nil, usageErrorf("give --arch or --config, not both")
	}
	return loadPredictor(f.checkpoint, f.arch, f.config)
}

// loadPredictor loads a checkpoint for prediction; an unknown architecture
// name is a usage error.
func loadPredictor(checkpoint, arch, config string) (*segsam.Predictor, error) {
	if checkpoint == "" {
		if arch != "" || config != "" {
			return nil, usageErrorf("--arch and --config describe the weights of --checkpoint; give --checkpoint too")
		}
		m, err := models.Default(nil)
		if err != nil {
			return nil, err
		}
		return segsam.NewPredictor(m), nil
	}
	if arch != "" {
		if _, err := presetOK(arch); err != nil {
			return nil, usageErrorf("%v", err)
		}
	}
	return segsam.LoadAny(checkpoint, arch, config)
}
