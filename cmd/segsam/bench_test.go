package main

import (
	"strings"
	"testing"
	"time"

	"github.com/segsam/segsam/internal/torchbench"
)

// TestBenchBuiltin runs segsam bench on the built-in model (all its
// decoders, one box and 16 boxes per call); an unknown name is a usage
// error. Timings are printed, never asserted.
func TestBenchBuiltin(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"bench", "--arch", "builtin", "--runs", "1", "--prompts", "1"}, 0},
		{[]string{"bench", "--arch", "vit_q"}, 2},
		{[]string{"bench", "--prompts", "0"}, 2},
	} {
		if got := run(tt.args); got != tt.code {
			t.Errorf("%v: exit %d, want %d", tt.args, got, tt.code)
		}
	}
}

// TestBenchTorchSideBySide checks the PyTorch columns: a folder without the
// official package is a usage error before anything is timed, and the
// side-by-side rows show both medians and their ratio.
func TestBenchTorchSideBySide(t *testing.T) {
	if got := run([]string{"bench", "--arch", "sammed2d_vit_b", "--torch-sammed2d", t.TempDir()}); got != 2 {
		t.Errorf("--torch-sammed2d without segment_anything: exit %d, want 2", got)
	}
	var b strings.Builder
	printTorchRows(&b, []torchRow{{arch: "sammed2d_vit_b",
		torch:   torchbench.Result{Torch: "1.13.0a0", Threads: 2, EncoderMedian: 4, Decoder: 0.02, Decoder16: 0.2},
		encoder: 1 * time.Second, decoder: 10 * time.Millisecond, decoder16: 100 * time.Millisecond}})
	out := b.String()
	for _, want := range []string{"sammed2d_vit_b", "1.13.0a0/2t", "1.00 s", "4.00 s", "0.25", "10.0 ms", "20.0 ms", "0.50", "100.0 ms", "200.0 ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("side-by-side lacks %q:\n%s", want, out)
		}
	}
}
