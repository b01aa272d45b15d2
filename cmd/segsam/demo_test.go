package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/segsam/segsam/transform"
)

// TestDemo runs the README's first command: the built-in model on the
// bundled example writes an overlay of the example's size (×3).
func TestDemo(t *testing.T) {
	out := t.TempDir()
	if code, msg := runCLI(t, "demo", "--out", out); code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	img, err := transform.ReadImage(filepath.Join(out, "overlay.png"))
	if err != nil {
		t.Fatal(err)
	}
	if img.W != 3*256 || img.H != 3*256 {
		t.Errorf("overlay is %dx%d, want 768x768", img.W, img.H)
	}
	if _, err := os.Stat(filepath.Join(out, "mask.png")); err != nil {
		t.Error(err)
	}
}
