package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/npy"
)

const fixtures = "../../testdata/fixtures"

// runCLI runs segsam with args and returns its exit code and error output.
func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	old := stderr
	stderr = &buf
	defer func() { stderr = old }()
	code := run(args)
	return code, buf.String()
}

func npyData(t *testing.T, path string) ([]int, []float32) {
	t.Helper()
	a, err := npy.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	return a.Shape, a.Float32()
}

func worst(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	w := 0.0
	for i := range got {
		w = math.Max(w, math.Abs(float64(got[i]-want[i])))
	}
	return w
}

// TestPredictMatchesFixtures runs the CLI as the issue asks (original-image
// pixels in, the fixtures' .npy layouts out) on both fixture models.
func TestPredictMatchesFixtures(t *testing.T) {
	cases := []struct {
		model, id string
		args      []string
	}{
		{"sam_tiny", "b_mm", []string{"--point", "52,55", "--point", "125,40,0", "--multimask"}},
		{"sam_tiny", "d_sm", []string{"--box", "30,25,85,85", "--point", "120,45,0"}},
		{"sam_tiny", "g_mm", []string{"--box", "30,25,85,85", "--box", "95,10,138,80", "--multimask"}},
		{"sammed2d_tiny", "c_mm", []string{"--box", "30,25,85,85", "--multimask"}},
		{"sammed2d_tiny", "e_sm", []string{"--point", "52,55", "--point", "125,40,0", "--mask-input", "e_mask_input.npy"}},
		// No sparse prompt: a mask input alone (f), and no prompt at all (n,
		// img2_n: multimask by default, as the official predict()).
		{"sam_tiny", "f_mm", []string{"--mask-input", "f_mask_input.npy", "--multimask"}},
		{"sam_tiny", "f_sm", []string{"--mask-input", "f_mask_input.npy"}},
		{"sammed2d_tiny", "f_mm", []string{"--mask-input", "f_mask_input.npy", "--multimask"}},
		{"sammed2d_tiny", "f_sm", []string{"--mask-input", "f_mask_input.npy"}},
		{"sam_tiny", "n_mm", nil},
		{"sam_tiny", "n_sm", []string{"--multimask=false"}},
		{"sam_tiny", "img2_n_mm", nil},
		{"sam_tiny", "img2_n_sm", []string{"--multimask=false"}},
		{"sammed2d_tiny", "n_mm", nil},
		{"sammed2d_tiny", "n_sm", []string{"--multimask=false"}},
		{"sammed2d_tiny", "img2_n_mm", []string{"--multimask"}},
		{"sammed2d_tiny", "img2_n_sm", []string{"--multimask=false"}},
	}
	for _, c := range cases {
		t.Run(c.model+"/"+c.id, func(t *testing.T) {
			dir := filepath.Join(fixtures, c.model)
			out := t.TempDir()
			image := "image.npy"
			if strings.HasPrefix(c.id, "img2_") {
				image = "image2.npy"
			}
			args := []string{"predict", "--checkpoint", filepath.Join(dir, c.model+".pth"),
				"--config", filepath.Join(dir, "config.json"), "--image", filepath.Join(dir, image), "--out", out}
			for i, a := range c.args {
				if strings.HasSuffix(a, ".npy") && i > 0 && c.args[i-1] == "--mask-input" {
					a = filepath.Join(dir, a)
				}
				args = append(args, a)
			}
			if code, msg := runCLI(t, args...); code != 0 {
				t.Fatalf("exit %d: %s", code, msg)
			}
			for _, f := range []string{"masks", "iou_predictions", "low_res_logits"} {
				gotShape, got := npyData(t, filepath.Join(out, f+".npy"))
				wantShape, want := npyData(t, filepath.Join(dir, c.id+"_"+f+".npy"))
				if c.id == "g_mm" && c.model == "sam_tiny" || f == "masks" {
					if len(gotShape) != len(wantShape) {
						t.Errorf("%s: shape %v, want %v", f, gotShape, wantShape)
					}
				}
				if d := worst(got, want); d > 2e-5 {
					t.Errorf("%s: worst difference %.3g (shapes %v vs %v)", f, d, gotShape, wantShape)
				}
			}
			for _, f := range []string{"result.json", "mask_0.png", "embedding.npy"} {
				if _, err := os.Stat(filepath.Join(out, f)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestPredictErrors checks that bad input gives a clear message and a
// non-zero exit, never a panic.
func TestPredictErrors(t *testing.T) {
	dir := filepath.Join(fixtures, "sam_tiny")
	ckpt := filepath.Join(dir, "sam_tiny.pth")
	cfg := filepath.Join(dir, "config.json")
	img := filepath.Join(dir, "image.png")
	tmp := t.TempDir()
	data, err := os.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(tmp, "truncated.pth")
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	notImage := filepath.Join(tmp, "notes.png")
	if err := os.WriteFile(notImage, []byte("these are not pixels"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"truncated checkpoint", []string{"--checkpoint", truncated, "--config", cfg, "--image", img, "--point", "5,5"}, 1, "truncated"},
		{"not a checkpoint", []string{"--checkpoint", cfg, "--config", cfg, "--image", img, "--point", "5,5"}, 1, "not a checkpoint"},
		{"wrong architecture", []string{"--checkpoint", ckpt, "--arch", "vit_b", "--image", img, "--point", "5,5"}, 1, "does not fit architecture vit_b"},
		{"unknown architecture", []string{"--checkpoint", ckpt, "--arch", "vit_q", "--image", img, "--point", "5,5"}, 2, "unknown architecture"},
		{"missing image", []string{"--checkpoint", ckpt, "--config", cfg, "--image", filepath.Join(tmp, "none.png"), "--point", "5,5"}, 1, "no such file"},
		{"unreadable image", []string{"--checkpoint", ckpt, "--config", cfg, "--image", notImage, "--point", "5,5"}, 1, "notes.png"},
		{"point outside", []string{"--checkpoint", ckpt, "--config", cfg, "--image", img, "--point", "141,5"}, 2, "outside the 140x100 image"},
		{"point half a pixel outside", []string{"--checkpoint", ckpt, "--config", cfg, "--image", img, "--point", "140.5,5"}, 2, "[0, width] x [0, height], both edges included"},
		{"unknown format names volumes", []string{"--checkpoint", ckpt, "--config", cfg, "--image", notImage, "--point", "5,5"}, 1, "NIfTI .nii/.nii.gz or DICOM, with --slice"},
		{"slice of a 2-D image", []string{"--checkpoint", ckpt, "--config", cfg, "--image", img, "--slice", "axial:3", "--point", "5,5"}, 2, "--slice is for volumes (NIfTI, DICOM)"},
		{"box outside", []string{"--checkpoint", ckpt, "--config", cfg, "--image", img, "--box", "-1,0,20,20"}, 2, "outside"},
		// Checked before the checkpoint is read: the prompt's error, not the file's.
		{"box outside, before loading", []string{"--checkpoint", truncated, "--config", cfg, "--image", img, "--box", "0,0,200,20"}, 2, "box 0 [0 0 200 20] is outside the 140x100 image"},
		{"inverted box", []string{"--checkpoint", ckpt, "--config", cfg, "--image", img, "--box", "50,50,20,20"}, 2, "x0 <= x1"},
		{"bad label", []string{"--checkpoint", ckpt, "--config", cfg, "--image", img, "--point", "5,5,2"}, 2, "label must be 1"},
		{"malformed point", []string{"--checkpoint", ckpt, "--config", cfg, "--image", img, "--point", "5;5"}, 2, "want X,Y"},
		{"malformed box", []string{"--checkpoint", ckpt, "--config", cfg, "--image", img, "--box", "1,2,3"}, 2, "4 comma-separated"},
		{"no prompt, SEG-SAM checkpoint", []string{"--image", img}, 2, "a SEG-SAM checkpoint needs a --point or a --box"},
		{"mask input only, SEG-SAM checkpoint", []string{"--image", img, "--mask-input", filepath.Join(dir, "f_mask_input.npy")}, 2, "a SEG-SAM checkpoint needs a --point or a --box"},
		{"wrong mask input", []string{"--checkpoint", ckpt, "--config", cfg, "--image", img, "--mask-input", filepath.Join(dir, "features.npy")}, 2, "mask input has"},
		{"stray argument", []string{"--checkpoint", ckpt, "--image", img, "--point", "5,5", "extra"}, 2, "unexpected argument"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"predict", "--out", out}, c.args...)
			code, msg := runCLI(t, args...)
			if code != c.code || !strings.Contains(msg, c.want) {
				t.Errorf("exit %d, message %q; want exit %d and a message containing %q", code, msg, c.code, c.want)
			}
		})
	}
}

// TestPredictVolumeSlice segments one slice of a NIfTI volume, as
// `segsam predict --image V.nii.gz --slice axial:15` does.
func TestPredictVolumeSlice(t *testing.T) {
	dir := filepath.Join(fixtures, "sam_tiny")
	vol := "../../testdata/medimg/nifti/ct_crop.nii.gz"
	out := t.TempDir()
	code, msg := runCLI(t, "predict", "--checkpoint", filepath.Join(dir, "sam_tiny.pth"), "--config", filepath.Join(dir, "config.json"),
		"--image", vol, "--slice", "axial:15", "--window", "soft", "--point", "10,10", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	data, err := os.ReadFile(filepath.Join(out, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"slice": "axial:15"`) {
		t.Errorf("result.json does not record the slice: %s", data)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--image", vol, "--point", "1,1"}, "--slice"},
		{[]string{"--image", vol, "--slice", "axial:9999", "--point", "1,1"}, "out of range"},
		{[]string{"--image", vol, "--slice", "diagonal:3", "--point", "1,1"}, "--slice"},
		{[]string{"--image", vol, "--slice", "axial:3", "--window", "warm", "--point", "1,1"}, "--window"},
	} {
		args := append([]string{"predict", "--checkpoint", filepath.Join(dir, "sam_tiny.pth"), "--config", filepath.Join(dir, "config.json"), "--out", out}, c.args...)
		if code, msg := runCLI(t, args...); code != 2 || !strings.Contains(msg, c.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and %q", c.args, code, msg, c.want)
		}
	}
}

// TestPredictBuiltinSEGSAM runs predict without --checkpoint: the built-in
// SEG-SAM model returns a class, a confidence and a semantic mask.
func TestPredictBuiltinSEGSAM(t *testing.T) {
	out := t.TempDir()
	img := "../../testdata/dataset/demo_subset/images/amos_0004_75.png"
	if code, msg := runCLI(t, "predict", "--image", img, "--box", "40,90,140,180", "--out", out); code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	var res struct {
		Objects []struct {
			Class      string  `json:"class"`
			Confidence float64 `json:"confidence"`
		} `json:"objects"`
		Semantic []string    `json:"semantic_mask_files"`
		Presence [][]float64 `json:"presence_scores"`
		Classes  []string    `json:"classes"`
	}
	data, err := os.ReadFile(filepath.Join(out, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Objects) != 1 || res.Objects[0].Class == "" || res.Objects[0].Confidence <= 0 || res.Objects[0].Confidence > 1 {
		t.Errorf("objects %+v", res.Objects)
	}
	// The built-in model is named, and the rule is not HTML-escaped.
	if !strings.Contains(string(data), `"checkpoint": "built-in:segsam_small"`) || strings.Contains(string(data), `\u003c`) ||
		!strings.Contains(string(data), `"binary_rule": "mask_<i>.png pixel is on where the logit in masks.npy is > 0`) {
		t.Errorf("result.json: %s", data)
	}
	if len(res.Semantic) != 1 || len(res.Presence) != 1 || len(res.Presence[0]) != len(res.Classes) {
		t.Errorf("semantic %v, presence %d×%d for %d classes", res.Semantic, len(res.Presence), len(res.Presence[0]), len(res.Classes))
	}
	for _, f := range []string{"semantic_mask_0.png", "semantic_masks.npy"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestPredictPointEdges: prompt coordinates are continuous in [0, W] x
// [0, H], both edges included, as -h says; integers and fractions alike.
func TestPredictPointEdges(t *testing.T) {
	dir := filepath.Join(fixtures, "sam_tiny")
	base := []string{"predict", "--checkpoint", filepath.Join(dir, "sam_tiny.pth"), "--config", filepath.Join(dir, "config.json"),
		"--image", filepath.Join(dir, "image.png"), "--out", t.TempDir()}
	for _, pt := range []string{"140,100", "139.5,99.5", "0,0", "0.25,50"} {
		if code, msg := runCLI(t, append(base, "--point", pt)...); code != 0 {
			t.Errorf("--point %s on the 140x100 image: exit %d: %s", pt, code, msg)
		}
	}
	for _, pt := range []string{"140.5,10", "-0.5,10", "10,100.01"} {
		if code, msg := runCLI(t, append(base, "--point", pt)...); code != 2 || !strings.Contains(msg, "outside") {
			t.Errorf("--point %s on the 140x100 image: exit %d: %s", pt, code, msg)
		}
	}
	if code, msg := runCLI(t, "predict", "-h"); code != 0 || !strings.Contains(msg, "[0, width] x [0, height], both edges included") {
		t.Errorf("predict -h: exit %d: %s", code, msg)
	}
}
