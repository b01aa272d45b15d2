package train

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/internal/engine"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
)

// syntheticSample is an s×s image, white inside a disc and an off-centre
// rectangle (its two objects), black elsewhere.
func syntheticSample(s int, modality string) *sample {
	pix := make([]uint8, 3*s*s)
	disc := make([]uint8, s*s)
	rect := make([]uint8, s*s)
	for y := range s {
		for x := range s {
			dx, dy := x-s/3, y-s/2
			if dx*dx+dy*dy < (s/5)*(s/5) {
				disc[y*s+x] = 1
			}
			if x > 2*s/3 && x < 2*s/3+s/6 && y > s/5 && y < s/5+s/3 {
				rect[y*s+x] = 1
			}
			if disc[y*s+x]+rect[y*s+x] > 0 {
				pix[3*(y*s+x)], pix[3*(y*s+x)+1], pix[3*(y*s+x)+2] = 255, 255, 255
			}
		}
	}
	a, _ := newObject(disc, s, 0)
	b, _ := newObject(rect, s, 1)
	return &sample{entry: &dataset.ImageEntry{Modality: modality}, pix: pix, objects: []object{a, b}, presence: []float32{1, 1}}
}

// TestAugmentKeepsMasksOnPixels checks, over many draws, that the
// transformed masks cover exactly the transformed object pixels.
func TestAugmentKeepsMasksOnPixels(t *testing.T) {
	const s = 64
	for _, modality := range []string{dataset.CT, dataset.Endoscopy, dataset.Fundus} {
		sm := syntheticSample(s, modality)
		for seed := range 60 {
			rng := rand.New(rand.NewPCG(uint64(seed), 9))
			pix, objs := augmentSample(sm, []int{0, 1}, s, rng)
			for i := range s * s {
				inObject := objs[0].mask[i]+objs[1].mask[i] > 0
				bright := pix[3*i] > 127
				if inObject != bright {
					t.Fatalf("%s seed %d: pixel %d is in an object %v but bright %v (value %d)", modality, seed, i, inObject, bright, pix[3*i])
				}
			}
			for k, o := range objs {
				if len(o.fg) == 0 {
					t.Fatalf("%s seed %d: object %d vanished", modality, seed, k)
				}
			}
		}
	}
}

// TestMirrorOnlyWhereAnatomyAllows: CT, MR, PET and X-ray keep their
// left and right; endoscopy gets all eight flips/rotations; fundus and
// ultrasound left-right flips only.
func TestMirrorOnlyWhereAnatomyAllows(t *testing.T) {
	for _, tc := range []struct {
		modality         string
		flipX, flipYorTr bool
	}{
		{dataset.CT, false, false}, {dataset.MR, false, false}, {dataset.PET, false, false}, {dataset.XRay, false, false},
		{dataset.Endoscopy, true, true}, {dataset.Dermoscopy, true, true},
		{dataset.Fundus, true, false}, {dataset.Ultrasound, true, false},
	} {
		var sawX, sawY bool
		rng := rand.New(rand.NewPCG(3, 4))
		for range 200 {
			a := drawAugmentation(rng, tc.modality, false)
			sawX = sawX || a.flipX
			sawY = sawY || a.flipY || a.transpose
		}
		if sawX != tc.flipX || sawY != tc.flipYorTr {
			t.Errorf("%s: left-right flips %v, other mirrors %v; want %v, %v", tc.modality, sawX, sawY, tc.flipX, tc.flipYorTr)
		}
	}
}

// TestAugmentIsRepeatable: the same random stream gives the same image.
func TestAugmentIsRepeatable(t *testing.T) {
	sm := syntheticSample(32, dataset.Dermoscopy)
	a, _ := augmentSample(sm, []int{0}, 32, rand.New(rand.NewPCG(5, 6)))
	b, _ := augmentSample(sm, []int{0}, 32, rand.New(rand.NewPCG(5, 6)))
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("byte %d differs: %d vs %d", i, a[i], b[i])
		}
	}
}

// TestBoxPromptShift: both corners move together, by at most
// min(5, half the shorter side), as SAM-Med2D jitters its boxes.
func TestBoxPromptShift(t *testing.T) {
	const s = 128
	for _, tc := range []struct{ x0, y0, x1, y1, max int }{
		{30, 40, 90, 100, 5}, // large box: 5 px
		{60, 60, 65, 80, 3},  // 6 px wide: 3 px
		{10, 10, 10, 10, 0},  // one pixel: no shift
	} {
		mask := make([]uint8, s*s)
		for y := tc.y0; y <= tc.y1; y++ {
			for x := tc.x0; x <= tc.x1; x++ {
				mask[y*s+x] = 1
			}
		}
		o, _ := newObject(mask, s, 0)
		rng := rand.New(rand.NewPCG(1, 1))
		seen := map[int]bool{}
		for range 300 {
			p := boxPrompt(o, s, rng)
			dx, dy := int(p.coords[0])-tc.x0, int(p.coords[1])-tc.y0
			if int(p.coords[2])-tc.x1 != dx || int(p.coords[3])-tc.y1 != dy {
				t.Fatalf("box %v: corners moved apart: %v", tc, p.coords)
			}
			if dx < -tc.max || dy < -tc.max || dx > tc.max || dy > tc.max || (tc.max > 0 && (dx == tc.max || dy == tc.max)) {
				t.Fatalf("box %v: shift (%d, %d) outside [-%d, %d)", tc, dx, dy, tc.max, tc.max)
			}
			seen[dx] = true
		}
		if tc.max > 0 && len(seen) != 2*tc.max {
			t.Errorf("box %v: %d distinct shifts, want %d", tc, len(seen), 2*tc.max)
		}
	}
}

// TestPointsOnlyAndBalance checks the prompt mix of PointsOnly and that
// Balance draws a small dataset more often than its share.
func TestPointsOnlyAndBalance(t *testing.T) {
	cfg := tinyConfig(t, "so", []string{"a", "b"}, 0)
	s := cfg.SAM.ImageEncoder.ImgSize
	var set []*sample
	for i := range 100 {
		sm := syntheticSample(s, dataset.Endoscopy)
		sm.entry = &dataset.ImageEntry{Modality: dataset.Endoscopy, Meta: dataset.ImageMeta{Dataset: map[bool]string{true: "small", false: "large"}[i < 10]}}
		set = append(set, sm)
	}
	for _, tc := range []struct {
		fraction float64
		boxes    bool
		points   bool
	}{{PointsOnly, false, true}, {0, true, true}, {1, true, false}} {
		o := Options{BoxFraction: tc.fraction, ImagesPerStep: 2, ObjectsPerImage: 2, Seed: 1, Epochs: 1}
		o.defaults()
		tr := &trainer{m: &segsam.Model{Config: cfg}, opts: o, s: s}
		var boxes, points bool
		for _, b := range epochBatches(set, o, 1) {
			for _, im := range tr.prepare(b, false) {
				for _, p := range im.prompts {
					boxes, points = boxes || !p.point, points || p.point
				}
			}
		}
		if boxes != tc.boxes || points != tc.points {
			t.Errorf("box fraction %g: boxes %v points %v, want %v %v", tc.fraction, boxes, points, tc.boxes, tc.points)
		}
	}
	count := func(balance bool) float64 {
		o := Options{ImagesPerStep: 2, ObjectsPerImage: 2, Seed: 1, Balance: balance}
		o.defaults()
		small, all := 0, 0
		for epoch := 1; epoch <= 20; epoch++ {
			for _, b := range epochBatches(set, o, epoch) {
				for _, sm := range b.samples {
					all++
					if sm.entry.Meta.Dataset == "small" {
						small++
					}
				}
			}
		}
		return float64(small) / float64(all)
	}
	// 10 of 100 images; balanced: 10/√10 ÷ (10/√10 + 90/√90) = 0.25.
	if plain, bal := count(false), count(true); plain != 0.1 || bal < 0.22 || bal > 0.28 {
		t.Errorf("share of the small dataset: %.3f plain (want 0.1), %.3f balanced (want ≈0.25)", plain, bal)
	}
}

// TestPresenceCountsKeptObjects: a class whose only mask is too small for
// the model's resolution is not a present class.
func TestPresenceCountsKeptObjects(t *testing.T) {
	dir := t.TempDir()
	w, err := dataset.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	img := image.NewGray(image.Rect(0, 0, 64, 64))
	big, tiny := image.NewGray(img.Rect), image.NewGray(img.Rect)
	for y := 10; y < 40; y++ {
		for x := 10; x < 40; x++ {
			big.SetGray(x, y, color.Gray{255})
		}
	}
	tiny.SetGray(50, 50, color.Gray{255})
	if err := w.AddImage("x.png", img, dataset.ImageMeta{Modality: "CT"}, []dataset.Mask{{Class: "liver", Mask: big}, {Class: "spleen", Mask: tiny}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ds, err := dataset.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig(t, "so", []string{"liver", "spleen"}, 0)
	backend, err := engine.Backend()
	if err != nil {
		t.Fatal(err)
	}
	m, err := sam.NewModel(cfg.SAM, backend)
	if err != nil {
		t.Fatal(err)
	}
	samples, err := loadSamples(context.Background(), ds, m, map[string]int{"liver": 0, "spleen": 1}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := samples[0].presence; got[0] != 1 || got[1] != 0 || len(samples[0].objects) != 1 {
		t.Errorf("presence %v with %d objects; want [1 0] and 1 (the spleen mask is under the size limit)", got, len(samples[0].objects))
	}
}

// TestFinishedRunIsLeftAlone: running a finished run again trains nothing
// and rewrites nothing.
func TestFinishedRunIsLeftAlone(t *testing.T) {
	ds := openSubset(t)
	cfg := tinyConfig(t, "so", ds.Classes(), 0)
	dir := t.TempDir()
	opts := Options{Train: ds, Model: cfg, Out: dir, Epochs: 1, MaxStepsPerEpoch: 1, Seed: 1, Encoder: EncoderFull, Augment: true}
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	ckpt := filepath.Join(dir, "checkpoint.safetensors")
	before, err := os.Stat(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(ckpt)
	if !res.Finished || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("second run: finished %v, checkpoint rewritten %v", res.Finished, !after.ModTime().Equal(before.ModTime()))
	}
	// Augmentation with a frozen encoder is refused.
	opts.Encoder, opts.Out = EncoderFrozen, t.TempDir()
	if _, err := Run(context.Background(), opts); err == nil {
		t.Error("augmentation with a frozen encoder was accepted")
	}
}

// TestResumeReusesEmbeddingCache: a resumed run with a frozen encoder finds
// every embedding the first run cached (the fingerprint does not depend on
// the order the store created the weights in).
func TestResumeReusesEmbeddingCache(t *testing.T) {
	ds := openSubset(t)
	cfg := tinyConfig(t, "so", ds.Classes(), 0)
	dir := t.TempDir()
	var first, second strings.Builder
	opts := Options{Train: ds, Model: cfg, Out: dir, Epochs: 1, MaxStepsPerEpoch: 1, Seed: 1, Log: &first}
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	opts.Epochs, opts.Log = 2, &second
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d reused, 0 computed", len(ds.Images))
	if !strings.Contains(second.String(), want) {
		t.Errorf("resumed run: want %q in its log:\n%s", want, second.String())
	}
}
