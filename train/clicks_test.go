package train

import (
	"context"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
)

func TestErrorClicks(t *testing.T) {
	const s = 4
	// Object: the left half; prediction: the top half.
	gt := []uint8{1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0}
	fg := []int32{0, 1, 4, 5, 8, 9, 12, 13}
	top := []float32{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	// Missed: (0,2) (1,2) (0,3) (1,3); false positives: (2,0) (3,0) (2,1) (3,1).
	cases := []struct {
		name      string
		pred      []float32
		wantPos   bool // positive clicks allowed
		wantNeg   bool // negative clicks allowed
		allowedAt func(x, y int) bool
	}{
		{"missed and extra", top, true, true, func(x, y int) bool { return (x < 2) != (y < 2) }},
		{"empty prediction", make([]float32, s*s), true, false, func(x, y int) bool { return x < 2 }},
		{"perfect prediction falls back to the object", []float32{1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0}, true, false, func(x, y int) bool { return x < 2 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			coords, labels := errorClicks(c.pred, gt, fg, 9, s, rng)
			if len(coords) != 18 || len(labels) != 9 {
				t.Fatalf("got %d coords, %d labels; want 18, 9", len(coords), len(labels))
			}
			var pos, neg int
			for i, l := range labels {
				x, y := int(coords[2*i]), int(coords[2*i+1])
				if !c.allowedAt(x, y) {
					t.Errorf("click %d at (%d,%d) is outside the region", i, x, y)
				}
				inObject := gt[y*s+x] != 0
				switch l {
				case sam.LabelPositive:
					pos++
					if !inObject {
						t.Errorf("positive click at (%d,%d) off the object", x, y)
					}
				case sam.LabelNegative:
					neg++
					if inObject {
						t.Errorf("negative click at (%d,%d) on the object", x, y)
					}
				default:
					t.Errorf("label %d", l)
				}
			}
			if (pos > 0) != c.wantPos || (neg > 0) != c.wantNeg {
				t.Errorf("%d positive, %d negative clicks; want positive %v, negative %v", pos, neg, c.wantPos, c.wantNeg)
			}
		})
	}
}

// testTrainer builds a model and trainer as Run does (trained encoder, so
// that no embedding cache is needed) on the small real subset.
func testTrainer(t testing.TB, o Options) (*trainer, []*sample) {
	t.Helper()
	ds := openSubset(t)
	classes := ds.Classes()
	cfg := tinyConfig(t, "seg_sam", classes, 64)
	return newTestTrainer(t, o, ds, cfg)
}

// newTestTrainer builds the trainer of a configuration on a set.
func newTestTrainer(t testing.TB, o Options, ds *dataset.Dataset, cfg segsam.Config) (*trainer, []*sample) {
	t.Helper()
	o.Model, o.Train, o.Text, o.Out = cfg, ds, hashedText(t, cfg.Classes), t.TempDir()
	o.Encoder, o.LearningRate, o.Seed = EncoderFull, 1e-3, 5
	o.defaults()
	m, err := segsam.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Seed(o.Seed); err != nil {
		t.Fatal(err)
	}
	if err := m.SetTextEmbeddings(*o.Text); err != nil {
		t.Fatal(err)
	}
	if err := m.Materialize(); err != nil {
		t.Fatal(err)
	}
	vocab := map[string]int{}
	for i, c := range cfg.Classes {
		vocab[c] = i
	}
	set, err := loadSamples(context.Background(), ds, m.SAM, vocab, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newTrainer(m, o)
	if err != nil {
		t.Fatal(err)
	}
	return tr, set
}

// weights copies every trainable weight whose path contains one of subs.
func weights(t *testing.T, tr *trainer, subs ...string) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for v := range tr.m.SAM.Store.IterVariables() {
		if strings.HasPrefix(v.Path(), accumulatedGradientsScope) {
			continue
		}
		for _, s := range subs {
			if strings.Contains(v.Path(), s) {
				val, err := v.Value()
				if err != nil {
					t.Fatal(err)
				}
				if d, err := tensors.CopyFlatData[float32](val); err == nil {
					out[v.Path()] = d
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no weights under %v", subs)
	}
	return out
}

func maxDiff(a, b map[string][]float32) float64 {
	d := 0.0
	for k, x := range a {
		for i := range x {
			d = max(d, math.Abs(float64(x[i]-b[k][i])))
		}
	}
	return d
}

// The mask-prompt path (the prompt encoder's mask_downscaling) gets no
// gradient from first rounds, which have no mask prompt; click rounds,
// which pass the previous logits, train it.
func TestClickRoundsTrainTheMaskPromptPath(t *testing.T) {
	for _, rounds := range []int{0, 2} {
		tr, set := testTrainer(t, Options{ClickRounds: rounds, ImagesPerStep: 2})
		before := weights(t, tr, "mask_downscaling")
		b := epochBatches(set, tr.opts, 1)[0]
		loss, err := tr.step(b)
		if err != nil {
			t.Fatal(err)
		}
		changed := maxDiff(before, weights(t, tr, "mask_downscaling"))
		t.Logf("rounds %d: loss %.4f, mask_downscaling changed by %.3g, click rounds' total %.4f", rounds, loss[0], changed, tr.clickSums)
		if rounds == 0 && changed != 0 {
			t.Errorf("without click rounds the mask path changed by %g", changed)
		}
		if rounds > 0 {
			if changed == 0 {
				t.Error("click rounds left the mask path untrained")
			}
			if tr.clickSteps != rounds || math.IsNaN(tr.clickSums[0]) || tr.clickSums[0] <= 0 {
				t.Errorf("click rounds: %d steps, loss sum %v", tr.clickSteps, tr.clickSums)
			}
		}
	}
}

// Accumulating the same batch twice is one step on it: the mean of two
// equal gradients is that gradient. The first half of the group must not
// move the weights. Adam hides the gradient's scale in the weights, so the
// comparison includes its moments (/AdamOptimizer/...), which show it.
func TestAccumulateTwiceIsOneStep(t *testing.T) {
	one, set := testTrainer(t, Options{ImagesPerStep: 2})
	two, _ := testTrainer(t, Options{ImagesPerStep: 2, Accumulate: 2})
	b := epochBatches(set, one.opts, 1)[0]
	parts := []string{"mask_decoder", "semantic_decoder", "image_encoder"}
	start := weights(t, two, parts...)
	if d := maxDiff(start, weights(t, one, parts...)); d != 0 {
		t.Fatalf("the two models start %g apart", d)
	}
	if _, err := one.step(b); err != nil {
		t.Fatal(err)
	}
	if _, err := two.step(b); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(start, weights(t, two, parts...)); d != 0 {
		t.Errorf("the first accumulated step moved the weights by %g", d)
	}
	if _, err := two.step(b); err != nil {
		t.Fatal(err)
	}
	moved := maxDiff(start, weights(t, one, parts...))
	after := weights(t, one, parts...)
	moments := 0
	for k := range after {
		if strings.HasPrefix(k, "/AdamOptimizer/") {
			moments++
		}
	}
	if moments == 0 {
		t.Fatal("no Adam moments to compare")
	}
	d := maxDiff(after, weights(t, two, parts...))
	t.Logf("one step moved the weights by up to %.3g; accumulated vs one step differ by %.3g", moved, d)
	if moved == 0 || d > 1e-3*moved {
		t.Errorf("accumulated update differs from one step by %g (step size %g)", d, moved)
	}
}

func TestAccumulateKeepsWholeGroups(t *testing.T) {
	ds := openSubset(t)
	o := Options{ImagesPerStep: 1, Accumulate: 3, Seed: 1, MaxStepsPerEpoch: 7}
	o.defaults()
	set := make([]*sample, len(ds.Images))
	for i := range set {
		set[i] = &sample{objects: []object{{}}}
	}
	if n := len(epochBatches(set, o, 1)); n != 6 {
		t.Errorf("%d steps, want 6 (two whole groups of 3 out of 7)", n)
	}
	for _, bad := range []Options{{ClickRounds: -1}, {Accumulate: -2}, {ClickRounds: 1, Accumulate: 2}} {
		bad.Train, bad.Model, bad.Out = ds, tinyConfig(t, "so", ds.Classes(), 0), t.TempDir()
		if _, err := Run(context.Background(), bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
