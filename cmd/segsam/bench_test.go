package main

import "testing"

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
