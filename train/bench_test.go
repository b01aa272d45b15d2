package train

import (
	"fmt"
	"testing"

	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
)

// BenchmarkTrainStep measures training throughput in objects per second
// (the built-in model's recipe: encoder trained, augmentation, balanced
// sampling, 4 images × 5 objects per step, on the real subset), one batch
// per iteration, without and with SAM-Med2D's click rounds; the first,
// compiling step is not timed.
//
//	go test ./train -run '^$' -bench TrainStep -benchtime 10x
func BenchmarkTrainStep(b *testing.B) {
	base, err := sam.LoadConfig("../models/segsam_small.sam.json")
	if err != nil {
		b.Fatal(err)
	}
	ds := openSubset(b)
	cfg, err := segsam.NewConfig(base, "seg_sam", ds.Classes(), 64)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Parts.BoxPrior = true
	for _, rounds := range []int{0, 2} {
		b.Run(fmt.Sprintf("segsam_small/click-rounds-%d", rounds), func(b *testing.B) {
			tr, set := newTestTrainer(b, Options{ImagesPerStep: 4, ClickRounds: rounds, Augment: true, Balance: true}, ds, cfg)
			batches := epochBatches(set, tr.opts, 1)
			if _, err := tr.step(batches[0]); err != nil { // compiles
				b.Fatal(err)
			}
			b.ResetTimer()
			objects := 0
			for i := range b.N {
				bt := batches[i%len(batches)]
				if _, err := tr.step(bt); err != nil {
					b.Fatal(err)
				}
				objects += bt.size()
			}
			b.ReportMetric(float64(objects)/b.Elapsed().Seconds(), "objects/s")
		})
	}
}
