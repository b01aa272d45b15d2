package sam

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Family says which official code a model follows for pre- and
// post-processing: SAM (ResizeLongestSide + PIL bilinear, pad, crop) or
// SAM-Med2D (normalise, OpenCV-nearest resize to S×S, best-of-3 multimask).
type Family string

const (
	// FamilySAM is facebookresearch/segment-anything (also MedSAM).
	FamilySAM Family = "sam"
	// FamilySAMMed2D is OpenGVLab/SAM-Med2D.
	FamilySAMMed2D Family = "sam_med2d"
)

// ImageEncoderConfig configures the ViT image encoder (ImageEncoderViT).
type ImageEncoderConfig struct {
	ImgSize           int     `json:"img_size"`
	PatchSize         int     `json:"patch_size"`
	InChans           int     `json:"in_chans"`
	EmbedDim          int     `json:"embed_dim"`
	Depth             int     `json:"depth"`
	NumHeads          int     `json:"num_heads"`
	MLPRatio          float64 `json:"mlp_ratio"`
	OutChans          int     `json:"out_chans"`
	QKVBias           bool    `json:"qkv_bias"`
	UseAbsPos         bool    `json:"use_abs_pos"`
	UseRelPos         bool    `json:"use_rel_pos"`
	WindowSize        int     `json:"window_size"`
	GlobalAttnIndexes []int   `json:"global_attn_indexes"`
	// Adapter is set for SAM-Med2D's encoders (an Adapter_Layer in every block).
	Adapter *AdapterConfig `json:"adapter,omitempty"`
}

// AdapterConfig configures SAM-Med2D's encoder adapters.
type AdapterConfig struct {
	// MLPRatio sets the channel-gate hidden size: int(embed_dim * ratio).
	MLPRatio float64 `json:"mlp_ratio"`
}

// PromptEncoderConfig configures the prompt encoder.
type PromptEncoderConfig struct {
	EmbedDim           int    `json:"embed_dim"`
	ImageEmbeddingSize [2]int `json:"image_embedding_size"`
	InputImageSize     [2]int `json:"input_image_size"`
	MaskInChans        int    `json:"mask_in_chans"`
}

// TransformerConfig configures the two-way transformer of a mask decoder.
type TransformerConfig struct {
	Depth                   int `json:"depth"`
	EmbeddingDim            int `json:"embedding_dim"`
	MLPDim                  int `json:"mlp_dim"`
	NumHeads                int `json:"num_heads"`
	AttentionDownsampleRate int `json:"attention_downsample_rate"`
}

// MaskDecoderConfig configures the mask decoder (the paper's Dec_sag).
type MaskDecoderConfig struct {
	TransformerDim      int               `json:"transformer_dim"`
	NumMultimaskOutputs int               `json:"num_multimask_outputs"`
	IoUHeadDepth        int               `json:"iou_head_depth"`
	IoUHeadHiddenDim    int               `json:"iou_head_hidden_dim"`
	Transformer         TransformerConfig `json:"transformer"`
}

// Config describes a SAM-family model. Its JSON form is the schema of the
// reference fixtures' config.json (unknown fields are ignored).
type Config struct {
	Name          string              `json:"name,omitempty"`
	Family        Family              `json:"model_type"`
	ImageEncoder  ImageEncoderConfig  `json:"image_encoder"`
	PromptEncoder PromptEncoderConfig `json:"prompt_encoder"`
	MaskDecoder   MaskDecoderConfig   `json:"mask_decoder"`
	PixelMean     [3]float32          `json:"pixel_mean"`
	PixelStd      [3]float32          `json:"pixel_std"`
	MaskThreshold float32             `json:"mask_threshold"`
	// TinyViT, when set, replaces the ViT image encoder (MobileSAM,
	// LiteMedSAM); ImageEncoder then only gives img_size, in_chans and
	// out_chans (the neck's width).
	TinyViT *TinyViTConfig `json:"tiny_vit,omitempty"`
}

// Layer-norm epsilons of the official code (fixed, not configurable there).
const (
	encoderNormEps   = 1e-6 // encoder blocks (build_sam passes 1e-6)
	layerNorm2dEps   = 1e-6 // LayerNorm2d: neck, mask down-scaling, output up-scaling
	DecoderNormEps   = 1e-5 // two-way transformer nn.LayerNorm default
	adapterNormEps   = 1e-5 // SAM-Med2D Adapter_Layer nn.LayerNorm default
	defaultMaskInDim = 16
)

var (
	samPixelMean = [3]float32{123.675, 116.28, 103.53}
	samPixelStd  = [3]float32{58.395, 57.12, 57.375}
)

func samConfig(name string, family Family, imgSize, embedDim, depth, heads int, global []int, adapter bool) Config {
	const promptDim = 256
	grid := imgSize / 16
	c := Config{
		Name:   name,
		Family: family,
		ImageEncoder: ImageEncoderConfig{
			ImgSize: imgSize, PatchSize: 16, InChans: 3, EmbedDim: embedDim, Depth: depth,
			NumHeads: heads, MLPRatio: 4, OutChans: promptDim, QKVBias: true,
			UseAbsPos: true, UseRelPos: true, WindowSize: 14, GlobalAttnIndexes: global,
		},
		PromptEncoder: samPromptEncoder(promptDim, grid, imgSize),
		MaskDecoder:   samMaskDecoder(promptDim),
		PixelMean:     samPixelMean,
		PixelStd:      samPixelStd,
	}
	if adapter {
		c.ImageEncoder.Adapter = &AdapterConfig{MLPRatio: 0.25}
	}
	return c
}

// Presets are the named architectures of the official builders.
var presets = map[string]func() Config{
	"vit_b": func() Config { return samConfig("vit_b", FamilySAM, 1024, 768, 12, 12, []int{2, 5, 8, 11}, false) },
	"vit_l": func() Config { return samConfig("vit_l", FamilySAM, 1024, 1024, 24, 16, []int{5, 11, 17, 23}, false) },
	"vit_h": func() Config { return samConfig("vit_h", FamilySAM, 1024, 1280, 32, 16, []int{7, 15, 23, 31}, false) },
	"sammed2d_vit_b": func() Config {
		return samConfig("sammed2d_vit_b", FamilySAMMed2D, 256, 768, 12, 12, []int{2, 5, 8, 11}, true)
	},
}

// PresetNames lists the named architectures, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns the configuration of a named architecture: vit_b, vit_l,
// vit_h (SAM at 1024) or sammed2d_vit_b (SAM-Med2D at 256 with adapters).
func Preset(name string) (Config, error) {
	f, ok := presets[strings.ToLower(name)]
	if !ok {
		return Config{}, fmt.Errorf("unknown architecture %q (known: %s)", name, strings.Join(PresetNames(), ", "))
	}
	return f(), nil
}

// LoadConfig reads a JSON configuration (the schema of the fixtures'
// config.json) and validates it.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	var c Config
	var probe struct {
		ImageEncoder struct {
			EmbedDims []int `json:"embed_dims"`
		} `json:"image_encoder"`
	}
	if err := json.Unmarshal(data, &probe); err == nil && len(probe.ImageEncoder.EmbedDims) > 0 {
		// A TinyViT constructor's arguments (MobileSAM / LiteMedSAM).
		if c, err = tinyViTConfigFromJSON(data); err != nil {
			return Config{}, fmt.Errorf("load config %s: %w", path, err)
		}
	} else if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", path, err)
	}
	if c.Family == "" {
		c.Family = FamilySAM
	}
	if c.PixelStd == ([3]float32{}) {
		c.PixelMean, c.PixelStd = samPixelMean, samPixelStd
	}
	if c.Name == "" {
		c.Name = filepath.Base(path)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("load config %s: %w", path, err)
	}
	return c, nil
}

// Validate checks that the configuration describes a buildable model.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	e := c.ImageEncoder
	if c.Family != FamilySAM && c.Family != FamilySAMMed2D && c.Family != FamilyLiteMedSAM {
		bad("model_type %q is not %q, %q or %q", c.Family, FamilySAM, FamilySAMMed2D, FamilyLiteMedSAM)
	}
	if c.TinyViT != nil {
		return c.validateTinyViT()
	}
	if e.ImgSize <= 0 || e.PatchSize <= 0 || e.ImgSize%e.PatchSize != 0 {
		bad("image_encoder: img_size %d must be a positive multiple of patch_size %d", e.ImgSize, e.PatchSize)
	}
	if e.InChans != 3 {
		bad("image_encoder: in_chans must be 3, got %d", e.InChans)
	}
	if e.EmbedDim <= 0 || e.NumHeads <= 0 || e.EmbedDim%e.NumHeads != 0 {
		bad("image_encoder: embed_dim %d must be a positive multiple of num_heads %d", e.EmbedDim, e.NumHeads)
	}
	if e.Depth <= 0 || e.OutChans <= 0 || e.MLPRatio <= 0 {
		bad("image_encoder: depth, out_chans and mlp_ratio must be positive")
	}
	for _, i := range e.GlobalAttnIndexes {
		if i < 0 || i >= e.Depth {
			bad("image_encoder: global attention index %d outside 0..%d", i, e.Depth-1)
		}
	}
	if e.WindowSize < 0 {
		bad("image_encoder: negative window_size")
	}
	if e.Adapter != nil && (e.ImgSize/e.PatchSize)%2 != 0 {
		bad("image_encoder: adapters need an even token grid, got %d", e.ImgSize/e.PatchSize)
	}
	grid := 0
	if e.PatchSize > 0 {
		grid = e.ImgSize / e.PatchSize
	}
	errs = append(errs, c.validatePromptDecoder(grid))
	return errors.Join(errs...)
}

// validatePromptDecoder checks the prompt encoder and the mask decoder
// against an image embedding of grid x grid.
func (c Config) validatePromptDecoder(grid int) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	e := c.ImageEncoder
	p := c.PromptEncoder
	if p.ImageEmbeddingSize != [2]int{grid, grid} {
		bad("prompt_encoder: image_embedding_size %v must be the token grid [%d %d]", p.ImageEmbeddingSize, grid, grid)
	}
	if p.InputImageSize != [2]int{e.ImgSize, e.ImgSize} {
		bad("prompt_encoder: input_image_size %v must be [img_size img_size]", p.InputImageSize)
	}
	if p.EmbedDim != e.OutChans || p.EmbedDim%4 != 0 {
		bad("prompt_encoder: embed_dim %d must equal image_encoder.out_chans %d and be a multiple of 4", p.EmbedDim, e.OutChans)
	}
	if p.MaskInChans <= 0 {
		bad("prompt_encoder: mask_in_chans must be positive")
	}
	d := c.MaskDecoder
	t := d.Transformer
	if d.TransformerDim != p.EmbedDim || t.EmbeddingDim != d.TransformerDim || d.TransformerDim%8 != 0 {
		bad("mask_decoder: transformer_dim %d and transformer.embedding_dim %d must equal the prompt embed_dim %d (a multiple of 8)", d.TransformerDim, t.EmbeddingDim, p.EmbedDim)
	}
	if d.NumMultimaskOutputs <= 0 || d.IoUHeadDepth <= 0 || d.IoUHeadHiddenDim <= 0 {
		bad("mask_decoder: num_multimask_outputs, iou_head_depth, iou_head_hidden_dim must be positive")
	}
	if t.Depth <= 0 || t.NumHeads <= 0 || t.MLPDim <= 0 || t.AttentionDownsampleRate <= 0 ||
		t.EmbeddingDim%t.NumHeads != 0 || (t.EmbeddingDim/t.AttentionDownsampleRate)%t.NumHeads != 0 {
		bad("mask_decoder.transformer: depth %d, heads %d, mlp_dim %d, downsample rate %d do not fit embedding_dim %d",
			t.Depth, t.NumHeads, t.MLPDim, t.AttentionDownsampleRate, t.EmbeddingDim)
	}
	for i, s := range c.PixelStd {
		if s <= 0 {
			bad("pixel_std[%d] must be positive", i)
		}
	}
	return errors.Join(errs...)
}

// TokenGrid is the side of the image embedding (img_size / patch_size, or
// the TinyViT's last stage).
func (c Config) TokenGrid() int {
	if c.TinyViT != nil {
		return c.TinyViT.Grid()
	}
	return c.ImageEncoder.ImgSize / c.ImageEncoder.PatchSize
}

// NumMaskTokens is the number of mask tokens (multimask outputs + 1).
func (c Config) NumMaskTokens() int { return c.MaskDecoder.NumMultimaskOutputs + 1 }

// LowResSize is the side of the decoder's low-resolution mask logits (4× the grid).
func (c Config) LowResSize() int { return 4 * c.TokenGrid() }

func (c Config) isGlobal(block int) bool {
	for _, i := range c.ImageEncoder.GlobalAttnIndexes {
		if i == block {
			return true
		}
	}
	return false
}

// samPromptEncoder is the official SAM prompt encoder of the released
// models: promptDim channels for a grid×grid embedding of an imgSize input.
func samPromptEncoder(promptDim, grid, imgSize int) PromptEncoderConfig {
	return PromptEncoderConfig{
		EmbedDim: promptDim, ImageEmbeddingSize: [2]int{grid, grid},
		InputImageSize: [2]int{imgSize, imgSize}, MaskInChans: defaultMaskInDim,
	}
}

// samMaskDecoder is the official SAM mask decoder of the released models
// (two-way transformer of depth 2, 8 heads, MLP 2048, 3 multimask outputs).
func samMaskDecoder(promptDim int) MaskDecoderConfig {
	return MaskDecoderConfig{
		TransformerDim: promptDim, NumMultimaskOutputs: 3, IoUHeadDepth: 3, IoUHeadHiddenDim: 256,
		Transformer: TransformerConfig{Depth: 2, EmbeddingDim: promptDim, MLPDim: 2048, NumHeads: 8, AttentionDownsampleRate: 2},
	}
}
