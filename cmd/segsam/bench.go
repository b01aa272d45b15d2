package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/internal/engine"
	"github.com/segsam/segsam/sam"
)

func init() {
	register(command{
		name:    "bench",
		summary: "time the image encoder and the mask decoder (random weights)",
		run:     runBench,
	})
}

func runBench(args []string) error {
	fs := newFlagSet("bench", "[--arch sammed2d_vit_b,vit_b] [--runs N] [--batch N] [--prompts N]")
	archs := fs.String("arch", "sammed2d_vit_b,vit_b", "comma-separated presets to time")
	runs := fs.Int("runs", 3, "timed encoder runs after the first (compile) call")
	batch := fs.Int("batch", 1, "images per encoder call")
	prompts := fs.Int("prompts", 20, "timed decoder calls (one box each)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *runs < 1 || *batch < 1 || *prompts < 1 {
		return usageErrorf("--runs, --batch and --prompts must be positive")
	}
	backend, err := engine.Backend()
	if err != nil {
		return err
	}
	fmt.Printf("backend %s, GOMAXPROCS %d, %s/%s, GOEXPERIMENT=%s\n", backend.Name(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, os.Getenv("GOEXPERIMENT"))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "model\tinput\tbatch\tencoder first call\tencoder median\tencoder best\tdecoder first call\tdecoder median/prompt\tpredict median/prompt\tpeak RSS")
	for _, arch := range strings.Split(*archs, ",") {
		cfg, err := sam.Preset(strings.TrimSpace(arch))
		if err != nil {
			return usageErrorf("%v", err)
		}
		m, err := sam.NewModel(cfg, backend)
		if err != nil {
			return err
		}
		s := cfg.ImageEncoder.ImgSize
		input := tensors.FromFlatDataAndDimensions(make([]float32, *batch*3*s*s), *batch, 3, s, s)
		t0 := time.Now()
		emb, err := m.Encode(input)
		if err != nil {
			return err
		}
		first := time.Since(t0)
		var times []time.Duration
		for i := 0; i < *runs; i++ {
			t := time.Now()
			if _, err := m.Encode(input); err != nil {
				return err
			}
			times = append(times, time.Since(t))
		}
		encMed, encBest := median(times), slices.Min(times)
		// One image's embedding for the decoder.
		one := emb
		if *batch > 1 {
			if one, err = m.Encode(tensors.FromFlatDataAndDimensions(make([]float32, 3*s*s), 1, 3, s, s)); err != nil {
				return err
			}
		}
		p := sam.NewPredictor(m)
		if err := p.SetEmbedding(one, s, s); err != nil {
			return err
		}
		box := sam.Prompt{Boxes: []sam.Box{{float64(s) / 4, float64(s) / 4, float64(s) * 3 / 4, float64(s) * 3 / 4}}}
		t0 = time.Now()
		if _, err := p.Predict(box); err != nil {
			return err
		}
		decFirst := time.Since(t0)
		var dec, pred []time.Duration
		for i := 0; i < *prompts; i++ {
			t := time.Now()
			res, err := p.Predict(box)
			if err != nil {
				return err
			}
			pred = append(pred, time.Since(t))
			dec = append(dec, res.Decode)
		}
		fmt.Fprintf(tw, "%s\t%dx%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", arch, s, s, *batch,
			round(first), round(encMed), round(encBest), round(decFirst), round(median(dec)), round(median(pred)), peakRSS())
		tw.Flush()
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
}

// peakRSS reads the process's peak resident memory (Linux); "?" elsewhere.
func peakRSS() string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "?"
}
