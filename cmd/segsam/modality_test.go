package main

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/segsam/segsam/segsam"
)

// TestDataModalityClasses: 'segsam data modality-classes' writes the
// modality prior's table of a data set into a copy of the built-in
// checkpoint, which then answers predict --modality; missing flags are a
// usage error.
func TestDataModalityClasses(t *testing.T) {
	out := filepath.Join(t.TempDir(), "with_table.safetensors")
	var stdout bytes.Buffer
	args := []string{"modality-classes", "--checkpoint", "../../models/segsam_small.safetensors", "--data", evalSubset, "--out", out}
	if err := dataMain(args, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "CT: ") || !strings.Contains(stdout.String(), "wrote "+out) {
		t.Errorf("output:\n%s", stdout.String())
	}
	m, err := segsam.Load(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(m.Config.ModalityClasses["CT"], "aorta") || slices.Contains(m.Config.ModalityClasses["CT"], "polyp") {
		t.Errorf("CT classes %v", m.Config.ModalityClasses["CT"])
	}
	pred := []string{"predict", "--checkpoint", out, "--image", "../../models/example/amos_0006_90.png", "--box", "48,94,134,177", "--modality", "CT", "--out", t.TempDir()}
	if code := run(pred); code != 0 {
		t.Errorf("predict --modality CT: exit %d", code)
	}
	if code := run([]string{"data", "modality-classes", "--checkpoint", out, "--out", out}); code != 2 {
		t.Errorf("modality-classes without --data: exit %d, want 2", code)
	}
}
