// Package torchbench times the official PyTorch SAM / SAM-Med2D code next
// to segsam, for `segsam bench`: it runs its embedded Python script
// (torchbench.py, segsam's own) with a user's python3 and torch against a
// checkout of the official repository the user names. segsam never needs
// Python; nothing here runs unless asked.
package torchbench

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed torchbench.py
var script []byte

// Result is what the script measured (seconds).
type Result struct {
	Torch         string  `json:"torch"`
	Threads       int     `json:"threads"`
	Build         float64 `json:"build_s"`
	EncoderFirst  float64 `json:"encoder_first_s"`
	EncoderMedian float64 `json:"encoder_median_s"`
	Decoder       float64 `json:"decoder_s"`
	Decoder16     float64 `json:"decoder16_s"`
}

// Dur turns seconds into a duration.
func Dur(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Options say what to time and with what.
type Options struct {
	Python  string // interpreter (default "python3")
	Code    string // folder holding the official segment_anything package
	Arch    string // sammed2d_vit_b (SAM-Med2D's code), vit_b, vit_l, vit_h (SAM's)
	Runs    int    // timed encoder runs
	Prompts int    // timed one-box decoder calls
	Threads int    // torch threads (0: torch's default)
}

// Run times the official code; errors name what was missing (the
// interpreter, torch, the package) with the script's last words.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Python == "" {
		o.Python = "python3"
	}
	if _, err := os.Stat(filepath.Join(o.Code, "segment_anything")); err != nil {
		return Result{}, fmt.Errorf("PyTorch reference: %s holds no segment_anything package (give the official repository's checkout)", o.Code)
	}
	dir, err := os.MkdirTemp("", "segsam-torchbench")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "torchbench.py")
	if err := os.WriteFile(path, script, 0o600); err != nil {
		return Result{}, err
	}
	cmd := exec.CommandContext(ctx, o.Python, path, "--code", o.Code, "--arch", o.Arch,
		"--runs", strconv.Itoa(o.Runs), "--prompts", strconv.Itoa(o.Prompts), "--threads", strconv.Itoa(o.Threads))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("PyTorch reference (%s %s): %w: %s", o.Python, o.Arch, err, lastLine(stderr.String()))
	}
	var r Result
	if err := json.Unmarshal([]byte(lastLine(stdout.String())), &r); err != nil {
		return Result{}, fmt.Errorf("PyTorch reference (%s %s): unreadable result %q: %w", o.Python, o.Arch, lastLine(stdout.String()), err)
	}
	return r, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
