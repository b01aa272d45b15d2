// Package sam is the Segment Anything model family in GoMLX: SAM
// (facebookresearch/segment-anything, also MedSAM) and SAM-Med2D, with one
// file per component as in the official code:
//
//	image_encoder.go  ImageEncoderViT (Enc_img in the SEG-SAM paper)
//	adapter.go        SAM-Med2D's encoder adapters
//	prompt_encoder.go PromptEncoder (Enc_pmt)
//	transformer.go    TwoWayTransformer
//	mask_decoder.go   MaskDecoder (Dec_sag, the semantic-agnostic decoder)
//	predictor.go      Predictor: pre-processing, embedding cache, post-processing
//
// Variables are stored at the scope paths of the PyTorch state_dict keys
// ("image_encoder/blocks/3/attn/qkv/weight" for
// "image_encoder.blocks.3.attn.qkv.weight"), so importing a checkpoint is a
// walk over its state_dict.
package sam

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/segsam/segsam/checkpoint"
	"github.com/segsam/segsam/internal/engine"
)

// Model is a SAM-family model: its configuration, its weights (a GoMLX
// store) and the compiled graphs that run it.
type Model struct {
	Config  Config
	Backend compute.Backend
	Store   *model.Store
	// EncoderGraph, when set, is the graph Encode runs instead of
	// ImageEncoder at image_encoder (a model that extends SAM may carry more
	// in its embedding); EmbeddingChannels is then that embedding's channel
	// count (0: the prompt encoder's width, SAM's embedding).
	EncoderGraph      func(scope *model.Scope, image *Node) *Node
	EmbeddingChannels int

	mu       sync.Mutex
	encoder  *model.Exec
	decoders map[decoderKind]*model.Exec
	// densePE caches the prompt encoder's dense positional encoding
	// [1, C, g, g] (it depends only on the non-trainable Fourier matrix).
	densePE *tensors.Tensor
}

// decoderKind selects one of the decoder graphs: prompts may have no sparse
// part (mask only) and may have a mask input.
type decoderKind struct{ sparse, mask bool }

// NewModel returns a model with an empty store: variables are created with
// the store's initializer on first use (training from scratch), or set from a
// checkpoint with SetWeights.
func NewModel(cfg Config, backend compute.Backend) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	if backend == nil {
		var err error
		if backend, err = engine.Backend(); err != nil {
			return nil, err
		}
	}
	return &Model{Config: cfg, Backend: backend, Store: model.NewStore(), decoders: map[decoderKind]*model.Exec{}}, nil
}

// Load reads a checkpoint (.pth or .safetensors) into a model of the given
// configuration. Loading is strict: a missing, unexpected or mis-shaped
// tensor is an error naming it.
func Load(path string, cfg Config, backend compute.Backend) (*Model, error) {
	sd, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	m, err := NewModel(cfg, backend)
	if err != nil {
		return nil, err
	}
	if err := m.SetWeights(sd); err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return m, nil
}

// LoadInferred reads a checkpoint and builds its model with the configuration
// inferred from the weights' names and shapes (see InferConfig).
func LoadInferred(path string, backend compute.Backend) (*Model, error) {
	sd, err := checkpoint.Load(path)
	if err != nil {
		return nil, err
	}
	cfg, err := InferConfig(sd)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	m, err := NewModel(cfg, backend)
	if err != nil {
		return nil, err
	}
	if err := m.SetWeights(sd); err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return m, nil
}

// KeyToPath maps a state_dict key to its variable path in the store.
func KeyToPath(key string) string { return "/" + strings.ReplaceAll(key, ".", "/") }

// PathToKey maps a variable path in the store to its state_dict key.
func PathToKey(path string) string {
	return strings.ReplaceAll(strings.TrimPrefix(path, "/"), "/", ".")
}

// SetWeights checks a state dict against the model's variables and stores
// its tensors. Tensors outside the SAM components (image_encoder.,
// prompt_encoder., mask_decoder.) are errors too.
func (m *Model) SetWeights(sd *checkpoint.StateDict) error {
	expected, err := ExpectedVariables(m.Config)
	if err != nil {
		return err
	}
	sd = ModelTensors(m.Config, sd)
	if err := sd.Match(expected); err != nil {
		return fmt.Errorf("checkpoint does not fit architecture %s: %w", m.Config.Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.encoder != nil || len(m.decoders) > 0 || m.densePE != nil {
		return fmt.Errorf("set weights: the model has already run; create a new model")
	}
	for _, t := range sd.Tensors {
		v := tensors.FromFlatDataAndDimensions(t.Data, t.Shape...)
		if _, err := m.Store.CreateVariable(KeyToPath(t.Name), v); err != nil {
			return fmt.Errorf("set %s: %w", t.Name, err)
		}
	}
	return nil
}

// ModelTensors drops the checkpoint tensors a TinyViT model does not use:
// BatchNorm's num_batches_tracked counters (training statistics only) and
// MobileSAM's ImageNet classifier (image_encoder.norm_head.*,
// image_encoder.head.*), which mobile_sam.pt carries.
func ModelTensors(cfg Config, sd *checkpoint.StateDict) *checkpoint.StateDict {
	if cfg.TinyViT == nil {
		return sd
	}
	out := *sd
	out.Tensors = nil
	for _, t := range sd.Tensors {
		if strings.HasSuffix(t.Name, ".num_batches_tracked") || isTinyViTUnused(t.Name) {
			continue
		}
		out.Tensors = append(out.Tensors, t)
	}
	return &out
}

// ExpectedVariables lists every variable of a configuration (state_dict key
// -> shape) by building the model's graphs symbolically on an empty store.
func ExpectedVariables(cfg Config) (vars map[string][]int, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	backend, err := engine.New("")
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("building %s symbolically: %v", cfg.Name, r)
		}
	}()
	store := model.NewStore()
	g := NewGraph(backend, "expected_variables")
	defer g.Finalize()
	root := store.RootScope()
	s := cfg.ImageEncoder.ImgSize
	grid := cfg.TokenGrid()
	image := Parameter(g, "image", shapes.Make(dtypes.Float32, 1, 3, s, s))
	emb := ImageEncoder(root.At("image_encoder"), cfg, image)
	pe := root.At("prompt_encoder")
	coords := Parameter(g, "coords", shapes.Make(dtypes.Float32, 1, 2, 2))
	labels := Parameter(g, "labels", shapes.Make(dtypes.Int32, 1, 2))
	mask := Parameter(g, "mask", shapes.Make(dtypes.Float32, 1, 1, 4*grid, 4*grid))
	sparse := SparsePromptEmbeddings(pe, cfg, coords, labels)
	dense := DensePromptEmbeddings(pe, cfg, g, mask, 1)
	_ = DensePromptEmbeddings(pe, cfg, g, nil, 1)
	MaskDecoder(root.At("mask_decoder"), cfg, emb, DensePositionalEncoding(pe, cfg, g), sparse, dense)
	vars = map[string][]int{}
	for v := range store.IterVariables() {
		vars[PathToKey(v.Path())] = v.Shape().Dimensions
	}
	return vars, nil
}

// VariableNames lists the state_dict keys of a configuration, sorted.
func VariableNames(vars map[string][]int) []string {
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// embeddingChannels is the channel count of Encode's embeddings.
func (m *Model) embeddingChannels() int {
	if m.EmbeddingChannels > 0 {
		return m.EmbeddingChannels
	}
	return m.Config.PromptEncoder.EmbedDim
}

// Encode runs the image encoder.
//
//	image: [B, 3, S, S] normalised and padded -> embedding [B, C, g, g]
func (m *Model) Encode(image *tensors.Tensor) (emb *tensors.Tensor, err error) {
	m.mu.Lock()
	if m.encoder == nil {
		graph := m.EncoderGraph
		if graph == nil {
			graph = func(scope *model.Scope, image *Node) *Node {
				return ImageEncoder(scope.At("image_encoder"), m.Config, image)
			}
		}
		m.encoder, err = model.NewExec(m.Backend, m.Store, graph)
	}
	exec := m.encoder
	m.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("image encoder: %w", err)
	}
	s := m.Config.ImageEncoder.ImgSize
	if d := image.Shape().Dimensions; len(d) != 4 || d[1] != 3 || d[2] != s || d[3] != s {
		return nil, fmt.Errorf("image encoder: input shape %v, want [B 3 %d %d]", d, s, s)
	}
	return exec.Call1(image)
}

// DecoderInputs are the prompts of one decoder call, already in the
// model-input frame. Coords/Labels may be nil (no sparse prompt: mask-only or
// prompt-free call); Mask may be nil (no mask prompt). With neither, the
// batch is 1, as the official PromptEncoder._get_batch_size returns.
type DecoderInputs struct {
	Embedding *tensors.Tensor // [1, C, g, g]
	Coords    *tensors.Tensor // [B, N, 2] float32 (x, y), or nil
	Labels    *tensors.Tensor // [B, N] int32 (Label* constants), or nil
	Mask      *tensors.Tensor // [B, 1, 4g, 4g] float32 low-res logits, or nil
}

// Decode runs the prompt encoder and the mask decoder (Dec_sag) for a batch
// of prompts on one image embedding.
//
//	-> masks [B, M, 4g, 4g] low-res logits, iou [B, M]; M = mask tokens
func (m *Model) Decode(in DecoderInputs) (masks, iou *tensors.Tensor, err error) {
	kind := decoderKind{sparse: in.Coords != nil, mask: in.Mask != nil}
	exec, err := m.decoder(kind)
	if err != nil {
		return nil, nil, err
	}
	pe, err := m.denseEncoding()
	if err != nil {
		return nil, nil, err
	}
	args := []any{in.Embedding, pe}
	if kind.sparse {
		args = append(args, in.Coords, in.Labels)
	}
	if kind.mask {
		args = append(args, in.Mask)
	}
	out, err := exec.Call(args...)
	if err != nil {
		return nil, nil, fmt.Errorf("mask decoder: %w", err)
	}
	return out[0], out[1], nil
}

func (m *Model) decoder(kind decoderKind) (*model.Exec, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.decoders[kind]; ok {
		return e, nil
	}
	cfg := m.Config
	fn := func(scope *model.Scope, inputs []*Node) []*Node {
		g := inputs[0].Graph()
		emb, densePE := inputs[0], inputs[1]
		pe := scope.At("prompt_encoder")
		var sparse, mask *Node
		rest := inputs[2:]
		if kind.sparse {
			sparse = SparsePromptEmbeddings(pe, cfg, rest[0], rest[1])
			rest = rest[2:]
		}
		// Without points or boxes sparse stays nil and MaskDecoder adds no
		// prompt token: the exact equivalent of the official code's empty
		// [B, 0, C] sparse embedding (concatenating it is a no-op), without
		// a zero-length axis in the graph.
		// no_mask_embed stays batch 1: MaskDecoder broadcasts it where the
		// prompts meet it.
		batch := 1
		if kind.mask {
			mask = rest[0]
			batch = mask.Shape().Dim(0)
		}
		dense := DensePromptEmbeddings(pe, cfg, g, mask, batch)
		out := MaskDecoder(scope.At("mask_decoder"), cfg, emb, densePE, sparse, dense)
		return []*Node{out.Masks, out.IoUPred}
	}
	e, err := model.NewExec(m.Backend, m.Store, fn)
	if err != nil {
		return nil, fmt.Errorf("mask decoder: %w", err)
	}
	m.decoders[kind] = e
	return e, nil
}

// denseEncoding returns the prompt encoder's dense positional encoding
// [1, C, g, g] (get_dense_pe), computed once per model: it is an input of
// the decoder graphs rather than recomputed (g*g*C/2 sines and cosines) on
// every prompt.
func (m *Model) denseEncoding() (*tensors.Tensor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.densePE != nil {
		return m.densePE, nil
	}
	cfg := m.Config
	exec, err := model.NewExec(m.Backend, m.Store, func(scope *model.Scope, unused *Node) *Node {
		return DensePositionalEncoding(scope.At("prompt_encoder"), cfg, unused.Graph())
	})
	if err != nil {
		return nil, fmt.Errorf("dense positional encoding: %w", err)
	}
	pe, err := exec.Call1(tensors.FromScalar(float32(0)))
	if err != nil {
		return nil, fmt.Errorf("dense positional encoding: %w", err)
	}
	m.densePE = pe
	return pe, nil
}
