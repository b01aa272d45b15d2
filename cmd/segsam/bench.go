package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/segsam/segsam/internal/engine"
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
	fs := newFlagSet("bench", "[--arch builtin,sammed2d_vit_b,vit_b,litemedsam,mobilesam_vit_t] [--runs N] [--batch N] [--prompts N] [--cpuprofile FILE]")
	archs := fs.String("arch", "builtin,sammed2d_vit_b,vit_b,litemedsam,mobilesam_vit_t", "comma-separated presets to time (random weights), or "+benchBuiltin+": the built-in SEG-SAM model with all its decoders (Dec_sag, Dec_saw, T2VSE)")
	runs := fs.Int("runs", 3, "timed encoder runs after the first (compile) call")
	batch := fs.Int("batch", 1, "images per encoder call")
	prompts := fs.Int("prompts", 20, "timed decoder calls (one box each)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
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
	}
	return nil
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
