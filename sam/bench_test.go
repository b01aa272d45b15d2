package sam

import (
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
)

// Benchmarks with random weights (no real checkpoint is needed for timing).
// The first call of each graph (build + compile + weight initialisation) runs
// before the timer starts; `segsam bench` reports it separately.
//
//	go test ./sam -run '^$' -bench . -benchtime 3x

func benchModel(b *testing.B, arch string) *Model {
	b.Helper()
	cfg, err := Preset(arch)
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewModel(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func BenchmarkImageEncoder(b *testing.B) {
	for _, arch := range []string{"sammed2d_vit_b", "vit_b", "litemedsam", "mobilesam_vit_t"} {
		b.Run(arch, func(b *testing.B) {
			m := benchModel(b, arch)
			s := m.Config.ImageEncoder.ImgSize
			input := tensors.FromFlatDataAndDimensions(make([]float32, 3*s*s), 1, 3, s, s)
			if _, err := m.Encode(input); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.Encode(input); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPredictBox(b *testing.B) {
	for _, arch := range []string{"sammed2d_vit_b", "vit_b", "litemedsam", "mobilesam_vit_t"} {
		b.Run(arch, func(b *testing.B) {
			cfg, err := Preset(arch)
			if err != nil {
				b.Fatal(err)
			}
			m, err := NewModel(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			g := cfg.TokenGrid()
			emb := tensors.FromFlatDataAndDimensions(make([]float32, cfg.PromptEncoder.EmbedDim*g*g), 1, cfg.PromptEncoder.EmbedDim, g, g)
			p := NewPredictor(m)
			s := cfg.ImageEncoder.ImgSize
			if err := p.SetEmbedding(emb, s, s); err != nil {
				b.Fatal(err)
			}
			box := Prompt{Boxes: []Box{{float64(s) / 4, float64(s) / 4, float64(s) * 3 / 4, float64(s) * 3 / 4}}}
			if _, err := p.Predict(box); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.Predict(box); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
