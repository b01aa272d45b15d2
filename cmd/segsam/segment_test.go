package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/transform"
)

const segmentTestdata = "../../testdata/segment"

// TestSegmentVolume labels the synthetic phantom with the built-in model
// and checks the written label map against the input: its grid (dimensions
// and affine), its values against classes.json (IDs, names of the model's
// vocabulary, voxel counts and mL), the Dice rows against the truth, and
// the montage.
func TestSegmentVolume(t *testing.T) {
	out := t.TempDir()
	vol := filepath.Join(segmentTestdata, "phantom.nii.gz")
	code, msg := runCLI(t, "segment", "--volume", vol, "--axes", "axial,coronal",
		"--truth", filepath.Join(segmentTestdata, "phantom_label.nii.gz"), "--truth-names", filepath.Join(segmentTestdata, "phantom_labels.json"),
		"--points-per-side", "4", "--stability-thresh", "0", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	in, err := medimg.ReadVolume(vol)
	if err != nil {
		t.Fatal(err)
	}
	lab, err := medimg.ReadVolume(filepath.Join(out, "labels.nii.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if !lab.SameGrid(in, 1e-5) {
		t.Fatalf("label map grid %v %v, input %v %v", lab.Dim, lab.Affine, in.Dim, in.Affine)
	}
	var res segmentResult
	data, err := os.ReadFile(filepath.Join(out, "classes.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for _, v := range lab.Data {
		if v != 0 {
			counts[int(v)]++
		}
	}
	if len(res.Classes) == 0 || len(counts) != len(res.Classes) {
		t.Fatalf("label values %v, classes.json %+v", counts, res.Classes)
	}
	sp := in.Spacing()
	for _, c := range res.Classes {
		if counts[c.ID] != c.Pixels || res.Names[itoaID(c.ID)] != c.Name || c.Name == "" {
			t.Errorf("class %+v: %d voxels in the NIfTI, name %q", c, counts[c.ID], res.Names[itoaID(c.ID)])
		}
		if math.Abs(c.VolumeML-float64(c.Pixels)*sp[0]*sp[1]*sp[2]/1000) > 1e-9 {
			t.Errorf("class %s: %.4f mL for %d voxels", c.Name, c.VolumeML, c.Pixels)
		}
	}
	if len(res.Axes) != 2 || res.Slices != in.NumSlices(medimg.Axial)+in.NumSlices(medimg.Coronal) {
		t.Errorf("axes %v, %d slices", res.Axes, res.Slices)
	}
	// The truth has 524 liver and 147 spleen voxels (the generator's ellipses).
	truth := map[string]int{}
	for _, d := range res.Dice {
		truth[d.Class] = d.Truth
	}
	if truth["liver"] == 0 || truth["spleen"] == 0 || res.MeanDice == nil {
		t.Errorf("dice rows %+v, mean %v", res.Dice, res.MeanDice)
	}
	if !strings.Contains(msg, "mean Dice over the 2 ground-truth classes") {
		t.Errorf("no Dice table in the output: %s", msg)
	}
	if _, err := transform.ReadImage(filepath.Join(out, "montage.png")); err != nil {
		t.Error(err)
	}
}

func itoaID(id int) string {
	b, _ := json.Marshal(id)
	return string(b)
}

// TestSegmentImage labels the bundled example image.
func TestSegmentImage(t *testing.T) {
	out := t.TempDir()
	img := "../../models/example/amos_0006_90.png"
	code, msg := runCLI(t, "segment", "--image", img, "--points-per-side", "4", "--stability-thresh", "0", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, msg)
	}
	if !strings.Contains(msg, "built-in model: --pred-iou-thresh 0") {
		t.Errorf("built-in thresholds not announced: %s", msg)
	}
	labels, err := transform.ReadImage(filepath.Join(out, "labels.png"))
	if err != nil {
		t.Fatal(err)
	}
	if labels.W != 256 || labels.H != 256 {
		t.Fatalf("labels.png is %dx%d", labels.W, labels.H)
	}
	var res segmentResult
	data, _ := os.ReadFile(filepath.Join(out, "classes.json"))
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for i := 0; i < labels.W*labels.H; i++ {
		if v := labels.Pix[3*i]; v != 0 {
			counts[int(v)]++
		}
	}
	if len(res.Classes) == 0 || len(counts) != len(res.Classes) || res.Candidates != 16 || len(res.Presence) == 0 {
		t.Fatalf("labels %v, classes.json %+v (%d candidates)", counts, res.Classes, res.Candidates)
	}
	for _, c := range res.Classes {
		if counts[c.ID] != c.Pixels {
			t.Errorf("class %+v: %d pixels in labels.png", c, counts[c.ID])
		}
	}
	if _, err := os.Stat(filepath.Join(out, "overlay.png")); err != nil {
		t.Error(err)
	}
}

func TestSegmentErrors(t *testing.T) {
	vol := filepath.Join(segmentTestdata, "phantom.nii.gz")
	img := "../../models/example/amos_0006_90.png"
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no input", []string{"--out", "x"}, 2, "exactly one of --image or --volume"},
		{"both inputs", []string{"--image", img, "--volume", vol, "--out", "x"}, 2, "exactly one"},
		{"unknown class", []string{"--image", img, "--classes", "liver,unicorn", "--out", "x"}, 2, "unknown class unicorn"},
		{"too large", []string{"--volume", vol, "--max-voxels", "1000", "--out", "x"}, 2, "volume too large"},
		{"nothing found", []string{"--image", img, "--points-per-side", "2", "--pred-iou-thresh", "0.99", "--out", "x"}, 1, "nothing found"},
		{"bad axes", []string{"--volume", vol, "--axes", "axial,up", "--out", "x"}, 2, "unknown axis"},
		{"truth without names", []string{"--volume", vol, "--truth", vol, "--out", "x"}, 2, "--truth and --truth-names"},
		{"bad grid", []string{"--image", img, "--points-per-side", "0", "--out", "x"}, 2, "points per side 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"segment"}, c.args...)
			for i, a := range args {
				if a == "x" {
					args[i] = filepath.Join(dir, "out")
				}
			}
			code, msg := runCLI(t, args...)
			if code != c.code || !strings.Contains(msg, c.want) {
				t.Errorf("exit %d, %q; want %d with %q", code, msg, c.code, c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
				t.Error("an output folder was written")
			}
		})
	}
}
