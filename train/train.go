package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	gomlxckpt "github.com/gomlx/gomlx/ml/model/checkpoint"
	"github.com/gomlx/gomlx/ml/train/optimizer"

	"github.com/segsam/segsam/checkpoint"
	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/internal/embcache"
	"github.com/segsam/segsam/internal/progress"
	"github.com/segsam/segsam/segsam"
	"github.com/segsam/segsam/textembed"
)

// EncoderMode says which image-encoder weights train.
type EncoderMode string

const (
	// EncoderFrozen is the paper's recipe: embeddings are computed once and cached.
	EncoderFrozen EncoderMode = "frozen"
	// EncoderAdapters trains SAM-Med2D's adapters only (no cache).
	EncoderAdapters EncoderMode = "adapters"
	// EncoderFull trains the whole encoder (no cache).
	EncoderFull EncoderMode = "full"
)

// Options configure a training run. Zero values take the paper's recipe.
type Options struct {
	Train, Val *dataset.Dataset
	// Model is the configuration to train (SAM part, variant, vocabulary).
	Model segsam.Config
	// Init optionally starts the weights from a checkpoint: an official SAM /
	// SAM-Med2D file (its SAM part) or a segsam checkpoint (all of it).
	Init string
	// InitMatching takes from a segsam Init checkpoint every weight whose
	// name and shape fit, and initialises the rest (another vocabulary, other
	// parts), instead of requiring the same configuration.
	InitMatching bool
	// SemanticFromBinary starts Dec_saw's transformer, upscaling and
	// hypernetwork from Dec_sag's initial weights (segsam.InitSemanticFromBinary).
	SemanticFromBinary bool
	// Text are the class-description embeddings for T2VSE (its classes must
	// be the vocabulary).
	Text *textembed.Set
	Out  string // run folder: checkpoints, state, history

	Epochs          int     // 15
	LearningRate    float64 // 1e-4
	HalveAt         []int   // epochs after which the rate halves: 5, 10
	ImagesPerStep   int     // images per optimisation step (2)
	ObjectsPerImage int     // 5
	// BoxFraction is the share of box prompts: 0 takes the paper's 0.5, and
	// PointsOnly (negative) gives single points only.
	BoxFraction float64
	Seed        int64
	Encoder     EncoderMode
	CacheDir    string // default Out/../cache or Out/cache
	// MaxStepsPerEpoch caps an epoch (0: every image once).
	MaxStepsPerEpoch int
	// Augment transforms every training image per step (augment.go); it
	// needs the encoder to train (a frozen encoder's embeddings are cached).
	Augment bool
	// Balance draws images with each dataset weighted by 1/sqrt(its size)
	// and prefers objects of rare classes (epochBatches).
	Balance bool
	// ClickRounds is the number of SAM-Med2D click rounds after each step's
	// first prompt (clicks.go): each adds points from the error region and
	// the previous logits as mask prompt, and is its own optimiser step.
	// SAM-Med2D uses 8; 0 (the default) trains the first prompt only.
	ClickRounds int
	// Accumulate sums the gradients of this many steps before one update
	// (accumulate.go): the effective batch is Accumulate·ImagesPerStep
	// images. 0 or 1: every step updates.
	Accumulate int
	Log        io.Writer
}

func (o *Options) defaults() {
	if o.Epochs == 0 {
		o.Epochs = 15
	}
	if o.LearningRate == 0 {
		o.LearningRate = 1e-4
	}
	if o.HalveAt == nil {
		o.HalveAt = []int{5, 10}
	}
	if o.ImagesPerStep == 0 {
		o.ImagesPerStep = 2
	}
	if o.ObjectsPerImage == 0 {
		o.ObjectsPerImage = 5
	}
	if o.BoxFraction == 0 {
		o.BoxFraction = 0.5
	}
	if o.BoxFraction < 0 {
		o.BoxFraction = 0
	}
	if o.Encoder == "" {
		o.Encoder = EncoderFrozen
	}
	if o.Accumulate == 0 {
		o.Accumulate = 1
	}
	if o.CacheDir == "" {
		o.CacheDir = filepath.Join(o.Out, "embedding-cache")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// PointsOnly as Options.BoxFraction trains with single-point prompts only.
const PointsOnly = -1.0

// EpochStats are one epoch's mean losses and validation results.
type EpochStats struct {
	Epoch        int                `json:"epoch"`
	LearningRate float64            `json:"learning_rate"`
	Train        map[string]float64 `json:"train"`
	Val          map[string]float64 `json:"val,omitempty"`
	Seconds      float64            `json:"seconds"`
	Objects      int                `json:"objects"`
}

// runState is what RUN_DIR/state.json records to resume a run.
type runState struct {
	ConfigHash  string       `json:"config_hash"`
	EpochsDone  int          `json:"epochs_done"`
	History     []EpochStats `json:"history"`
	ObjectsSeen int          `json:"objects_seen"`
}

// Result summarises a finished run.
type Result struct {
	Checkpoint string
	History    []EpochStats
	// ObjectsPerSecond is the training throughput (excluding the first,
	// compiling step).
	ObjectsPerSecond float64
	// Finished is set when the run folder already held every epoch asked
	// for: nothing was trained or written.
	Finished bool
}

// Run trains a model. A run folder that holds the state of an earlier run
// with the same options resumes after its last finished epoch.
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts.defaults()
	cfg := opts.Model
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Train == nil || len(opts.Train.Images) == 0 {
		return nil, errors.New("train: empty training set")
	}
	if cfg.Parts.TextEnhancer && opts.Text == nil {
		return nil, errors.New("train: the text enhancer (T2VSE) needs text embeddings (--text-embeddings)")
	}
	if opts.Augment && opts.Encoder == EncoderFrozen {
		return nil, errors.New("train: augmentation needs the encoder to train (--train-encoder full or adapters): a frozen encoder's embeddings are computed once")
	}
	if opts.BoxFraction < 0 || opts.BoxFraction > 1 {
		return nil, fmt.Errorf("train: box fraction %g is outside [0, 1]", opts.BoxFraction)
	}
	if opts.ClickRounds < 0 || opts.Accumulate < 1 {
		return nil, fmt.Errorf("train: click rounds (%d) must be ≥ 0 and gradient accumulation (%d) ≥ 1", opts.ClickRounds, opts.Accumulate)
	}
	if opts.ClickRounds > 0 && opts.Accumulate > 1 {
		return nil, errors.New("train: click rounds and gradient accumulation do not combine yet (each click round is its own optimiser step)")
	}
	if opts.Encoder == EncoderAdapters && cfg.SAM.ImageEncoder.Adapter == nil {
		return nil, errors.New("train: --train-encoder adapters needs an encoder with adapters (SAM-Med2D)")
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, err
	}
	log := opts.Log
	hash := configHash(opts)
	state := runState{ConfigHash: hash}
	statePath := filepath.Join(opts.Out, "state.json")
	if data, err := os.ReadFile(statePath); err == nil {
		if err := json.Unmarshal(data, &state); err != nil {
			return nil, fmt.Errorf("resume: %s: %w", statePath, err)
		}
		if state.ConfigHash != hash {
			return nil, fmt.Errorf("resume: %s holds a run with other options; use another --out (or delete it)", opts.Out)
		}
		fmt.Fprintf(log, "resuming %s after epoch %d\n", opts.Out, state.EpochsDone)
	}

	if state.EpochsDone >= opts.Epochs {
		fmt.Fprintf(log, "%s: already finished (%d of %d epochs); nothing to do (raise --epochs to train on)\n", opts.Out, state.EpochsDone, opts.Epochs)
		return &Result{Checkpoint: filepath.Join(opts.Out, "checkpoint.safetensors"), History: state.History, Finished: true}, nil
	}
	// The modality prior's table (segsam/modality.go): after the run's
	// hash, so that runs started before it existed still resume.
	cfg.ModalityClasses = segsam.ModalityClassesOf(opts.Train)
	m, err := segsam.New(cfg, nil)
	if err != nil {
		return nil, err
	}
	store := m.SAM.Store
	// Training state (weights, Adam moments, step, random state) lives in
	// RUN_DIR/state; it reloads itself into the store when present.
	handler, err := gomlxckpt.Build(store).Dir(filepath.Join(opts.Out, "state")).Keep(1).Done()
	if err != nil {
		return nil, fmt.Errorf("train state: %w", err)
	}
	if state.EpochsDone == 0 {
		var initSD *checkpoint.StateDict // a segsam checkpoint of another configuration (--init-matching)
		if err := m.Seed(opts.Seed); err != nil {
			return nil, err
		}
		if opts.Init != "" {
			sd, err := checkpoint.Load(opts.Init)
			if err != nil {
				return nil, err
			}
			switch {
			case !segsam.IsCheckpoint(sd):
				err = m.SetWeights(sd, true)
			case opts.InitMatching:
				initSD = sd
				var loaded int
				var skipped, missing []string
				loaded, skipped, missing, err = m.SetWeightsMatching(sd)
				fmt.Fprintf(log, "--init %s: %d weights loaded, %d of other names or shapes skipped, %d new (initialised): %s\n",
					opts.Init, loaded, len(skipped), len(missing), summarise(missing, 8))
			default:
				err = m.SetWeights(sd, false)
			}
			if err != nil {
				return nil, fmt.Errorf("--init %s: %w", opts.Init, err)
			}
		}
		if opts.SemanticFromBinary {
			n, err := m.InitSemanticFromBinary()
			if err != nil {
				return nil, fmt.Errorf("--init-saw-from-sag: %w", err)
			}
			fmt.Fprintf(log, "Dec_saw: %d tensors started from Dec_sag's\n", n)
		}
		if opts.Text != nil {
			if err := m.SetTextEmbeddings(*opts.Text); err != nil {
				return nil, err
			}
		}
		if err := m.Materialize(); err != nil {
			return nil, err
		}
		if initSD != nil {
			shared, ws, err := m.CopyClassRows(initSD)
			if err != nil {
				return nil, fmt.Errorf("--init %s: %w", opts.Init, err)
			}
			if len(ws) > 0 {
				fmt.Fprintf(log, "--init %s: rows of %d shared classes carried by name in %d class-indexed weights; %d new classes start anew\n",
					opts.Init, shared, len(ws), len(cfg.Classes)-shared)
			}
		}
	}

	vocab := map[string]int{}
	for i, c := range cfg.Classes {
		vocab[c] = i
	}
	var cache *embcache.Cache
	if opts.Encoder == EncoderFrozen {
		if cache, err = newEncoderCache(m.SAM, opts.CacheDir); err != nil {
			return nil, err
		}
	}
	trainSet, err := loadSamples(ctx, opts.Train, m.SAM, vocab, cache, log)
	if err != nil {
		return nil, err
	}
	var valSet []*sample
	if opts.Val != nil && len(opts.Val.Images) > 0 {
		if valSet, err = loadSamples(ctx, opts.Val, m.SAM, vocab, cache, log); err != nil {
			return nil, err
		}
	}
	if cache != nil {
		fmt.Fprintf(log, "embedding cache %s: %d reused, %d computed\n", opts.CacheDir, cache.Hits, cache.Misses)
	}

	tr, err := newTrainer(m, opts)
	if err != nil {
		return nil, err
	}
	res := &Result{History: state.History}
	var objects int
	var trainTime time.Duration
	for epoch := state.EpochsDone + 1; epoch <= opts.Epochs; epoch++ {
		lr := opts.LearningRate
		for _, e := range opts.HalveAt {
			if epoch > e {
				lr /= 2
			}
		}
		if err := tr.setLearningRate(lr); err != nil {
			return nil, err
		}
		start := time.Now()
		batches := epochBatches(trainSet, opts, epoch)
		bar := progress.New(log, len(batches), fmt.Sprintf("epoch %d/%d", epoch, opts.Epochs))
		sums := make([]float64, len(segsam.LossNames))
		for i, bt := range batches {
			if err := ctx.Err(); err != nil {
				bar.Done()
				return nil, fmt.Errorf("interrupted in epoch %d (the run resumes after epoch %d): %w", epoch, epoch-1, err)
			}
			t0 := time.Now()
			loss, err := tr.step(bt)
			if err != nil {
				bar.Done()
				return nil, fmt.Errorf("epoch %d step %d: %w", epoch, i+1, err)
			}
			if math.IsNaN(float64(loss[0])) {
				bar.Done()
				return nil, fmt.Errorf("epoch %d step %d: the loss is NaN", epoch, i+1)
			}
			if i > 0 || epoch > state.EpochsDone+1 {
				trainTime += time.Since(t0)
				objects += bt.size()
			}
			for j, v := range loss {
				sums[j] += float64(v)
			}
			bar.SetStatus(fmt.Sprintf("loss %.3f (bin %.3f sem %.3f bce %.3f cmsa %.3f)", loss[0], loss[1], loss[5], loss[8], loss[9]))
			bar.Add(1)
		}
		bar.Done()
		st := EpochStats{Epoch: epoch, LearningRate: lr, Train: map[string]float64{}, Objects: len(batches) * opts.ImagesPerStep * opts.ObjectsPerImage}
		for j, name := range segsam.LossNames {
			st.Train[name] = sums[j] / float64(len(batches))
		}
		if tr.clickSteps > 0 {
			// The click rounds' mean loss terms, as click_<term>.
			for j, name := range segsam.LossNames {
				st.Train["click_"+name] = tr.clickSums[j] / float64(tr.clickSteps)
			}
			tr.clickSums, tr.clickSteps = nil, 0
		}
		if len(valSet) > 0 {
			if st.Val, err = tr.validate(valSet, opts); err != nil {
				return nil, err
			}
		}
		st.Seconds = time.Since(start).Seconds()
		state.History = append(state.History, st)
		state.EpochsDone = epoch
		fmt.Fprintf(log, "epoch %d: %s\n", epoch, formatStats(st))
		// Save the weights (segsam checkpoint), the training state, then the
		// state record: a kill loses at most the epoch in progress.
		ckpt := filepath.Join(opts.Out, "checkpoint.safetensors")
		if err := m.Save(ckpt, map[string]string{"epoch": fmt.Sprint(epoch)}); err != nil {
			return nil, err
		}
		if err := handler.Save(); err != nil {
			return nil, fmt.Errorf("save train state: %w", err)
		}
		if err := writeJSONAtomic(statePath, state); err != nil {
			return nil, err
		}
		if err := writeHistory(opts.Out, state.History); err != nil {
			return nil, err
		}
		res.Checkpoint = ckpt
	}
	res.History = state.History
	if trainTime > 0 {
		res.ObjectsPerSecond = float64(objects) / trainTime.Seconds()
	}
	if res.Checkpoint == "" {
		res.Checkpoint = filepath.Join(opts.Out, "checkpoint.safetensors")
	}
	return res, nil
}

// configHash identifies the options that must not change across a resume.
func configHash(o Options) string {
	c, _ := json.Marshal(o.Model)
	names := func(d *dataset.Dataset) []string {
		if d == nil {
			return nil
		}
		var n []string
		for _, e := range d.Images {
			n = append(n, e.Path)
		}
		return n
	}
	text := ""
	if o.Text != nil {
		text = o.Text.Fingerprint()
	}
	// The number of epochs is left out: a finished run can be extended.
	h := fmt.Sprintf("%s|%s|%v|%v|%v|%v|%s|%g|%v|%d|%d|%g|%d|%s|%d|%v|%v", c, o.Init, o.InitMatching, o.SemanticFromBinary, names(o.Train), names(o.Val), text,
		o.LearningRate, o.HalveAt, o.ImagesPerStep, o.ObjectsPerImage, o.BoxFraction, o.Seed, o.Encoder, o.MaxStepsPerEpoch, o.Augment, o.Balance)
	// Options added later join the hash only when set, so that older runs
	// still resume.
	if o.ClickRounds > 0 {
		h += fmt.Sprintf("|clicks=%d", o.ClickRounds)
	}
	if o.Accumulate > 1 {
		h += fmt.Sprintf("|accumulate=%d", o.Accumulate)
	}
	return shortHash(h)
}

// batch is one optimisation step: images, per image the chosen objects, and
// the seed of the step's own random stream (prompts, augmentation).
type batch struct {
	samples []*sample
	objects [][]int // per image, the chosen object indices
	seed    uint64
}

func (b batch) size() int {
	n := 0
	for _, o := range b.objects {
		n += len(o)
	}
	return n
}

// epochBatches draws the epoch's steps: the images (shuffled, or with
// Balance drawn with replacement, each dataset weighted by 1/sqrt(its
// size)) and per image ObjectsPerImage objects (with replacement when it
// has fewer; with Balance rare classes first). It depends only on the seed
// and the epoch, so a resumed run draws the same.
func epochBatches(set []*sample, o Options, epoch int) []batch {
	rng := rand.New(rand.NewPCG(uint64(o.Seed), uint64(epoch)))
	order := rng.Perm(len(set))
	var classWeight []float64
	if o.Balance && epoch > 0 {
		order = balancedOrder(set, rng)
		classWeight = classWeights(set)
	}
	var out []batch
	for start := 0; start+o.ImagesPerStep <= len(order); start += o.ImagesPerStep {
		b := batch{seed: rng.Uint64()}
		for _, idx := range order[start : start+o.ImagesPerStep] {
			sm := set[idx]
			var objs []int
			switch {
			case len(sm.objects) < o.ObjectsPerImage:
				for range o.ObjectsPerImage {
					objs = append(objs, rng.IntN(len(sm.objects)))
				}
			case classWeight != nil:
				objs = weightedPick(sm, classWeight, o.ObjectsPerImage, rng)
			default:
				objs = rng.Perm(len(sm.objects))[:o.ObjectsPerImage]
			}
			b.samples = append(b.samples, sm)
			b.objects = append(b.objects, objs)
		}
		out = append(out, b)
		if o.MaxStepsPerEpoch > 0 && len(out) >= o.MaxStepsPerEpoch {
			break
		}
	}
	if k := o.Accumulate; k > 1 {
		// Whole groups only: an epoch ends with the accumulators empty.
		out = out[:len(out)/k*k]
	}
	return out
}

// balancedOrder draws len(set) images with replacement, an image of a
// dataset of n images with weight 1/sqrt(n): small datasets are seen more
// often than their share, large ones less, none drowns the others.
func balancedOrder(set []*sample, rng *rand.Rand) []int {
	count := map[string]int{}
	for _, sm := range set {
		count[datasetOf(sm)]++
	}
	cum := make([]float64, len(set))
	total := 0.0
	for i, sm := range set {
		total += 1 / math.Sqrt(float64(count[datasetOf(sm)]))
		cum[i] = total
	}
	order := make([]int, len(set))
	for i := range order {
		u := rng.Float64() * total
		order[i] = min(sort.SearchFloat64s(cum, u), len(set)-1)
	}
	return order
}

// datasetOf names the dataset an image came from (its modality when the
// set does not say).
func datasetOf(sm *sample) string {
	if d := sm.entry.Meta.Dataset; d != "" {
		return d
	}
	return sm.entry.Modality
}

// classWeights is 1/sqrt(number of objects) per class index.
func classWeights(set []*sample) []float64 {
	var n []float64
	for _, sm := range set {
		for _, ob := range sm.objects {
			for len(n) <= ob.class {
				n = append(n, 0)
			}
			n[ob.class]++
		}
	}
	for i, v := range n {
		if v > 0 {
			n[i] = 1 / math.Sqrt(v)
		}
	}
	return n
}

// weightedPick draws k distinct objects of sm, each with its class's weight
// (Efraimidis-Spirakis: the k largest u^(1/w)).
func weightedPick(sm *sample, w []float64, k int, rng *rand.Rand) []int {
	type keyed struct {
		key float64
		i   int
	}
	keys := make([]keyed, len(sm.objects))
	for i, ob := range sm.objects {
		keys[i] = keyed{math.Pow(rng.Float64(), 1/w[ob.class]), i}
	}
	sort.Slice(keys, func(a, b int) bool { return keys[a].key > keys[b].key })
	out := make([]int, k)
	for i := range out {
		out[i] = keys[i].i
	}
	return out
}

// stepImage is one image of a prepared step: its model input (or cached
// embedding) and its objects after augmentation.
type stepImage struct {
	sample  *sample
	input   []float32 // [3*S*S] normalised (trained encoder)
	objects []object  // all of the image's objects (augmented with the image)
	chosen  []int
	prompts []prompt
}

// prepare augments (when asked) each image of the batch and draws the
// prompts of its chosen objects, from the step's own random stream.
func (t *trainer) prepare(b batch, augment bool) []stepImage {
	rng := rand.New(rand.NewPCG(b.seed, uint64(t.opts.Seed)))
	cfg := t.m.Config.SAM
	out := make([]stepImage, len(b.samples))
	for i, sm := range b.samples {
		im := stepImage{sample: sm, objects: sm.objects, chosen: b.objects[i]}
		if sm.pix != nil {
			pix := sm.pix
			if augment {
				pix, im.objects = augmentSample(sm, im.chosen, t.s, rng)
			}
			im.input = normalisePixels(pix, cfg.PixelMean, cfg.PixelStd, make([]float32, 0, len(pix)))
		}
		for _, oi := range im.chosen {
			if rng.Float64() < t.opts.BoxFraction {
				im.prompts = append(im.prompts, boxPrompt(im.objects[oi], t.s, rng))
			} else {
				im.prompts = append(im.prompts, pointPrompt(im.objects[oi], t.s, rng))
			}
		}
		out[i] = im
	}
	return out
}

// trainer holds the compiled training and validation steps.
type trainer struct {
	m    *segsam.Model
	opts Options
	// step1 is a step's first round; with Accumulate > 1 it only adds to
	// the accumulated gradients and applyExec is the step that applies
	// them; clickExec is a click round (ClickRounds > 0).
	step1, applyExec, clickExec *model.Exec
	valExec                     *model.Exec
	steps                       int // steps taken by this trainer (accumulation phase)
	clickSums                   []float64
	clickSteps                  int
	lrPath                      string
	classes                     int
	s, c, gr                    int
}

func newTrainer(m *segsam.Model, o Options) (*trainer, error) {
	cfg := m.Config
	t := &trainer{m: m, opts: o, classes: cfg.NumClasses(), s: cfg.SAM.ImageEncoder.ImgSize, c: cfg.EmbeddingChannels(), gr: cfg.SAM.TokenGrid()}
	store := m.SAM.Store
	// Which encoder weights train.
	trainable := func(path string) bool {
		if !strings.HasPrefix(path, "/image_encoder/") {
			return true
		}
		switch o.Encoder {
		case EncoderFull:
			return true
		case EncoderAdapters:
			return strings.Contains(path, "/Adapter/")
		}
		return false
	}
	opt := optimizer.Adam().LearningRate(o.LearningRate).Epsilon(1e-8).Done()
	// kind of graph: a first round (or validation), or a click round.
	const (
		firstRound = iota
		clickRound
	)
	// update: 0 none (validation), 1 update (or accumulate only), 2 apply
	// the accumulated gradients.
	build := func(kind, update int) func(scope *model.Scope, in []*Node) []*Node {
		return func(scope *model.Scope, in []*Node) []*Node {
			g := in[0].Graph()
			scope.SetTraining(g, true) // read variables live (see notes/engine.md)
			emb := in[0]
			var maskIn *Node
			if kind == clickRound {
				// in[0] is the first round's embedding [B, C, g, g], in[8]
				// the previous round's low-res logits [B, 1, 4g, 4g].
				maskIn = in[8]
			} else if o.Encoder != EncoderFrozen {
				// in[0] are images [I, 3, S, S]; objects pick their image.
				feats := segsam.EncodeImage(scope, cfg, in[0])                 // [I, E, g, g]
				pickImg := OneHot(in[8], feats.Shape().Dim(0), dtypes.Float32) // [B, I]
				emb = Einsum("bi,ichw->bchw", pickImg, feats)
			}
			out := segsam.Forward(scope, cfg, emb, in[1], in[2], maskIn)
			// Freeze what must not train (before the optimizer collects the
			// trainable variables): the encoder unless asked, the text
			// embeddings and the positional-encoding buffer.
			for v := range store.IterVariables() {
				if !trainable(v.Path()) || v.Path() == "/text_enhancer/text_embeddings" || strings.HasSuffix(v.Path(), "positional_encoding_gaussian_matrix") {
					v.SetTrainable(false)
				}
			}
			tg := segsam.Targets{Mask: in[3], Class: in[4], Presence: in[5], Multimask: in[6]}
			if cfg.Parts.FullImageSemantic {
				tg.ClassMasks = in[7]
			}
			l := segsam.Loss(cfg, out, tg)
			if update > 0 {
				switch {
				case o.Accumulate > 1:
					accumulateGraph(scope, opt, l.Total, o.Accumulate, update == 2)
				default:
					opt.UpdateGraph(scope, g, l.Total)
				}
				if o.ClickRounds == 0 {
					return []*Node{l.Vector(g)}
				}
				// What the next click round needs: the prediction at S×S
				// [B, S, S], its low-res logits [B, 1, 4g, 4g] and the
				// embedding [B, C, g, g].
				low := chosenLowRes(out, in[6])
				logits := upsampleLogits(InsertAxes(low, 1), t.s)
				pred := Squeeze(ConvertDType(GreaterThan(logits, ZerosLike(logits)), dtypes.Float32), 1)
				return []*Node{l.Vector(g), pred, InsertAxes(low, 1), StopGradient(emb)}
			}
			// Validation: per-object binary Dice (token 0) and class correctness.
			return []*Node{l.Vector(g), objectDice(out, in[3], in[6], t.s), classCorrect(out, in[4])}
		}
	}
	var err error
	if t.step1, err = model.NewExec(m.SAM.Backend, store, build(firstRound, 1)); err != nil {
		return nil, err
	}
	if o.Accumulate > 1 {
		if t.applyExec, err = model.NewExec(m.SAM.Backend, store, build(firstRound, 2)); err != nil {
			return nil, err
		}
	}
	if o.ClickRounds > 0 {
		if t.clickExec, err = model.NewExec(m.SAM.Backend, store, build(clickRound, 1)); err != nil {
			return nil, err
		}
	}
	if t.valExec, err = model.NewExec(m.SAM.Backend, store, build(firstRound, 0)); err != nil {
		return nil, err
	}
	// Create the learning-rate variable now so that it can be set per epoch.
	lr := optimizer.LearningRateVar(store.RootScope(), dtypes.Float32, o.LearningRate)
	t.lrPath = lr.Path()
	return t, nil
}

func (t *trainer) setLearningRate(lr float64) error {
	v := t.m.SAM.Store.GetVariable(t.lrPath)
	if v == nil {
		return fmt.Errorf("learning-rate variable %s missing", t.lrPath)
	}
	return v.SetValue(tensors.FromScalar(float32(lr)))
}

// inputs turns a prepared step into the step's input tensors.
func (t *trainer) inputs(step []stepImage) []any {
	n := 0
	for _, im := range step {
		n += len(im.chosen)
	}
	s, c, g, k := t.s, t.c, t.gr, t.classes
	coords := make([]float32, 0, n*4)
	labels := make([]int32, 0, n*2)
	masks := make([]float32, 0, n*s*s)
	class := make([]int32, 0, n)
	presence := make([]float32, 0, n*k)
	multi := make([]float32, 0, n)
	imgIdx := make([]int32, 0, n)
	var classMasks []float32
	full := t.m.Config.Parts.FullImageSemantic
	var emb []float32
	var images []float32
	for i, im := range step {
		sm := im.sample
		var union [][]float32
		if full {
			union = classUnion(im.objects, k, s, 4*g)
		}
		for j, oi := range im.chosen {
			o := im.objects[oi]
			p := im.prompts[j]
			coords = append(coords, p.coords[:]...)
			labels = append(labels, p.labels[:]...)
			for _, v := range o.mask {
				masks = append(masks, float32(v))
			}
			class = append(class, int32(o.class))
			presence = append(presence, sm.presence...)
			if p.point {
				multi = append(multi, 1)
			} else {
				multi = append(multi, 0)
			}
			imgIdx = append(imgIdx, int32(i))
			if sm.emb != nil {
				emb = append(emb, sm.emb...)
			}
			if full {
				for _, u := range union {
					classMasks = append(classMasks, u...)
				}
			}
		}
		images = append(images, im.input...)
	}
	var first *tensors.Tensor
	if t.opts.Encoder == EncoderFrozen {
		first = tensors.FromFlatDataAndDimensions(emb, n, c, g, g)
	} else {
		first = tensors.FromFlatDataAndDimensions(images, len(step), 3, s, s)
	}
	if !full {
		classMasks = make([]float32, n) // unused placeholder [B, 1]
	}
	cmShape := []int{n, 1}
	if full {
		cmShape = []int{n, k, 4 * g, 4 * g}
	}
	return []any{
		first,
		tensors.FromFlatDataAndDimensions(coords, n, 2, 2),
		tensors.FromFlatDataAndDimensions(labels, n, 2),
		tensors.FromFlatDataAndDimensions(masks, n, s, s),
		tensors.FromFlatDataAndDimensions(class, n),
		tensors.FromFlatDataAndDimensions(presence, n, k),
		tensors.FromFlatDataAndDimensions(multi, n),
		tensors.FromFlatDataAndDimensions(classMasks, cmShape...),
		tensors.FromFlatDataAndDimensions(imgIdx, n),
	}
}

// classUnion is the image's per-class union mask, sampled at the low-res
// grid (cell centres): [K][r*r].
func classUnion(objects []object, k, s, r int) [][]float32 {
	out := make([][]float32, k)
	for i := range out {
		out[i] = make([]float32, r*r)
	}
	step := s / r
	for _, o := range objects {
		for y := 0; y < r; y++ {
			for x := 0; x < r; x++ {
				if o.mask[(y*step+step/2)*s+x*step+step/2] != 0 {
					out[o.class][y*r+x] = 1
				}
			}
		}
	}
	return out
}

// step trains on one batch: its first round (accumulated, or applied when
// the accumulation group is full), then its click rounds. It returns the
// first round's loss terms.
func (t *trainer) step(b batch) ([]float32, error) {
	prepared := t.prepare(b, t.opts.Augment)
	in := t.inputs(prepared)
	exec := t.step1
	t.steps++
	if t.opts.Accumulate > 1 && t.steps%t.opts.Accumulate == 0 {
		exec = t.applyExec
	}
	out, err := exec.Call(in...)
	if err != nil {
		return nil, err
	}
	if t.opts.ClickRounds > 0 {
		sums, err := t.clickRounds(b, prepared, in, out)
		if err != nil {
			return nil, err
		}
		if t.clickSums == nil {
			t.clickSums = make([]float64, len(sums))
		}
		for j, v := range sums {
			t.clickSums[j] += v
		}
		t.clickSteps += t.opts.ClickRounds
	}
	return tensors.CopyFlatData[float32](out[0])
}

// chosenLowRes is Dec_sag's low-res logits of the mask inference would
// choose (token 0 for a box, the highest predicted IoU of the multimask
// tokens for a point): [B, 4g, 4g].
func chosenLowRes(out segsam.Outputs, multimask *Node) *Node {
	m := out.Binary.Shape().Dim(1)
	best := AddScalar(ArgMax(Slice(out.IoU, AxisRange(), AxisRange(1, m)), -1, dtypes.Int32), 1)
	first := ZerosLike(best)
	isMulti := GreaterThan(multimask, ZerosLike(multimask))
	pick := OneHot(Where(isMulti, best, first), m, dtypes.Float32) // [B, M]
	return ReduceSum(Mul(out.Binary, InsertAxes(pick, -1, -1)), 1) // [B, 4g, 4g]
}

// validate runs the loss and metrics on the validation set with fixed
// prompts (the same every epoch).
func (t *trainer) validate(set []*sample, o Options) (map[string]float64, error) {
	vo := o
	vo.MaxStepsPerEpoch = 0
	vo.ImagesPerStep = 1
	batches := epochBatches(set, vo, 0)
	sums := make([]float64, len(segsam.LossNames))
	var dice, correct float64
	var n int
	for _, b := range batches {
		out, err := t.valExec.Call(t.inputs(t.prepare(b, false))...)
		if err != nil {
			return nil, fmt.Errorf("validation: %w", err)
		}
		loss, _ := tensors.CopyFlatData[float32](out[0])
		d, _ := tensors.CopyFlatData[float32](out[1])
		c, _ := tensors.CopyFlatData[float32](out[2])
		for j, v := range loss {
			sums[j] += float64(v)
		}
		for i := range d {
			dice += float64(d[i])
			correct += float64(c[i])
			n++
		}
	}
	res := map[string]float64{}
	for j, name := range segsam.LossNames {
		res[name] = sums[j] / float64(len(batches))
	}
	res["dsc"] = dice / float64(n)
	if t.m.Config.HasClasses() {
		res["class_accuracy"] = correct / float64(n)
	}
	return res, nil
}

// upsampleLogits resizes [B, M, h, w] logits to S×S.
func upsampleLogits(x *Node, s int) *Node { return Interpolate(x, -1, -1, s, s).Bilinear().Done() }

// objectDice is the Dice of Dec_sag's mask (logit > 0 at S×S) with the
// target, per object [B], choosing the mask as inference does: token 0 for
// a box, the highest predicted IoU of the multimask tokens for a point.
func objectDice(out segsam.Outputs, target, multimask *Node, s int) *Node {
	low := chosenLowRes(out, multimask)             // [B, 4g, 4g]
	logits := upsampleLogits(InsertAxes(low, 1), s) // [B, 1, S, S]
	pred := Squeeze(ConvertDType(GreaterThan(logits, ZerosLike(logits)), dtypes.Float32), 1)
	inter := ReduceSum(Mul(pred, target), 1, 2)
	sum := Add(ReduceSum(pred, 1, 2), ReduceSum(target, 1, 2))
	return Div(MulScalar(inter, 2), Max(sum, OnesLike(sum)))
}

// classCorrect is 1 where the predicted class is the target's: [B].
func classCorrect(out segsam.Outputs, class *Node) *Node {
	if out.ClassLogits == nil {
		return ZerosLike(ConvertDType(class, dtypes.Float32))
	}
	pred := ArgMax(out.ClassLogits, -1, dtypes.Int32)
	return ConvertDType(Equal(pred, class), dtypes.Float32)
}

// summarise lists at most n names, then how many more.
func summarise(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

func formatStats(st EpochStats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lr %.2g, train loss %.4f (bin %.4f sem %.4f bce %.4f cmsa %.4f)", st.LearningRate, st.Train["total"], st.Train["binary"], st.Train["semantic"], st.Train["presence_bce"], st.Train["cmsa"])
	if st.Val != nil {
		fmt.Fprintf(&b, "; val loss %.4f, DSC %.4f", st.Val["total"], st.Val["dsc"])
		if acc, ok := st.Val["class_accuracy"]; ok {
			fmt.Fprintf(&b, ", class accuracy %.3f", acc)
		}
	}
	fmt.Fprintf(&b, "; %.0f s", st.Seconds)
	return b.String()
}
