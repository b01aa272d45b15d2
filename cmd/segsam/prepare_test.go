package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/medimg/nifti"
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

// writeTinyVolume writes a 32x32x4 CT-like volume and its label map (a
// spleen block labelled 1, a kidney block labelled 2) with the repo's NIfTI
// writer.
func writeTinyVolume(t *testing.T, vol, lab string) {
	t.Helper()
	const nx, ny, nz = 32, 32, 4
	img := make([]float32, nx*ny*nz)
	labels := make([]uint8, nx*ny*nz)
	for z := 0; z < nz; z++ {
		for y := 0; y < ny; y++ {
			for x := 0; x < nx; x++ {
				i := x + nx*(y+ny*z)
				img[i] = float32(-100 + 10*x + 3*y + z)
				switch {
				case x >= 2 && x < 14 && y >= 2 && y < 14:
					labels[i] = 1
				case x >= 18 && x < 30 && y >= 16 && y < 30:
					labels[i] = 2
				}
			}
		}
	}
	for _, f := range []struct {
		path string
		make func() (*nifti.Image, error)
	}{
		{vol, func() (*nifti.Image, error) { return nifti.New([]int{nx, ny, nz}, img) }},
		{lab, func() (*nifti.Image, error) { return nifti.New([]int{nx, ny, nz}, labels) }},
	} {
		im, err := f.make()
		if err != nil {
			t.Fatal(err)
		}
		if err := nifti.Write(f.path, im); err != nil {
			t.Fatal(err)
		}
	}
}

// readmeCommand returns the arguments of the README's command line that
// starts with prefix (without "segsam").
func readmeCommand(t *testing.T, prefix string) []string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, prefix) {
			if i := strings.Index(line, "#"); i >= 0 {
				line = line[:i]
			}
			return strings.Fields(line)[1:]
		}
	}
	t.Fatalf("README.md has no line starting with %q", prefix)
	return nil
}

// TestPrepareReadmeExample runs the README's prepare command as written,
// in a folder holding files named as it names them, with the class-name
// files users write: a plain map, and a labels.json entry per label file.
func TestPrepareReadmeExample(t *testing.T) {
	args := readmeCommand(t, "segsam prepare ")
	forms := map[string]string{
		"plain map": `{"1": "spleen", "2": "kidney_right"}`,
		"per file":  `{"labels": {"ct_label.nii.gz": {"1": "spleen", "2": "kidney_right"}}}`,
		"volumes record": `{"volumes": {"ct.nii.gz": {"label": "totalseg_example_ct_label.nii.gz", "modality": "CT"}},
			"labels": {"totalseg_example_ct_label.nii.gz": {"1": "spleen", "2": "kidney_right"}}}`,
	}
	for name, labelsJSON := range forms {
		t.Run(name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			writeTinyVolume(t, "ct.nii.gz", "ct_label.nii.gz")
			if err := os.WriteFile("labels.json", []byte(labelsJSON), 0o644); err != nil {
				t.Fatal(err)
			}
			if code, msg := runCLI(t, append(args, "--quiet")...); code != 0 {
				t.Fatalf("segsam %s: exit %d: %s", strings.Join(args, " "), code, msg)
			}
			ds, err := dataset.Open("data")
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(ds.Classes(), ","); got != "kidney_right,spleen" {
				t.Errorf("classes %s", got)
			}
		})
	}
}

// TestPrepareUnnamed: a class-name file without an entry for the label
// file is an error that says what to do, and leaves nothing behind; with
// --allow-unnamed the run warns loudly and names the classes label_N.
func TestPrepareUnnamed(t *testing.T) {
	args := readmeCommand(t, "segsam prepare ")
	t.Chdir(t.TempDir())
	writeTinyVolume(t, "ct.nii.gz", "ct_label.nii.gz")
	// The shared volumes' labels.json, which names other label files.
	os.WriteFile("labels.json", []byte(`{"labels": {"totalseg_example_ct_label.nii.gz": {"1": "spleen"}, "sts019_pet_label.nii.gz": {"1": "soft_tissue_sarcoma"}}}`), 0o644)
	code, msg := runCLI(t, append(args, "--quiet")...)
	for _, want := range []string{"ct_label.nii.gz: label values without a class name: 1, 2",
		"labels.json names the classes of sts019_pet_label.nii.gz, totalseg_example_ct_label.nii.gz, not of ct_label.nii.gz",
		"--allow-unnamed"} {
		if code != 1 || !strings.Contains(msg, want) {
			t.Errorf("exit %d, message %q lacks %q", code, msg, want)
		}
	}
	assertNoSet(t, ".", "data")
	// Without --label-names at all: the same error.
	if code, msg := runCLI(t, "prepare", "--volume", "ct.nii.gz", "--labels", "ct_label.nii.gz", "--modality", "CT", "--quiet", "--out", "data"); code != 1 || !strings.Contains(msg, "no class names were given") {
		t.Errorf("no --label-names: exit %d, %q", code, msg)
	}
	code, msg = runCLI(t, append(args, "--quiet", "--allow-unnamed")...)
	if code != 0 || !strings.Contains(msg, "WARNING: ct_label.nii.gz: label values 1, 2 have no class name") {
		t.Fatalf("--allow-unnamed: exit %d, %q", code, msg)
	}
	ds, err := dataset.Open("data")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(ds.Classes(), ","); got != "label_1,label_2" {
		t.Errorf("classes %s", got)
	}
}

// assertNoSet checks that out does not exist and that no staging folder
// is left in dir.
func assertNoSet(t *testing.T, dir, out string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, out)); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed run (%v)", out, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".partial-") {
			t.Errorf("staging folder %s left behind", e.Name())
		}
	}
}

// TestPrepareFailureLeavesNothing: a run that fails after writing part of
// the set (the second of two volumes has unnamed labels) leaves neither
// the set nor its staging folder, and the rerun needs no --overwrite.
func TestPrepareFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	vols := filepath.Join(dir, "vols")
	os.Mkdir(vols, 0o755)
	writeTinyVolume(t, filepath.Join(vols, "a.nii.gz"), filepath.Join(vols, "a_label.nii.gz"))
	writeTinyVolume(t, filepath.Join(vols, "b.nii.gz"), filepath.Join(vols, "b_label.nii.gz"))
	names := filepath.Join(dir, "names.json")
	os.WriteFile(names, []byte(`{"labels": {"a_label.nii.gz": {"1": "spleen", "2": "liver"}}}`), 0o644)
	out := filepath.Join(dir, "set")
	args := []string{"prepare", "--volume", vols, "--label-names", names, "--modality", "CT", "--quiet", "--out", out}
	if code, msg := runCLI(t, args...); code != 1 || !strings.Contains(msg, "b_label.nii.gz") {
		t.Fatalf("exit %d: %s", code, msg)
	}
	assertNoSet(t, dir, "set")
	os.WriteFile(names, []byte(`{"1": "spleen", "2": "liver"}`), 0o644)
	if code, msg := runCLI(t, args...); code != 0 {
		t.Fatalf("rerun: exit %d: %s", code, msg)
	}
	assertNoSet(t, dir, "set.does-not-exist")
	ds, err := dataset.Open(out)
	if err != nil || numGroups(ds) != 2 {
		t.Fatalf("set: %v", err)
	}
	// --overwrite replaces the set and keeps other files in the folder.
	os.WriteFile(filepath.Join(out, "NOTES.txt"), []byte("mine"), 0o644)
	if code, msg := runCLI(t, "prepare", "--volume", filepath.Join(vols, "a.nii.gz"), "--labels", filepath.Join(vols, "a_label.nii.gz"),
		"--label-names", names, "--modality", "CT", "--quiet", "--overwrite", "--out", out); code != 0 {
		t.Fatalf("--overwrite: exit %d: %s", code, msg)
	}
	if ds, err := dataset.Open(out); err != nil || numGroups(ds) != 1 {
		t.Errorf("overwritten set: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "NOTES.txt")); err != nil {
		t.Errorf("--overwrite removed another file: %v", err)
	}
	assertNoSet(t, dir, "set.does-not-exist")
}

func numGroups(ds *dataset.Dataset) int {
	g := map[string]bool{}
	for _, e := range ds.Images {
		g[e.Group] = true
	}
	return len(g)
}
