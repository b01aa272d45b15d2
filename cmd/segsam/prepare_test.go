package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/dataset"
)

const prepareTestdata = "../../testdata/medimg/nifti"

func TestPrepareCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "set")
	var log strings.Builder
	err := prepareMain([]string{
		"--volume", filepath.Join(prepareTestdata, "ct_crop.nii.gz"),
		"--labels", filepath.Join(prepareTestdata, "ct_crop_label.nii.gz"),
		"--label-names", filepath.Join(prepareTestdata, "ct_crop_labels.json"),
		"--modality", "CT", "--window", "soft", "--axes", "axial,sagittal",
		"--out", out,
	}, &log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "wrote ") || !strings.Contains(log.String(), "ct_crop") {
		t.Errorf("log %q", log.String())
	}
	ds, err := dataset.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	axes := map[string]int{}
	for _, e := range ds.Images {
		axes[e.Meta.Extra["axis"].(string)]++
		if e.Meta.Extra["window"] != "soft" || e.Modality != dataset.CT {
			t.Fatalf("meta %+v", e.Meta)
		}
	}
	if axes["axial"] == 0 || axes["sagittal"] == 0 || axes["coronal"] != 0 {
		t.Errorf("images per axis %v", axes)
	}
	found := false
	for _, c := range ds.Classes() {
		found = found || c == "liver"
	}
	if !found {
		t.Errorf("classes %v lack liver", ds.Classes())
	}
	// A second run into the same folder needs --overwrite.
	args := []string{"--volume", filepath.Join(prepareTestdata, "sts019_pet.nii.gz"), "--modality", "PET", "--axes", "axial", "--quiet", "--out", out}
	if code := run(append([]string{"prepare"}, args...)); code != 1 {
		t.Errorf("exit code %d for a non-empty --out", code)
	}
	if err := prepareMain(append(args, "--overwrite"), &log); err != nil {
		t.Fatal(err)
	}
	if ds, err := dataset.Open(out); err != nil || ds.Images[0].Modality != dataset.PET {
		t.Errorf("overwritten set: %v", err)
	}
}

func TestPrepareUsageErrors(t *testing.T) {
	vol := filepath.Join(prepareTestdata, "sts019_pet.nii.gz")
	out := t.TempDir()
	cases := [][]string{
		{"--out", out},
		{"--volume", vol},
		{"--volume", vol, "--out", out, "--window", "liver"},
		{"--volume", vol, "--out", out, "--axes", "oblique"},
		{"--volume", vol, "--out", out, "--modality", "MEG"},
		{"--volume", vol, "--out", out, "--min-mask", "2"},
		{"--volume", vol, "--out", out, "extra"},
	}
	for _, args := range cases {
		if code := run(append([]string{"prepare"}, args...)); code != 2 {
			t.Errorf("segsam prepare %v: exit code %d, want 2", args, code)
		}
	}
}
