// Package segsam is SEG-SAM (Huang et al., "SEG-SAM: Semantic-Guided SAM for
// Unified Medical Image Segmentation"): SAM's image encoder, prompt encoder
// and mask decoder (Dec_sag, package sam) plus
//
//	semantic_decoder.go  SemanticDecoder, the semantic-aware decoder Dec_saw (§3.2.1):
//	                     segmentation-oriented token → class + mask of the prompted
//	                     object; classification-oriented tokens → class presence
//	text_enhancer.go     TextEnhancer, text-to-vision semantic enhancement T2VSE (§3.2.2)
//	loss.go              the training loss of eq. 11, with cross-mask spatial
//	                     alignment (eq. 10)
//	model.go             the forward pass tying them together, switchable parts
//	checkpoint.go        the one-file segsam checkpoint
//	predictor.go         binary mask + class + confidence + semantic mask from a prompt
package segsam

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/segsam/segsam/sam"
)

// Parts switches SEG-SAM's components on and off; the named variants are the
// rows of the paper's ablation (Table 4).
type Parts struct {
	// ClassToken adds a class token to SAM's own decoder (Baseline_sem).
	ClassToken bool `json:"class_token"`
	// SemanticDecoder adds Dec_saw with its segmentation-oriented token.
	SemanticDecoder bool `json:"semantic_decoder"`
	// COTokens adds Dec_saw's classification-oriented tokens (one per class).
	COTokens bool `json:"co_tokens"`
	// FullImageSemantic makes Dec_saw segment every class in the image
	// instead of classifying the unprompted objects (the SAWD_sem variant).
	FullImageSemantic bool `json:"full_image_semantic"`
	// TextEnhancer adds T2VSE's summary token to Dec_sag's prompt tokens.
	TextEnhancer bool `json:"text_enhancer"`
	// PromptAwareText lets T2VSE's prompt tokens join its self-attention, so
	// that the summary token depends on the prompt. In the literal reading
	// of eq. 9 (false: models saved before this switch) t_p join only the
	// cross-attention queries, which do not interact, and the summary token
	// is the same for every prompt on an image.
	PromptAwareText bool `json:"prompt_aware_text,omitempty"`
	// CMSA adds the cross-mask spatial alignment loss.
	CMSA bool `json:"cmsa"`
	// BoxPrior adds the ellipse inscribed in a box prompt, as a learned-scale
	// logit map, to both decoders' masks (segsam's addition for small models
	// trained from scratch; box_prior.go). Off in the paper's variants.
	BoxPrior bool `json:"box_prior,omitempty"`
	// PixelSkip adds a convolutional stem on the input pixels whose
	// features, at the masks' resolution, both decoders add to their
	// up-scaled image features (segsam's addition for small models trained
	// from scratch; pixel_skip.go). Off in the paper's variants.
	PixelSkip bool `json:"pixel_skip,omitempty"`
}

// Variants are the named configurations of the paper's Table 4.
var Variants = map[string]Parts{
	"sam":          {},
	"baseline_sem": {ClassToken: true},
	"so":           {SemanticDecoder: true},
	"so_co":        {SemanticDecoder: true, COTokens: true},
	"sawd_sem":     {SemanticDecoder: true, FullImageSemantic: true},
	"so_co_t2vse":  {SemanticDecoder: true, COTokens: true, TextEnhancer: true, PromptAwareText: true},
	"seg_sam":      {SemanticDecoder: true, COTokens: true, TextEnhancer: true, PromptAwareText: true, CMSA: true},
}

// VariantNames lists the variants, sorted.
func VariantNames() []string {
	names := make([]string, 0, len(Variants))
	for n := range Variants {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LossWeights weight the terms of eq. 11.
type LossWeights struct {
	Focal    float64 `json:"focal"`    // Dec_sag focal loss (SAM: 20)
	Dice     float64 `json:"dice"`     // Dec_sag dice loss (SAM: 1)
	IoU      float64 `json:"iou"`      // Dec_sag IoU-prediction MSE (SAM-Med2D: 1)
	Semantic float64 `json:"semantic"` // Dec_saw cross-entropy + dice
	CMSA     float64 `json:"cmsa"`     // 1 - IoU between the two decoders' masks
	Presence float64 `json:"presence"` // λ of the class-presence BCE (paper: 10)
	// SemBCE weights a pixel BCE on Dec_saw's mask, beside its dice
	// (Mask2Former's mask loss; not in the paper's eq. 11: default 0).
	SemBCE float64 `json:"sem_bce,omitempty"`
	// IoUChosenOnly supervises only the chosen mask token's predicted IoU,
	// the behaviour before issue 17.1 (an ablation switch; default: every
	// token against its own mask, as SAM).
	IoUChosenOnly bool `json:"iou_chosen_only,omitempty"`
}

// DefaultLossWeights are the paper's.
var DefaultLossWeights = LossWeights{Focal: 20, Dice: 1, IoU: 1, Semantic: 1, CMSA: 1, Presence: 10}

// TextIdentity records which text embeddings a model was trained with.
type TextIdentity struct {
	Provider         string `json:"provider"`
	Model            string `json:"model"`
	Fingerprint      string `json:"fingerprint"`
	KnowledgeVersion string `json:"knowledge_version,omitempty"`
}

// Config describes a SEG-SAM model: the SAM it extends, its class
// vocabulary, its parts and, with T2VSE, its text embeddings.
type Config struct {
	SAM     sam.Config `json:"sam"`
	Variant string     `json:"variant"`
	Parts   Parts      `json:"parts"`
	// Classes is the model's vocabulary, in the order of its outputs.
	Classes []string `json:"classes"`
	// TextDim is the dimension of the class-description embeddings (T2VSE).
	TextDim int          `json:"text_dim,omitempty"`
	Text    TextIdentity `json:"text"`
	Loss    LossWeights  `json:"loss"`
	// ModalityClasses lists, for each imaging modality of the training
	// data (dataset.Modalities' names), the classes its objects had: the
	// modality prior of prediction (modality.go). Written by training.
	ModalityClasses map[string][]string `json:"modality_classes,omitempty"`
}

// NewConfig returns the configuration of a variant on top of a SAM;
// textDim is the dimension of the class-description embeddings (used by
// the variants with T2VSE).
func NewConfig(base sam.Config, variant string, classes []string, textDim int) (Config, error) {
	parts, ok := Variants[variant]
	if !ok {
		return Config{}, fmt.Errorf("unknown variant %q (known: %s)", variant, strings.Join(VariantNames(), ", "))
	}
	c := Config{SAM: base, Variant: variant, Parts: parts, Classes: append([]string(nil), classes...), Loss: DefaultLossWeights}
	if parts.TextEnhancer {
		c.TextDim = textDim
	}
	return c, c.Validate()
}

// NumClasses is K, the size of the vocabulary.
func (c Config) NumClasses() int { return len(c.Classes) }

// HasClasses reports whether the model predicts classes at all.
func (c Config) HasClasses() bool { return c.Parts.ClassToken || c.Parts.SemanticDecoder }

// ClassIndex returns the index of a class in the vocabulary.
func (c Config) ClassIndex(name string) (int, bool) {
	for i, n := range c.Classes {
		if n == name {
			return i, true
		}
	}
	return -1, false
}

// Validate checks that the configuration is consistent.
func (c Config) Validate() error {
	var errs []error
	if err := c.SAM.Validate(); err != nil {
		errs = append(errs, err)
	}
	p := c.Parts
	if p.ClassToken && p.SemanticDecoder {
		errs = append(errs, errors.New("class_token (Baseline_sem) and semantic_decoder are alternatives"))
	}
	if (p.COTokens || p.FullImageSemantic || p.CMSA) && !p.SemanticDecoder {
		errs = append(errs, errors.New("co_tokens, full_image_semantic and cmsa need the semantic decoder"))
	}
	if p.COTokens && p.FullImageSemantic {
		errs = append(errs, errors.New("co_tokens and full_image_semantic (SAWD_sem) are alternatives"))
	}
	if c.HasClasses() && len(c.Classes) < 1 {
		errs = append(errs, errors.New("a semantic model needs a class vocabulary"))
	}
	seen := map[string]bool{}
	for _, n := range c.Classes {
		if n == "" || seen[n] {
			errs = append(errs, fmt.Errorf("class vocabulary: empty or repeated class %q", n))
		}
		seen[n] = true
	}
	if p.PixelSkip {
		if err := c.validatePixelSkip(); err != nil {
			errs = append(errs, err)
		}
	}
	if p.PromptAwareText && !p.TextEnhancer {
		errs = append(errs, errors.New("prompt_aware_text needs the text enhancer"))
	}
	if p.TextEnhancer && c.TextDim <= 0 {
		errs = append(errs, errors.New("the text enhancer needs text embeddings (text_dim > 0)"))
	}
	return errors.Join(errs...)
}
