package main

import (
	"fmt"

	"github.com/segsam/segsam/sam"
)

// modelFlags are the flags that choose a model: a checkpoint and its
// architecture (a preset or a JSON config; inferred from the weights when
// neither is given).
type modelFlags struct {
	checkpoint, arch, config string
}

func (f *modelFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	fs.StringVar(&f.checkpoint, "checkpoint", "", "model weights: .pth (torch.save, zip or legacy) or .safetensors")
	fs.StringVar(&f.arch, "arch", "", "architecture preset: vit_b, vit_l, vit_h, sammed2d_vit_b (default: inferred from the weights)")
	fs.StringVar(&f.config, "config", "", "architecture as a JSON config (the fixtures' config.json schema)")
}

// load builds the model the flags describe.
func (f *modelFlags) load() (*sam.Model, error) {
	if f.checkpoint == "" {
		return nil, usageErrorf("--checkpoint is required")
	}
	if f.arch != "" && f.config != "" {
		return nil, usageErrorf("give --arch or --config, not both")
	}
	var cfg sam.Config
	var err error
	switch {
	case f.arch != "":
		if cfg, err = sam.Preset(f.arch); err != nil {
			return nil, usageErrorf("%v", err)
		}
	case f.config != "":
		if cfg, err = sam.LoadConfig(f.config); err != nil {
			return nil, err
		}
	default:
		m, err := sam.LoadInferred(f.checkpoint, nil)
		if err != nil {
			return nil, fmt.Errorf("%w (give --arch or --config if the architecture cannot be inferred)", err)
		}
		return m, nil
	}
	return sam.Load(f.checkpoint, cfg, nil)
}
