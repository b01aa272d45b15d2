package sam

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/segsam/segsam/checkpoint"
)

// FamilyLiteMedSAM is bowang-lab/MedSAM's LiteMedSAM: TinyViT at 256 input,
// OpenCV INTER_AREA resize, min-max normalisation, integer boxes and one
// bilinear step back to the original size (CVPR24_LiteMedSAM_infer.py).
const FamilyLiteMedSAM Family = "litemedsam"

// TinyViTConfig configures a TinyViT image encoder (MobileSAM's and
// LiteMedSAM's tiny_vit_sam.TinyViT). Its JSON form is the official
// constructor's arguments (the fixtures' config.json "image_encoder").
type TinyViTConfig struct {
	ImgSize     int   `json:"img_size"`
	InChans     int   `json:"in_chans"`
	EmbedDims   []int `json:"embed_dims"`
	Depths      []int `json:"depths"`
	NumHeads    []int `json:"num_heads"`
	WindowSizes []int `json:"window_sizes"`
	// MLPRatio sets the TinyViT blocks' MLP width, int(dim * ratio).
	MLPRatio float64 `json:"mlp_ratio"`
	// MBConvExpandRatio sets the MBConv hidden width, int(dim * ratio).
	MBConvExpandRatio float64 `json:"mbconv_expand_ratio"`
	LocalConvSize     int     `json:"local_conv_size"`
	// MLPHidden and MBConvHidden, when set (architectures read from
	// weights), are the hidden widths per stage and of the MBConv blocks;
	// otherwise int(dim * ratio) as the official constructor computes them.
	MLPHidden    []int `json:"mlp_hidden,omitempty"`
	MBConvHidden int   `json:"mbconv_hidden,omitempty"`
	// PatchKernel is the patch embedding's kernel: 3 for MobileSAM (two
	// stride-2 3x3 Conv2d_BN, input/4) or 1 for LiteMedSAM (two 1x1, input
	// kept). 0 in a JSON file: the one that gives the official code's 64x64
	// embedding.
	PatchKernel int `json:"patch_kernel,omitempty"`
}

// mlpHidden is the MLP width of stage i's TinyViT blocks.
func (t *TinyViTConfig) mlpHidden(i int) int {
	if i < len(t.MLPHidden) && t.MLPHidden[i] > 0 {
		return t.MLPHidden[i]
	}
	return int(float64(t.EmbedDims[i]) * t.MLPRatio)
}

// mbConvHidden is the MBConv blocks' hidden width.
func (t *TinyViTConfig) mbConvHidden() int {
	if t.MBConvHidden > 0 {
		return t.MBConvHidden
	}
	return int(float64(t.EmbedDims[0]) * t.MBConvExpandRatio)
}

// Epsilons of the official TinyViT code.
const (
	batchNormEps   = 1e-5 // torch.nn.BatchNorm2d default (Conv2d_BN)
	tinyViTNormEps = 1e-5 // nn.LayerNorm default (Attention.norm, Mlp.norm)
)

// mergeStride is PatchMerging's depthwise stride: 1 when out_dim is 320,
// 448 or 576 (the official code hard-codes these widths), else 2.
func mergeStride(outDim int) int {
	if outDim == 320 || outDim == 448 || outDim == 576 {
		return 1
	}
	return 2
}

// convOut is a convolution's output side.
func convOut(in, k, stride, pad int) int { return (in+2*pad-k)/stride + 1 }

// patchGrid is the side after the patch embedding.
func (t *TinyViTConfig) patchGrid() int {
	if t.PatchKernel == 1 {
		return t.ImgSize
	}
	return convOut(convOut(t.ImgSize, 3, 2, 1), 3, 2, 1)
}

// StageGrids returns the side of each stage's input grid and of the output.
func (t *TinyViTConfig) StageGrids() (stages []int, out int) {
	g := t.patchGrid()
	for i := range t.EmbedDims {
		stages = append(stages, g)
		if i < len(t.EmbedDims)-1 {
			g = convOut(g, 3, mergeStride(t.EmbedDims[i+1]), 1)
		}
	}
	return stages, g
}

// Grid is the side of the image embedding.
func (t *TinyViTConfig) Grid() int {
	_, g := t.StageGrids()
	return g
}

func (t *TinyViTConfig) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	n := len(t.EmbedDims)
	if n < 2 {
		bad("tiny_vit: need at least 2 stages (a conv stage and an attention stage), got %d", n)
	}
	if len(t.Depths) != n || len(t.NumHeads) != n || len(t.WindowSizes) != n {
		bad("tiny_vit: embed_dims, depths, num_heads and window_sizes need one entry per stage (%d, %d, %d, %d)",
			n, len(t.Depths), len(t.NumHeads), len(t.WindowSizes))
		return errors.Join(errs...)
	}
	if t.ImgSize <= 0 || t.InChans != 3 {
		bad("tiny_vit: img_size must be positive and in_chans 3, got %d, %d", t.ImgSize, t.InChans)
	}
	if t.PatchKernel != 1 && t.PatchKernel != 3 {
		bad("tiny_vit: patch_kernel must be 1 (LiteMedSAM) or 3 (MobileSAM), got %d", t.PatchKernel)
	}
	for i := range n {
		if t.EmbedDims[i] <= 0 || t.Depths[i] <= 0 {
			bad("tiny_vit: stage %d needs a positive width and depth, got %d, %d", i, t.EmbedDims[i], t.Depths[i])
		}
		if i > 0 && (t.NumHeads[i] <= 0 || t.EmbedDims[i]%t.NumHeads[i] != 0 || t.WindowSizes[i] <= 0) {
			bad("tiny_vit: stage %d: width %d must be a multiple of its %d heads, window %d positive",
				i, t.EmbedDims[i], t.NumHeads[i], t.WindowSizes[i])
		}
	}
	if t.MLPRatio <= 0 || t.MBConvExpandRatio <= 0 || t.LocalConvSize <= 0 || t.LocalConvSize%2 == 0 {
		bad("tiny_vit: mlp_ratio and mbconv_expand_ratio must be positive, local_conv_size odd")
	}
	if t.ImgSize > 0 && t.Grid() <= 0 {
		bad("tiny_vit: input %d is too small for the stages", t.ImgSize)
	}
	return errors.Join(errs...)
}

func tinyViTPreset(name string, family Family, imgSize, patchKernel int, dims, depths, heads []int) Config {
	const promptDim = 256
	t := &TinyViTConfig{
		ImgSize: imgSize, InChans: 3, EmbedDims: dims, Depths: depths, NumHeads: heads,
		WindowSizes: []int{7, 7, 14, 7}, MLPRatio: 4, MBConvExpandRatio: 4, LocalConvSize: 3, PatchKernel: patchKernel,
	}
	grid := t.Grid()
	return Config{
		Name:          name,
		Family:        family,
		ImageEncoder:  ImageEncoderConfig{ImgSize: imgSize, InChans: 3, OutChans: promptDim},
		TinyViT:       t,
		PromptEncoder: samPromptEncoder(promptDim, grid, imgSize),
		MaskDecoder:   samMaskDecoder(promptDim),
		PixelMean:     samPixelMean,
		PixelStd:      samPixelStd,
	}
}

func init() {
	// mobile_sam.build_sam.build_sam_vit_t and CVPR24_LiteMedSAM_infer.py.
	presets["mobilesam_vit_t"] = func() Config {
		return tinyViTPreset("mobilesam_vit_t", FamilySAM, 1024, 3, []int{64, 128, 160, 320}, []int{2, 2, 6, 2}, []int{2, 4, 5, 10})
	}
	presets["litemedsam"] = func() Config {
		return tinyViTPreset("litemedsam", FamilyLiteMedSAM, 256, 1, []int{64, 128, 160, 320}, []int{2, 2, 6, 2}, []int{2, 4, 5, 10})
	}
}

// tinyViTFromJSON completes a TinyViT config read from JSON: without a
// patch_kernel, the variant whose embedding is 64x64 (the size the official
// forward_features hard-codes), and the family from the variant.
func tinyViTFromJSON(t *TinyViTConfig) error {
	if t.InChans == 0 {
		t.InChans = 3
	}
	if t.LocalConvSize == 0 {
		t.LocalConvSize = 3
	}
	if t.PatchKernel != 0 {
		return nil
	}
	for _, k := range []int{3, 1} {
		t.PatchKernel = k
		if len(t.EmbedDims) > 0 && t.Grid() == 64 {
			return nil
		}
	}
	t.PatchKernel = 0
	return fmt.Errorf("tiny_vit: img_size %d gives no 64x64 embedding with either patch embedding; set patch_kernel (3 MobileSAM, 1 LiteMedSAM)", t.ImgSize)
}

// isTinyViTUnused reports whether a checkpoint tensor is MobileSAM's unused
// ImageNet classifier (image_encoder.norm_head.*, image_encoder.head.*).
func isTinyViTUnused(name string) bool {
	return strings.HasPrefix(name, "image_encoder.norm_head.") || strings.HasPrefix(name, "image_encoder.head.")
}

// inferTinyViT reads a TinyViT encoder's architecture from its weights:
// widths from the convolutions, depths from the block indices, heads and
// windows from attention_biases (heads x window^2), MLP and MBConv ratios
// from their hidden widths, the variant from the patch embedding's kernel.
func inferTinyViT(sd *checkpoint.StateDict) (*TinyViTConfig, int, error) {
	shape := func(name string, rank int) ([]int, error) {
		t, ok := sd.Get(name)
		if !ok {
			return nil, fmt.Errorf("infer TinyViT: no %q in the checkpoint", name)
		}
		if len(t.Shape) != rank {
			return nil, fmt.Errorf("infer TinyViT: %q has shape %v, want rank %d", name, t.Shape, rank)
		}
		return t.Shape, nil
	}
	has := func(prefix string) bool {
		for _, n := range sd.Names() {
			if strings.HasPrefix(n, prefix) {
				return true
			}
		}
		return false
	}
	pe, err := shape("image_encoder.patch_embed.seq.0.c.weight", 4) // [E/2, 3, k, k]
	if err != nil {
		return nil, 0, err
	}
	t := &TinyViTConfig{InChans: pe[1], PatchKernel: pe[2], LocalConvSize: 3}
	if t.PatchKernel != 1 && t.PatchKernel != 3 {
		return nil, 0, fmt.Errorf("infer TinyViT: patch embedding kernel %dx%d is neither MobileSAM's 3x3 nor LiteMedSAM's 1x1", pe[2], pe[3])
	}
	for i := 0; has(fmt.Sprintf("image_encoder.layers.%d.", i)); i++ {
		p := fmt.Sprintf("image_encoder.layers.%d.", i)
		depth := 0
		for has(fmt.Sprintf("%sblocks.%d.", p, depth)) {
			depth++
		}
		if depth == 0 {
			return nil, 0, fmt.Errorf("infer TinyViT: stage %d has no blocks", i)
		}
		t.Depths = append(t.Depths, depth)
		if i == 0 {
			c1, err := shape(p+"blocks.0.conv1.c.weight", 4) // [hidden, dim, 1, 1]
			if err != nil {
				return nil, 0, err
			}
			t.EmbedDims = append(t.EmbedDims, c1[1])
			t.MBConvExpandRatio = float64(c1[0]) / float64(c1[1])
			t.MBConvHidden = c1[0]
			t.MLPHidden = append(t.MLPHidden, 0) // stage 0 has no MLP
			t.NumHeads = append(t.NumHeads, 1)
			t.WindowSizes = append(t.WindowSizes, 7) // unused: stage 0 has no attention
			continue
		}
		ab, err := shape(p+"blocks.0.attn.attention_biases", 2) // [heads, window^2]
		if err != nil {
			return nil, 0, err
		}
		win := int(math.Round(math.Sqrt(float64(ab[1]))))
		if win*win != ab[1] {
			return nil, 0, fmt.Errorf("infer TinyViT: %sblocks.0.attn.attention_biases has %d offsets, not a square window", p, ab[1])
		}
		qkv, err := shape(p+"blocks.0.attn.qkv.weight", 2) // [3*dim, dim]
		if err != nil {
			return nil, 0, err
		}
		fc1, err := shape(p+"blocks.0.mlp.fc1.weight", 2) // [hidden, dim]
		if err != nil {
			return nil, 0, err
		}
		t.EmbedDims = append(t.EmbedDims, qkv[1])
		t.NumHeads = append(t.NumHeads, ab[0])
		t.WindowSizes = append(t.WindowSizes, win)
		t.MLPRatio = float64(fc1[0]) / float64(fc1[1])
		t.MLPHidden = append(t.MLPHidden, fc1[0])
		if lc, ok := sd.Get(p + "blocks.0.local_conv.c.weight"); ok && len(lc.Shape) == 4 {
			t.LocalConvSize = lc.Shape[2]
		}
	}
	if len(t.EmbedDims) == 0 {
		return nil, 0, fmt.Errorf("infer TinyViT: no image_encoder.layers")
	}
	neck, err := shape("image_encoder.neck.0.weight", 4) // [out, C, 1, 1]
	if err != nil {
		return nil, 0, err
	}
	// The input size is not in the weights: the official forward_features
	// reshapes the last stage to 64x64, so the input is the one that gives
	// 64 (1024 for MobileSAM, 256 for LiteMedSAM).
	t.ImgSize = 64
	if t.PatchKernel == 3 {
		t.ImgSize *= 4
	}
	for _, d := range t.EmbedDims[1:] {
		t.ImgSize *= mergeStride(d)
	}
	if err := t.validate(); err != nil {
		return nil, 0, fmt.Errorf("infer TinyViT: %w", err)
	}
	return t, neck[0], nil
}

// tinyViTConfigFromJSON reads a config whose image_encoder holds a TinyViT
// constructor's arguments (the MobileSAM / LiteMedSAM fixtures'
// config.json). Without model_type the family follows the patch embedding
// (1x1: LiteMedSAM's processing, 3x3: SAM's); the neck's width is the
// prompt encoder's embed_dim, as in the official code.
func tinyViTConfigFromJSON(data []byte) (Config, error) {
	var raw struct {
		Name          string              `json:"name"`
		Model         string              `json:"model"`
		Family        Family              `json:"model_type"`
		ImageEncoder  TinyViTConfig       `json:"image_encoder"`
		PromptEncoder PromptEncoderConfig `json:"prompt_encoder"`
		MaskDecoder   MaskDecoderConfig   `json:"mask_decoder"`
		PixelMean     [3]float32          `json:"pixel_mean"`
		PixelStd      [3]float32          `json:"pixel_std"`
		MaskThreshold float32             `json:"mask_threshold"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, err
	}
	t := raw.ImageEncoder
	if err := tinyViTFromJSON(&t); err != nil {
		return Config{}, err
	}
	c := Config{
		Name: raw.Name, Family: raw.Family, TinyViT: &t,
		ImageEncoder:  ImageEncoderConfig{ImgSize: t.ImgSize, InChans: t.InChans, OutChans: raw.PromptEncoder.EmbedDim},
		PromptEncoder: raw.PromptEncoder, MaskDecoder: raw.MaskDecoder,
		PixelMean: raw.PixelMean, PixelStd: raw.PixelStd, MaskThreshold: raw.MaskThreshold,
	}
	if c.Name == "" {
		c.Name = raw.Model
	}
	if c.Family == "" {
		c.Family = FamilySAM
		if t.PatchKernel == 1 {
			c.Family = FamilyLiteMedSAM
		}
	}
	if c.PromptEncoder.MaskInChans == 0 {
		c.PromptEncoder.MaskInChans = defaultMaskInDim
	}
	if c.MaskDecoder.Transformer.AttentionDownsampleRate == 0 {
		c.MaskDecoder.Transformer.AttentionDownsampleRate = 2 // TwoWayTransformer's default
	}
	return c, nil
}

// validateTinyViT checks a TinyViT-based configuration.
func (c Config) validateTinyViT() error {
	t := c.TinyViT
	if err := t.validate(); err != nil {
		return err
	}
	var errs []error
	e := c.ImageEncoder
	if e.ImgSize != t.ImgSize || e.InChans != t.InChans || e.OutChans <= 0 {
		errs = append(errs, fmt.Errorf("image_encoder: img_size %d / in_chans %d must equal tiny_vit's %d / %d, out_chans positive",
			e.ImgSize, e.InChans, t.ImgSize, t.InChans))
	}
	errs = append(errs, c.validatePromptDecoder(t.Grid()))
	return errors.Join(errs...)
}
