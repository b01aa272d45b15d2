package sam

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/segsam/segsam/checkpoint"
)

// InferConfig derives a model configuration from a state dict's names and
// shapes, so a checkpoint loads without naming its architecture.
//
// Everything is read from the weights except the number of attention heads
// of the mask decoder's transformer, which no weight shape records: it is
// SAM's 8 (every official SAM, MedSAM and SAM-Med2D model uses 8); give a
// JSON config for other models. The encoder's heads follow from the
// relative-position tables (head_dim). Encoder adapters mean SAM-Med2D
// pre- and post-processing.
func InferConfig(sd *checkpoint.StateDict) (Config, error) {
	get := func(name string, rank int) ([]int, error) {
		t, ok := sd.Get(name)
		if !ok {
			return nil, fmt.Errorf("infer config: no %q in the checkpoint (not a SAM-family model?)", name)
		}
		if len(t.Shape) != rank {
			return nil, fmt.Errorf("infer config: %q has shape %v, want rank %d", name, t.Shape, rank)
		}
		return t.Shape, nil
	}
	count := func(prefix string) int {
		n := 0
		for {
			found := false
			p := prefix + strconv.Itoa(n) + "."
			for _, name := range sd.Names() {
				if strings.HasPrefix(name, p) {
					found = true
					break
				}
			}
			if !found {
				return n
			}
			n++
		}
	}
	var c Config
	if _, ok := sd.Get("image_encoder.patch_embed.seq.0.c.weight"); ok {
		// A TinyViT encoder (MobileSAM, LiteMedSAM).
		tv, out, err := inferTinyViT(sd)
		if err != nil {
			return c, err
		}
		family := FamilySAM
		if tv.PatchKernel == 1 {
			family = FamilyLiteMedSAM
		}
		e := ImageEncoderConfig{ImgSize: tv.ImgSize, InChans: tv.InChans, OutChans: out}
		c, err := inferPromptDecoder(sd, e, tv, tv.Grid(), family, get, count)
		c.Name = "inferred TinyViT (MobileSAM)"
		if family == FamilyLiteMedSAM {
			c.Name = "inferred TinyViT (LiteMedSAM)"
		}
		return c, err
	}
	patch, err := get("image_encoder.patch_embed.proj.weight", 4) // [E, 3, p, p]
	if err != nil {
		return c, err
	}
	embed, p := patch[0], patch[2]
	pos, err := get("image_encoder.pos_embed", 4) // [1, g, g, E]
	if err != nil {
		return c, err
	}
	grid := pos[1]
	depth := count("image_encoder.blocks.")
	if depth == 0 {
		return c, fmt.Errorf("infer config: no image_encoder.blocks")
	}
	lin1, err := get("image_encoder.blocks.0.mlp.lin1.weight", 2)
	if err != nil {
		return c, err
	}
	neck, err := get("image_encoder.neck.0.weight", 4)
	if err != nil {
		return c, err
	}
	e := ImageEncoderConfig{
		ImgSize: grid * p, PatchSize: p, InChans: patch[1], EmbedDim: embed, Depth: depth,
		MLPRatio: float64(lin1[0]) / float64(embed), OutChans: neck[0], UseAbsPos: true,
	}
	_, e.QKVBias = sd.Get("image_encoder.blocks.0.attn.qkv.bias")
	headDim := 0
	for i := 0; i < depth; i++ {
		rel, ok := sd.Get(fmt.Sprintf("image_encoder.blocks.%d.attn.rel_pos_h", i))
		if !ok {
			continue
		}
		e.UseRelPos = true
		headDim = rel.Shape[1]
		if rel.Shape[0] == 2*grid-1 {
			e.GlobalAttnIndexes = append(e.GlobalAttnIndexes, i)
		} else {
			e.WindowSize = (rel.Shape[0] + 1) / 2
		}
	}
	if !e.UseRelPos || headDim == 0 || embed%headDim != 0 {
		return c, fmt.Errorf("infer config: cannot find the encoder's attention heads (no relative-position tables); give a JSON config")
	}
	e.NumHeads = embed / headDim
	family := FamilySAM
	if ch, ok := sd.Get("image_encoder.blocks.0.Adapter.channel.0.weight"); ok {
		e.Adapter = &AdapterConfig{MLPRatio: float64(ch.Shape[0]) / float64(embed)}
		family = FamilySAMMed2D
	}
	return inferPromptDecoder(sd, e, nil, grid, family, get, count)
}

// inferPromptDecoder completes an inferred configuration with the prompt
// encoder and mask decoder read from the weights.
func inferPromptDecoder(sd *checkpoint.StateDict, e ImageEncoderConfig, tv *TinyViTConfig, grid int, family Family,
	get func(string, int) ([]int, error), count func(string) int) (Config, error) {
	var c Config
	noMask, err := get("prompt_encoder.no_mask_embed.weight", 2)
	if err != nil {
		return c, err
	}
	maskIn, err := get("prompt_encoder.mask_downscaling.3.weight", 4)
	if err != nil {
		return c, err
	}
	tokens, err := get("mask_decoder.mask_tokens.weight", 2)
	if err != nil {
		return c, err
	}
	mlp1, err := get("mask_decoder.transformer.layers.0.mlp.lin1.weight", 2)
	if err != nil {
		return c, err
	}
	q, err := get("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight", 2)
	if err != nil {
		return c, err
	}
	iou0, err := get("mask_decoder.iou_prediction_head.layers.0.weight", 2)
	if err != nil {
		return c, err
	}
	dim := noMask[1]
	c = Config{
		Name:         "inferred",
		Family:       family,
		ImageEncoder: e,
		TinyViT:      tv,
		PromptEncoder: PromptEncoderConfig{
			EmbedDim: dim, ImageEmbeddingSize: [2]int{grid, grid},
			InputImageSize: [2]int{e.ImgSize, e.ImgSize}, MaskInChans: maskIn[0],
		},
		MaskDecoder: MaskDecoderConfig{
			TransformerDim: dim, NumMultimaskOutputs: tokens[0] - 1,
			IoUHeadDepth: count("mask_decoder.iou_prediction_head.layers."), IoUHeadHiddenDim: iou0[0],
			Transformer: TransformerConfig{
				Depth: count("mask_decoder.transformer.layers."), EmbeddingDim: dim, MLPDim: mlp1[0],
				NumHeads: 8, AttentionDownsampleRate: dim / q[0],
			},
		},
		PixelMean: samPixelMean,
		PixelStd:  samPixelStd,
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("infer config: %w", err)
	}
	return c, nil
}
