package sam

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/checkpoint"
)

// realLayout reads a checkpoint_keys file (the state_dict layout of a
// released checkpoint) as a StateDict of empty tensors.
func realLayout(t *testing.T, file string) *checkpoint.StateDict {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures, "checkpoint_keys", file))
	if err != nil {
		t.Fatal(err)
	}
	var keys struct {
		Tensors map[string]struct {
			Shape []int  `json:"shape"`
			DType string `json:"dtype"`
		} `json:"tensors"`
	}
	if err := json.Unmarshal(data, &keys); err != nil {
		t.Fatal(err)
	}
	sd := &checkpoint.StateDict{}
	for name, k := range keys.Tensors {
		sd.Tensors = append(sd.Tensors, &checkpoint.Tensor{Name: name, Shape: k.Shape, DType: k.DType})
	}
	return sd
}

func TestTinyViTPresetsMatchReleasedLayouts(t *testing.T) {
	for _, c := range []struct {
		arch, file string
		family     Family
		head       bool
	}{
		{"mobilesam_vit_t", "mobile_sam_vit_t.json", FamilySAM, true},
		{"litemedsam", "lite_medsam.json", FamilyLiteMedSAM, false},
	} {
		t.Run(c.arch, func(t *testing.T) {
			sd := realLayout(t, c.file)
			cfg, err := Preset(c.arch)
			if err != nil {
				t.Fatal(err)
			}
			vars, err := ExpectedVariables(cfg)
			if err != nil {
				t.Fatal(err)
			}
			// Every variable but the unused head and the BatchNorm counters is
			// in the release, and nothing else.
			kept := ModelTensors(cfg, sd)
			if err := kept.Match(vars); err != nil {
				t.Error(err)
			}
			dropped := len(sd.Tensors) - len(kept.Tensors)
			heads := 0
			for _, n := range sd.Names() {
				if isTinyViTUnused(n) {
					heads++
				}
			}
			if c.head != (heads > 0) {
				t.Errorf("release has %d ImageNet-head tensors, want head=%v", heads, c.head)
			}
			if dropped == heads {
				t.Errorf("no num_batches_tracked dropped (dropped %d)", dropped)
			}
			// The architecture inferred from the layout is the preset.
			inf, err := InferConfig(sd)
			if err != nil {
				t.Fatal(err)
			}
			if inf.Family != c.family {
				t.Errorf("inferred family %s, want %s", inf.Family, c.family)
			}
			// Stage 0 (MBConv) has no heads or window.
			inf.Name = cfg.Name
			it, ct := *inf.TinyViT, *cfg.TinyViT
			it.NumHeads, it.WindowSizes, ct.NumHeads, ct.WindowSizes = it.NumHeads[1:], it.WindowSizes[1:], ct.NumHeads[1:], ct.WindowSizes[1:]
			for i := 1; i < len(it.EmbedDims); i++ {
				if it.mlpHidden(i) != ct.mlpHidden(i) {
					t.Errorf("stage %d MLP width %d, want %d", i, it.mlpHidden(i), ct.mlpHidden(i))
				}
			}
			if it.mbConvHidden() != ct.mbConvHidden() {
				t.Errorf("MBConv width %d, want %d", it.mbConvHidden(), ct.mbConvHidden())
			}
			it.MLPHidden, it.MBConvHidden = nil, 0
			inf.TinyViT, cfg.TinyViT = nil, nil
			if got, want := fmt.Sprintf("%+v %+v", inf, it), fmt.Sprintf("%+v %+v", cfg, ct); got != want {
				t.Errorf("inferred\n%s\nwant\n%s", got, want)
			}
			inf.TinyViT = &it
			if g := inf.TokenGrid(); g != 64 || inf.LowResSize() != 256 {
				t.Errorf("embedding grid %d, low-res %d; want 64, 256", g, inf.LowResSize())
			}
		})
	}
}

// TestInferTinyViTVariants changes the released layout the ways further
// checkpoints may differ (widths incl. a last stage of 448, depths, heads,
// windows) and checks that the inferred architecture follows the weights.
func TestInferTinyViTVariants(t *testing.T) {
	base := realLayout(t, "lite_medsam.json")
	for _, c := range []struct {
		name  string
		edit  func(name string, shape []int) []int
		check func(tv *TinyViTConfig) error
	}{
		{"released", nil, func(tv *TinyViTConfig) error {
			return want(tv, []int{64, 128, 160, 320}, []int{2, 2, 6, 2}, []int{2, 4, 5, 10}, []int{7, 14, 7}, 256)
		}},
		{"window 5 in stage 1, 3 heads in stage 3", func(name string, s []int) []int {
			if strings.HasPrefix(name, "image_encoder.layers.1.") && strings.HasSuffix(name, "attention_biases") {
				return []int{s[0], 25}
			}
			if strings.HasPrefix(name, "image_encoder.layers.3.") && strings.HasSuffix(name, "attention_biases") {
				return []int{4, s[1]}
			}
			return s
		}, func(tv *TinyViTConfig) error {
			return want(tv, []int{64, 128, 160, 320}, []int{2, 2, 6, 2}, []int{2, 4, 5, 4}, []int{5, 14, 7}, 256)
		}},
		{"MLP widths that no single ratio gives (300, 500, 1000)", func(name string, s []int) []int {
			for stage, hidden := range map[string]int{"1": 300, "2": 500, "3": 1000} {
				p := "image_encoder.layers." + stage + "."
				switch {
				case strings.HasPrefix(name, p) && strings.HasSuffix(name, "mlp.fc1.weight"):
					return []int{hidden, s[1]}
				case strings.HasPrefix(name, p) && strings.HasSuffix(name, "mlp.fc1.bias"):
					return []int{hidden}
				case strings.HasPrefix(name, p) && strings.HasSuffix(name, "mlp.fc2.weight"):
					return []int{s[0], hidden}
				}
			}
			return s
		}, func(tv *TinyViTConfig) error {
			if got := fmt.Sprint(tv.mlpHidden(1), tv.mlpHidden(2), tv.mlpHidden(3)); got != "300 500 1000" {
				return fmt.Errorf("MLP widths %s, want 300 500 1000", got)
			}
			return nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sd := &checkpoint.StateDict{}
			for _, ten := range base.Tensors {
				s := ten.Shape
				if c.edit != nil {
					s = c.edit(ten.Name, s)
				}
				sd.Tensors = append(sd.Tensors, &checkpoint.Tensor{Name: ten.Name, Shape: s})
			}
			cfg, err := InferConfig(sd)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.check(cfg.TinyViT); err != nil {
				t.Error(err)
			}
			// The model built from the inferred architecture has exactly these weights.
			vars, err := ExpectedVariables(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := ModelTensors(cfg, sd).Match(vars); err != nil {
				t.Error(err)
			}
		})
	}
}

func want(tv *TinyViTConfig, dims, depths, heads, windows []int, img int) error {
	got := fmt.Sprint(tv.EmbedDims, tv.Depths, tv.NumHeads[1:], tv.WindowSizes[1:], tv.ImgSize)
	exp := fmt.Sprint(dims, depths, heads[1:], windows, img)
	if got != exp {
		return fmt.Errorf("inferred %s, want %s", got, exp)
	}
	return nil
}

func TestTinyViTStageGrids(t *testing.T) {
	for _, c := range []struct {
		img, kernel int
		dims        []int
		stages      []int
		out         int
	}{
		{1024, 3, []int{64, 128, 160, 320}, []int{256, 128, 64, 64}, 64},
		{256, 1, []int{64, 128, 160, 320}, []int{256, 128, 64, 64}, 64},
		{256, 1, []int{64, 128, 256, 448}, []int{256, 128, 64, 64}, 64},
		{256, 1, []int{96, 192, 384, 576}, []int{256, 128, 64, 64}, 64},
		{1024, 3, []int{16, 32, 40, 64}, []int{256, 128, 64, 32}, 32},
		{100, 3, []int{8, 16, 320}, []int{25, 13, 13}, 13},
	} {
		tv := &TinyViTConfig{ImgSize: c.img, PatchKernel: c.kernel, EmbedDims: c.dims}
		stages, out := tv.StageGrids()
		if fmt.Sprint(stages, out) != fmt.Sprint(c.stages, c.out) {
			t.Errorf("%d k%d %v: stages %v -> %d, want %v -> %d", c.img, c.kernel, c.dims, stages, out, c.stages, c.out)
		}
	}
}

func TestAttentionBiasIndex(t *testing.T) {
	for _, w := range []int{1, 2, 3, 7} {
		idx := attentionBiasIndex(w)
		n := w * w
		for i := range n {
			for j := range n {
				dy, dx := abs(i/w-j/w), abs(i%w-j%w)
				if got := int(idx[i*n+j]); got != dy*w+dx {
					t.Fatalf("w=%d idx[%d,%d] = %d, want |dy|*w+|dx| = %d", w, i, j, got, dy*w+dx)
				}
			}
		}
	}
}

func TestLoadTinyViTConfigJSON(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		img    int
		family Family
		kernel int
	}{{1024, FamilySAM, 3}, {256, FamilyLiteMedSAM, 1}} {
		js := fmt.Sprintf(`{"model": "m", "image_encoder": {"img_size": %d, "in_chans": 3, "num_classes": 1000,
		  "embed_dims": [16, 32, 40, 320], "depths": [2, 2, 3, 1], "num_heads": [1, 2, 2, 10], "window_sizes": [7, 7, 14, 7],
		  "mlp_ratio": 4.0, "mbconv_expand_ratio": 4.0, "local_conv_size": 3},
		  "prompt_encoder": {"embed_dim": 256, "image_embedding_size": [64, 64], "input_image_size": [%d, %d], "mask_in_chans": 16},
		  "mask_decoder": {"num_multimask_outputs": 3, "transformer": {"depth": 2, "embedding_dim": 256, "mlp_dim": 256, "num_heads": 8},
		  "transformer_dim": 256, "iou_head_depth": 3, "iou_head_hidden_dim": 256}}`, c.img, c.img, c.img)
		p := filepath.Join(dir, fmt.Sprintf("c%d.json", c.img))
		if err := os.WriteFile(p, []byte(js), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(p)
		if err != nil {
			t.Fatalf("%d: %v", c.img, err)
		}
		if cfg.TinyViT == nil || cfg.TinyViT.PatchKernel != c.kernel || cfg.Family != c.family || cfg.TokenGrid() != 64 {
			t.Errorf("%d: got %+v %+v", c.img, cfg, cfg.TinyViT)
		}
	}
	// A size that gives no 64x64 embedding needs patch_kernel.
	p := filepath.Join(dir, "bad.json")
	os.WriteFile(p, []byte(`{"image_encoder": {"img_size": 500, "embed_dims": [16, 32, 40, 320], "depths": [1,1,1,1], "num_heads": [1,1,1,1], "window_sizes": [7,7,7,7]}}`), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "patch_kernel") {
		t.Errorf("want a patch_kernel error, got %v", err)
	}
}
