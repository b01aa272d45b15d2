package segsam

import (
	"fmt"
	"slices"
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
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/textembed"
)

// textEmbeddingsPath is the variable holding f_t (not trained).
const textEmbeddingsPath = "/text_enhancer/text_embeddings"

// Model is a SEG-SAM model: its configuration and its weights, kept in the
// store of the SAM it extends (same key paths: SAM's weights load as they are).
type Model struct {
	Config Config
	// SAM runs the image encoder and holds the store and backend.
	SAM *sam.Model

	mu    sync.Mutex
	infer map[bool]*model.Exec // with / without a mask prompt
	// context computes the image context (ImageContext) of an embedding;
	// contexts caches it for the last embeddings Infer saw.
	context  *model.Exec
	contexts []imageContext
}

// imageContext is one cached ImageContext: the embedding it belongs to and
// its tensors (PE, and the presence logits when the model has CO tokens).
type imageContext struct {
	emb *tensors.Tensor
	ctx []*tensors.Tensor
}

// maxCachedContexts bounds the image contexts kept (a server answers
// several images in turn; each context is a few hundred kB at most).
const maxCachedContexts = 8

// New returns a SEG-SAM model with no weights: every variable is initialised
// on first use, from the store's random generator (seed it with Seed).
func New(cfg Config, backend compute.Backend) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("segsam config: %w", err)
	}
	if backend == nil {
		var err error
		if backend, err = engine.Backend(); err != nil {
			return nil, err
		}
	}
	s, err := sam.NewModel(cfg.SAM, backend)
	if err != nil {
		return nil, err
	}
	if cfg.Parts.PixelSkip {
		s.EncoderGraph = func(scope *model.Scope, image *Node) *Node { return EncodeImage(scope, cfg, image) }
		s.EmbeddingChannels = cfg.EmbeddingChannels()
	}
	return &Model{Config: cfg, SAM: s}, nil
}

// Seed seeds the random generator that initialises new variables.
func (m *Model) Seed(seed int64) error { return m.SAM.Store.SetRNGStateFromSeed(seed) }

// SetTextEmbeddings stores the class-description embeddings f_t used by T2VSE.
// Their classes must be the model's vocabulary, in order.
func (m *Model) SetTextEmbeddings(set textembed.Set) error {
	defer m.forgetCompiled() // graphs and image contexts of the old weights
	if err := set.Validate(); err != nil {
		return err
	}
	if !slices.Equal(set.Classes, m.Config.Classes) {
		return fmt.Errorf("text embeddings are for classes %v, the model's vocabulary is %v", set.Classes, m.Config.Classes)
	}
	if set.Dim() != m.Config.TextDim {
		return fmt.Errorf("text embeddings have dimension %d, the model expects %d", set.Dim(), m.Config.TextDim)
	}
	v, err := setVariable(m.SAM.Store, textEmbeddingsPath, tensors.FromFlatDataAndDimensions(set.Matrix(), len(set.Classes), set.Dim()))
	if err != nil {
		return err
	}
	v.SetTrainable(false)
	return nil
}

// setVariable gives the variable at path a value: a new variable, or a new
// value for an existing one (the store's CreateVariable alone would keep an
// existing variable's old value).
func setVariable(store *model.Store, path string, value *tensors.Tensor) (*model.Variable, error) {
	if v := store.GetVariable(path); v != nil {
		if !v.Shape().Equal(value.Shape()) {
			return nil, fmt.Errorf("%s has shape %s, the new value %s", path, v.Shape(), value.Shape())
		}
		return v, v.SetValue(value)
	}
	return store.CreateVariable(path, value)
}

// ExpectedVariables lists every weight of the configuration (state_dict-style
// key -> shape): SAM's and the new parts'.
func ExpectedVariables(cfg Config) (vars map[string][]int, err error) {
	samVars, err := sam.ExpectedVariables(cfg.SAM)
	if err != nil {
		return nil, err
	}
	backend, err := engine.New("")
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("building SEG-SAM symbolically: %v", r)
		}
	}()
	store := model.NewStore()
	g := NewGraph(backend, "expected_variables")
	defer g.Finalize()
	c, grid := cfg.SAM.PromptEncoder.EmbedDim, cfg.SAM.TokenGrid()
	emb := Parameter(g, "emb", shapes.Make(dtypes.Float32, 1, c, grid, grid))
	if cfg.Parts.PixelSkip {
		s := cfg.SAM.ImageEncoder.ImgSize
		image := Parameter(g, "image", shapes.Make(dtypes.Float32, 1, 3, s, s))
		f := PixelFeatures(store.RootScope().At("image_encoder").At("pixel_skip"), image)
		emb = Concatenate([]*Node{emb, packPixels(f)}, 1) // [1, E, g, g]
	}
	coords := Parameter(g, "coords", shapes.Make(dtypes.Float32, 1, 2, 2))
	labels := Parameter(g, "labels", shapes.Make(dtypes.Int32, 1, 2))
	Forward(store.RootScope(), cfg, emb, coords, labels, nil)
	for v := range store.IterVariables() {
		samVars[sam.PathToKey(v.Path())] = v.Shape().Dimensions
	}
	return samVars, nil
}

// Tensors returns the model's weights (state_dict-style names, sorted),
// without the optimizer's state.
func (m *Model) Tensors() ([]*checkpoint.Tensor, error) {
	expected, err := ExpectedVariables(m.Config)
	if err != nil {
		return nil, err
	}
	var out []*checkpoint.Tensor
	for _, name := range sam.VariableNames(expected) {
		v := m.SAM.Store.GetVariable(sam.KeyToPath(name))
		if v == nil || !v.HasValue() {
			return nil, fmt.Errorf("weight %s has no value (the model never ran)", name)
		}
		t, err := v.Value()
		if err != nil {
			return nil, err
		}
		data, err := tensors.CopyFlatData[float32](t)
		if err != nil {
			return nil, fmt.Errorf("weight %s: %w", name, err)
		}
		out = append(out, &checkpoint.Tensor{Name: name, Shape: t.Shape().Dimensions, DType: "float32", Data: data})
	}
	return out, nil
}

// SetWeights stores a state dict. With partial set, only SAM's part of a
// SEG-SAM model must be present (an official SAM / SAM-Med2D checkpoint used
// as initialisation); otherwise every weight must be there. Either way an
// unexpected or mis-shaped tensor is an error.
func (m *Model) SetWeights(sd *checkpoint.StateDict, partial bool) error {
	defer m.forgetCompiled() // graphs and image contexts of the old weights
	expected, err := ExpectedVariables(m.Config)
	if err != nil {
		return err
	}
	if partial {
		sd = sam.ModelTensors(m.Config.SAM, sd) // a TinyViT's BatchNorm counters and ImageNet head
		samOnly, err := sam.ExpectedVariables(m.Config.SAM)
		if err != nil {
			return err
		}
		if err := sd.Match(samOnly); err != nil {
			return fmt.Errorf("initial weights do not fit the SAM part (%s): %w", m.Config.SAM.Name, err)
		}
	} else if err := sd.Match(expected); err != nil {
		return fmt.Errorf("checkpoint does not fit the SEG-SAM configuration: %w", err)
	}
	for _, t := range sd.Tensors {
		v, err := setVariable(m.SAM.Store, sam.KeyToPath(t.Name), tensors.FromFlatDataAndDimensions(t.Data, t.Shape...))
		if err != nil {
			return fmt.Errorf("set %s: %w", t.Name, err)
		}
		if sam.KeyToPath(t.Name) == textEmbeddingsPath {
			v.SetTrainable(false)
		}
	}
	return nil
}

// SetWeightsMatching stores the tensors of sd that the configuration has
// under the same name and shape, and reports the rest: the names it skipped
// (absent from the configuration, or of another shape) and the weights of
// the configuration sd lacks (left to be initialised). It starts a model
// from one with another vocabulary or other parts (e.g. the built-in model
// retrained on more classes keeps its encoder and decoders).
func (m *Model) SetWeightsMatching(sd *checkpoint.StateDict) (loaded int, skipped, missing []string, err error) {
	defer m.forgetCompiled() // graphs and image contexts of the old weights
	expected, err := ExpectedVariables(m.Config)
	if err != nil {
		return 0, nil, nil, err
	}
	have := map[string]bool{}
	same := m.sameVocabulary(sd)
	for _, t := range sd.Tensors {
		shape, ok := expected[t.Name]
		_, perClass := classAxes[t.Name]
		// Class-indexed weights of another vocabulary are skipped even when
		// their shapes agree (the rows would be other classes'): CopyClassRows
		// carries them by class name after initialisation.
		if !ok || !slices.Equal(shape, t.Shape) || (perClass && !same) {
			skipped = append(skipped, t.Name)
			continue
		}
		if _, err := setVariable(m.SAM.Store, sam.KeyToPath(t.Name), tensors.FromFlatDataAndDimensions(t.Data, t.Shape...)); err != nil {
			return 0, nil, nil, fmt.Errorf("set %s: %w", t.Name, err)
		}
		if sam.KeyToPath(t.Name) == textEmbeddingsPath {
			m.SAM.Store.GetVariable(textEmbeddingsPath).SetTrainable(false)
		}
		have[t.Name] = true
		loaded++
	}
	for _, name := range sam.VariableNames(expected) {
		if !have[name] {
			missing = append(missing, name)
		}
	}
	return loaded, skipped, missing, nil
}

// sawFromSag maps Dec_sag's weights to the Dec_saw weights of the same
// design: the two-way transformer, the output upscaling, and the first
// mask token's hypernetwork MLP to the segmentation token's.
var sawFromSag = [][2]string{
	{"/mask_decoder/transformer/", "/semantic_decoder/transformer/"},
	{"/mask_decoder/output_upscaling/", "/semantic_decoder/output_upscaling/"},
	{"/mask_decoder/output_hypernetworks_mlps/0/", "/semantic_decoder/so_hypernetwork/"},
}

// InitSemanticFromBinary starts Dec_saw's transformer, upscaling and
// hypernetwork from Dec_sag's loaded weights (fine-tuning from SAM or
// SAM-Med2D, whose decoder already segments), and returns how many tensors
// it copied. Dec_sag's weights must have values.
func (m *Model) InitSemanticFromBinary() (int, error) {
	defer m.forgetCompiled() // graphs and image contexts of the old weights
	if !m.Config.Parts.SemanticDecoder {
		return 0, fmt.Errorf("the model has no semantic decoder (Dec_saw)")
	}
	store := m.SAM.Store
	type pair struct {
		path string
		t    *tensors.Tensor
	}
	var copies []pair
	for v := range store.IterVariables() {
		for _, p := range sawFromSag {
			if !strings.HasPrefix(v.Path(), p[0]) || !v.HasValue() {
				continue
			}
			t, err := v.Value()
			if err != nil {
				return 0, err
			}
			data, err := tensors.CopyFlatData[float32](t)
			if err != nil {
				return 0, err
			}
			copies = append(copies, pair{p[1] + strings.TrimPrefix(v.Path(), p[0]), tensors.FromFlatDataAndDimensions(data, t.Shape().Dimensions...)})
		}
	}
	if len(copies) == 0 {
		return 0, fmt.Errorf("Dec_sag has no loaded weights to start Dec_saw from (give --init a SAM or SAM-Med2D checkpoint)")
	}
	for _, c := range copies {
		if _, err := setVariable(store, c.path, c.t); err != nil {
			return 0, fmt.Errorf("start %s from Dec_sag: %w", c.path, err)
		}
	}
	return len(copies), nil
}

// InferOutputs are the forward pass's results as tensors.
type InferOutputs struct {
	Binary, IoU *tensors.Tensor // [B, M, 4g, 4g], [B, M]
	// Semantic [B, 4g, 4g], ClassLogits [B, K], Presence [B, K]: nil when the
	// model lacks the part.
	Semantic, ClassLogits, Presence *tensors.Tensor
}

// Infer runs the decoders for inference on prompts already in the
// model-input frame (see sam.Predictor.DecoderInputs). The image context
// (positional encoding, CO tokens' presence, T2VSE's keys and values) is
// computed once per embedding
// and reused by every later call on the same embedding tensor.
func (m *Model) Infer(in sam.DecoderInputs) (InferOutputs, error) {
	if in.Coords == nil {
		return InferOutputs{}, fmt.Errorf("segsam decoders: a point or box prompt is needed (a mask input alone or no prompt is not enough)")
	}
	if in.Embedding != nil {
		c, g := m.Config.EmbeddingChannels(), m.Config.SAM.TokenGrid()
		if d := in.Embedding.Shape().Dimensions; len(d) != 4 || d[1] != c || d[2] != g || d[3] != g {
			return InferOutputs{}, fmt.Errorf("segsam decoders: embedding shape %v, want [1 %d %d %d]", d, c, g, g)
		}
	}
	ctx, err := m.imageContext(in.Embedding)
	if err != nil {
		return InferOutputs{}, fmt.Errorf("segsam decoders: %w", err)
	}
	withMask := in.Mask != nil
	exec, err := m.inferExec(withMask)
	if err != nil {
		return InferOutputs{}, fmt.Errorf("segsam decoders: %w", err)
	}
	// Inputs: embedding, coords, labels, the context's tensors, the mask.
	args := []any{in.Embedding, in.Coords, in.Labels}
	for _, t := range ctx {
		args = append(args, t)
	}
	if withMask {
		args = append(args, in.Mask)
	}
	outs, err := exec.Call(args...)
	if err != nil {
		return InferOutputs{}, fmt.Errorf("segsam decoders: %w", err)
	}
	res := InferOutputs{Binary: outs[0], IoU: outs[1]}
	rest := outs[2:]
	if m.Config.Parts.SemanticDecoder {
		res.Semantic, rest = rest[0], rest[1:]
	}
	if m.Config.HasClasses() {
		res.ClassLogits, rest = rest[0], rest[1:]
	}
	if m.Config.Parts.COTokens {
		res.Presence = rest[0]
	}
	return res, nil
}

// inferExec returns (building it on first use) the decoders' graph with or
// without a mask prompt.
func (m *Model) inferExec(withMask bool) (*model.Exec, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if exec := m.infer[withMask]; exec != nil {
		return exec, nil
	}
	cfg := m.Config
	exec, err := model.NewExec(m.SAM.Backend, m.SAM.Store, func(scope *model.Scope, in []*Node) []*Node {
		ctx, used := ImageContextFromNodes(cfg, in[3:])
		next := 3 + used
		var mask *Node
		if withMask {
			mask = in[next]
		}
		out := ForwardInContext(scope, cfg, in[0], ctx, in[1], in[2], mask)
		outs := []*Node{out.Binary, out.IoU}
		if cfg.Parts.SemanticDecoder {
			outs = append(outs, out.Semantic.Mask)
		}
		if out.ClassLogits != nil {
			outs = append(outs, out.ClassLogits)
		}
		if cfg.Parts.COTokens {
			outs = append(outs, out.Semantic.Presence)
		}
		return outs
	})
	if err != nil {
		return nil, err
	}
	if m.infer == nil {
		m.infer = map[bool]*model.Exec{}
	}
	m.infer[withMask] = exec
	return exec, nil
}

// imageContext returns the image context's tensors of an embedding
// [I, C, g, g] (ImageContext.Nodes: PE [1, C, g, g], presence [I, K] with
// CO tokens, T2VSE's keys and values); computed on the first call for that
// tensor, then taken from the cache.
func (m *Model) imageContext(emb *tensors.Tensor) ([]*tensors.Tensor, error) {
	if emb == nil {
		return nil, fmt.Errorf("no image embedding")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, c := range m.contexts {
		if c.emb == emb {
			// Most recent last.
			m.contexts = append(append(m.contexts[:i:i], m.contexts[i+1:]...), c)
			return c.ctx, nil
		}
	}
	if m.context == nil {
		cfg := m.Config
		exec, err := model.NewExec(m.SAM.Backend, m.SAM.Store, func(scope *model.Scope, emb *Node) []*Node {
			return NewImageContext(scope, cfg, emb).Nodes()
		})
		if err != nil {
			return nil, fmt.Errorf("image context: %w", err)
		}
		m.context = exec
	}
	ctx, err := m.context.Call(emb)
	if err != nil {
		return nil, fmt.Errorf("image context: %w", err)
	}
	if len(m.contexts) == maxCachedContexts {
		m.contexts = m.contexts[1:]
	}
	m.contexts = append(m.contexts, imageContext{emb: emb, ctx: ctx})
	return ctx, nil
}

// forgetCompiled drops the compiled decoder graphs (they hold the variables
// they were built with) and the cached image contexts: the weights changed.
func (m *Model) forgetCompiled() {
	m.mu.Lock()
	m.infer, m.context, m.contexts = nil, nil, nil
	m.mu.Unlock()
}

// Describe is a one-line summary of the model.
func (m *Model) Describe() string {
	var parts []string
	p := m.Config.Parts
	for _, x := range []struct {
		on   bool
		name string
	}{{p.ClassToken, "class token"}, {p.SemanticDecoder, "Dec_saw"}, {p.COTokens, "CO tokens"}, {p.FullImageSemantic, "full-image semantic"}, {p.TextEnhancer, "T2VSE"}, {p.CMSA, "CMSA"}, {p.BoxPrior, "box prior"}, {p.PixelSkip, "pixel skip"}} {
		if x.on {
			parts = append(parts, x.name)
		}
	}
	return fmt.Sprintf("SEG-SAM %s on %s (%d classes; %s)", m.Config.Variant, m.Config.SAM.Name, m.Config.NumClasses(), strings.Join(parts, ", "))
}

// Materialize gives every weight of the model a value: the ones not loaded
// from a checkpoint are initialised (from the store's seeded generator), so
// that the model can be saved whole even if a part (e.g. the mask-prompt
// down-scaling, unused in training) never ran.
func (m *Model) Materialize() error {
	cfg := m.Config
	s, c, grid := cfg.SAM.ImageEncoder.ImgSize, cfg.SAM.PromptEncoder.EmbedDim, cfg.SAM.TokenGrid()
	exec, err := model.NewExec(m.SAM.Backend, m.SAM.Store, func(scope *model.Scope, image, mask *Node) *Node {
		g := image.Graph()
		scope.SetTraining(g, true)
		emb := EncodeImage(scope, cfg, image)
		coords := Zeros(g, shapes.Make(dtypes.Float32, 1, 2, 2))
		labels := Zeros(g, shapes.Make(dtypes.Int32, 1, 2))
		out := Forward(scope, cfg, emb, coords, labels, nil)
		dense := sam.DensePromptEmbeddings(scope.At("prompt_encoder"), cfg.SAM, g, mask, 1)
		return Add(ReduceAllSum(out.IoU), ReduceAllSum(dense))
	})
	if err != nil {
		return err
	}
	_, err = exec.Call(tensors.FromFlatDataAndDimensions(make([]float32, 3*s*s), 1, 3, s, s),
		tensors.FromFlatDataAndDimensions(make([]float32, 16*grid*grid), 1, 1, 4*grid, 4*grid))
	_ = c
	if err != nil {
		return fmt.Errorf("initialise weights: %w", err)
	}
	return nil
}
