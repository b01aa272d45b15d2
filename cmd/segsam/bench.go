package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/internal/engine"
	"github.com/segsam/segsam/internal/torchbench"
	"github.com/segsam/segsam/models"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
)

func init() {
	register(command{
		name:    "bench",
		summary: "time the image encoder and the decoders (random weights, or the built-in model)",
		run:     runBench,
	})
}

func runBench(args []string) error {
	fs := newFlagSet("bench", "[--arch builtin,sammed2d_vit_b,vit_b,litemedsam,mobilesam_vit_t] [--runs N] [--batch N] [--prompts N] [--cpuprofile FILE] [--torch-sam DIR] [--torch-sammed2d DIR] [--python PYTHON]")
	archs := fs.String("arch", "builtin,sammed2d_vit_b,vit_b,litemedsam,mobilesam_vit_t", "comma-separated presets to time (random weights), or "+benchBuiltin+": the built-in SEG-SAM model with all its decoders (Dec_sag, Dec_saw, T2VSE)")
	runs := fs.Int("runs", 3, "timed encoder runs after the first (compile) call")
	batch := fs.Int("batch", 1, "images per encoder call")
	prompts := fs.Int("prompts", 20, "timed decoder calls (one box each)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	torchSAM := fs.String("torch-sam", "", "also time the official PyTorch SAM code for vit_b/vit_l/vit_h: a checkout of facebookresearch/segment-anything (needs python3 with torch)")
	torchMed := fs.String("torch-sammed2d", "", "also time the official PyTorch SAM-Med2D code for sammed2d_vit_b: a checkout of OpenGVLab/SAM-Med2D (needs python3 with torch)")
	python := fs.String("python", "python3", "Python interpreter for --torch-sam / --torch-sammed2d")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *runs < 1 || *batch < 1 || *prompts < 1 {
		return usageErrorf("--runs, --batch and --prompts must be positive")
	}
	for _, dir := range []string{*torchSAM, *torchMed} {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "segment_anything")); err != nil {
			return usageErrorf("%s holds no segment_anything package: give a checkout of the official repository", dir)
		}
	}
	backend, err := engine.Backend()
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile %s: %w", *cpuProfile, err)
		}
		defer pprof.StopCPUProfile()
	}
	var names []string
	var cfgs []sam.Config
	var builtin *segsam.Model
	for _, arch := range strings.Split(*archs, ",") {
		arch = strings.TrimSpace(arch)
		if arch == benchBuiltin {
			if builtin, err = models.Default(backend); err != nil {
				return err
			}
			names, cfgs = append(names, arch), append(cfgs, builtin.SAM.Config)
			continue
		}
		cfg, err := sam.Preset(arch)
		if err != nil {
			return usageErrorf("%v (or %s)", err, benchBuiltin)
		}
		names, cfgs = append(names, arch), append(cfgs, cfg)
	}
	fmt.Printf("backend %s, GOMAXPROCS %d, %s/%s, %s\n", backend.Name(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, buildSettings())
	tab := newBenchTable(os.Stdout, names, cfgs)
	var side []torchRow // PyTorch next to segsam, printed after the table
	for i, arch := range names {
		cfg := cfgs[i]
		// p answers prompts with every decoder the model has.
		var m *sam.Model
		var p *segsam.Predictor
		if arch == benchBuiltin {
			m, p = builtin.SAM, segsam.NewPredictor(builtin)
		} else {
			if m, err = sam.NewModel(cfg, backend); err != nil {
				return err
			}
			p = segsam.NewSAMPredictor(m)
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
		if err := p.SAM.SetEmbedding(one, s, s); err != nil {
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
		// 16 boxes in one call (one compile first): how the decoders scale
		// with the prompts of one image.
		var many sam.Prompt
		for k := 0; k < 16; k++ {
			d := float64(k) * float64(s) / 64
			many.Boxes = append(many.Boxes, sam.Box{d, d, float64(s)/2 + d, float64(s)/2 + d})
		}
		if _, err := p.Predict(many); err != nil {
			return err
		}
		var dec16 []time.Duration
		for i := 0; i < max(3, *prompts/4); i++ {
			res, err := p.Predict(many)
			if err != nil {
				return err
			}
			dec16 = append(dec16, res.Decode)
		}
		tab.row(arch, fmt.Sprintf("%dx%d", s, s), fmt.Sprint(*batch),
			round(first), round(encMed), round(encBest), round(decFirst), round(median(dec)), round(median(pred)), round(median(dec16)), peakRSS())
		code := ""
		switch arch {
		case "sammed2d_vit_b":
			code = *torchMed
		case "vit_b", "vit_l", "vit_h":
			code = *torchSAM
		}
		if code != "" && *batch == 1 {
			r, err := torchbench.Run(context.Background(), torchbench.Options{Python: *python, Code: code, Arch: arch,
				Runs: *runs, Prompts: *prompts, Threads: runtime.GOMAXPROCS(0)})
			if err != nil {
				return err
			}
			side = append(side, torchRow{arch: arch, torch: r, encoder: encMed, decoder: median(dec), decoder16: median(dec16)})
		}
	}
	if len(side) > 0 {
		printTorchRows(os.Stdout, side)
	}
	return nil
}

// torchRow is one model timed by segsam and by the official PyTorch code
// in the same run.
type torchRow struct {
	arch                        string
	torch                       torchbench.Result
	encoder, decoder, decoder16 time.Duration
}

// printTorchRows prints segsam's medians next to PyTorch's, with the
// ratios (segsam / PyTorch: below 1 is faster).
func printTorchRows(w io.Writer, rows []torchRow) {
	fmt.Fprintf(w, "\nofficial PyTorch code, same machine, same run (random weights; ratio = segsam / PyTorch)\n")
	tab := &benchTable{w: w, widths: []int{14, 12, 16, 16, 7, 16, 16, 7, 16, 16, 7}}
	tab.row("model", "torch", "segsam encoder", "torch encoder", "ratio", "segsam decoder", "torch decoder", "ratio", "segsam 16 boxes", "torch 16 boxes", "ratio")
	ratio := func(a time.Duration, b float64) string { return fmt.Sprintf("%.2f", a.Seconds()/b) }
	for _, r := range rows {
		t := r.torch
		tab.row(r.arch, fmt.Sprintf("%s/%dt", t.Torch, t.Threads),
			round(r.encoder), round(torchbench.Dur(t.EncoderMedian)), ratio(r.encoder, t.EncoderMedian),
			round(r.decoder), round(torchbench.Dur(t.Decoder)), ratio(r.decoder, t.Decoder),
			round(r.decoder16), round(torchbench.Dur(t.Decoder16)), ratio(r.decoder16, t.Decoder16))
	}
}

// buildSettings describes how the running binary was built, from its build
// information (not from the environment, which need not be the build's):
// the Go version, GOEXPERIMENT (simd makes the pure-Go backend ~30x
// faster) and the architecture level (GOAMD64, GOARM64, ...).
func buildSettings() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return runtime.Version() + " (no build information)"
	}
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	exp := set["GOEXPERIMENT"]
	if exp == "" {
		exp = "(none: built without simd, the pure-Go backend is ~30x slower)"
	}
	parts := []string{strings.SplitN(bi.GoVersion, "-X:", 2)[0], "GOEXPERIMENT=" + exp}
	for _, k := range []string{"GOAMD64", "GOARM64", "GOARM", "GO386", "GORISCV64", "GOPPC64"} {
		if v, ok := set[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ", ")
}

// benchTable prints the timing table a row at a time (each as soon as it
// is measured) with columns wide enough for every row.
type benchTable struct {
	w      io.Writer
	widths []int
}

var benchColumns = []string{"model", "input", "batch", "encoder first call", "encoder median", "encoder best",
	"decoder first call", "decoder median/prompt", "predict median/prompt", "decoder 16 boxes/call", "peak RSS"}

// benchBuiltin names the built-in model in --arch.
const benchBuiltin = "builtin"

func newBenchTable(w io.Writer, names []string, cfgs []sam.Config) *benchTable {
	t := &benchTable{w: w, widths: make([]int, len(benchColumns))}
	for i, c := range benchColumns {
		t.widths[i] = max(len(c), len("999.9 ms"))
	}
	for i, n := range names {
		s := cfgs[i].ImageEncoder.ImgSize
		t.widths[0] = max(t.widths[0], len(n))
		t.widths[1] = max(t.widths[1], len(fmt.Sprintf("%dx%d", s, s)))
	}
	t.row(benchColumns...)
	return t
}

func (t *benchTable) row(cells ...string) {
	var b strings.Builder
	for i, c := range cells {
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		fmt.Fprintf(&b, "%-*s  ", t.widths[i], c)
	}
	fmt.Fprintln(t.w, strings.TrimRight(b.String(), " "))
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
