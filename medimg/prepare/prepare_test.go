package prepare

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/medimg"
)

const (
	niftiDir = "../../testdata/medimg/nifti"
	dicomDir = "../../testdata/medimg/dicom"
)

func TestSplitMasks(t *testing.T) {
	// 6x5 slice: class 1 has a 3-pixel diagonal (one 8-connected
	// component), a 5-pixel block and a single pixel; class 2 one pixel.
	labels := []int32{
		1, 0, 0, 0, 0, 0,
		0, 1, 0, 0, 0, 2,
		0, 0, 1, 0, 0, 0,
		0, 0, 0, 0, 1, 1,
		1, 0, 0, 1, 1, 1,
	}
	names := func(v int32) string { return map[int32]string{1: "liver", 2: "spleen"}[v] }
	cases := []struct {
		minFrac   float64
		wantNames []string
		wantSizes []int
		dropped   int
	}{
		{0, []string{"liver_000", "liver_001", "liver_002", "spleen_000"}, []int{5, 3, 1, 1}, 0},
		{2.0 / 30, []string{"liver_000", "liver_001"}, []int{5, 3}, 2},
		{4.0 / 30, []string{"liver_000"}, []int{5}, 3},
		{1, nil, nil, 4},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.minFrac), func(t *testing.T) {
			masks, dropped := SplitMasks(labels, 6, 5, c.minFrac, names)
			if dropped != c.dropped || len(masks) != len(c.wantNames) {
				t.Fatalf("%d masks, %d dropped; want %d, %d", len(masks), dropped, len(c.wantNames), c.dropped)
			}
			for i, m := range masks {
				if got := fmt.Sprintf("%s_%03d", m.Class, m.Index); got != c.wantNames[i] {
					t.Errorf("mask %d is %s, want %s", i, got, c.wantNames[i])
				}
				n := 0
				for _, p := range m.Mask.Pix {
					if p == 255 {
						n++
					} else if p != 0 {
						t.Fatalf("mask value %d", p)
					}
				}
				if n != c.wantSizes[i] {
					t.Errorf("mask %d has %d pixels, want %d", i, n, c.wantSizes[i])
				}
			}
		})
	}
	// The diagonal component holds exactly the diagonal pixels.
	masks, _ := SplitMasks(labels, 6, 5, 0, names)
	for _, p := range []int{0, 7, 14} {
		if masks[1].Mask.Pix[p] != 255 {
			t.Errorf("diagonal pixel %d missing", p)
		}
	}
}

func TestReadLabelNames(t *testing.T) {
	cases := []struct {
		name, json string
		file       string
		want       map[int]string
		err        string
	}{
		{"object", `{"1": "Liver", "2": "vertebrae L2"}`, "x.nii", map[int]string{1: "liver", 2: "vertebrae_l2"}, ""},
		{"list", `["background", "liver", "", "spleen"]`, "x.nii", map[int]string{1: "liver", 3: "spleen"}, ""},
		{"labels object", `{"labels": {"5": "kidney"}}`, "x.nii", map[int]string{5: "kidney"}, ""},
		{"per file", `{"labels": {"a_label.nii.gz": {"1": "aorta"}, "b.nii": {"1": "lung"}}}`, "/d/b.nii", map[int]string{1: "lung"}, ""},
		{"per file, other extension", `{"labels": {"a_label.nii.gz": {"1": "aorta"}, "b.nii": {"1": "lung"}}}`, "/d/a_label.nii", map[int]string{1: "aorta"}, ""},
		{"per file, not listed", `{"labels": {"a_label.nii.gz": {"1": "aorta"}}}`, "/d/c_label.nii.gz", nil, ""},
		{"bad key", `{"one": "liver"}`, "", nil, "not an integer"},
		{"not json", `liver=1`, "", nil, "JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "labels.json")
			os.WriteFile(p, []byte(c.json), 0o644)
			ln, err := ReadLabelNames(p)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ln.NamesFor(c.file)
			if fmt.Sprint(got) != fmt.Sprint(c.want) || (c.want == nil) != (got == nil) {
				t.Errorf("names %v, want %v", got, c.want)
			}
		})
	}
}

// TestRunCT slices the cropped CT with its 41-class label map and checks
// the written set with the dataset reader.
func TestRunCT(t *testing.T) {
	names, err := ReadLabelNames(filepath.Join(niftiDir, "ct_crop_labels.json"))
	if err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(niftiDir, "ct_crop.nii.gz")
	lab := filepath.Join(niftiDir, "ct_crop_label.nii.gz")
	jobs, err := Plan(vol, lab, names, "ct")
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].Labels != lab || jobs[0].Names[5] != "liver" {
		t.Fatalf("jobs %+v", jobs)
	}
	out := t.TempDir()
	w, err := dataset.Create(out, dataset.Overwrite())
	if err != nil {
		t.Fatal(err)
	}
	var progressOut, warn strings.Builder
	win := medimg.SoftTissueWindow
	st, err := Run(w, jobs, Options{Axes: []medimg.Axis{medimg.Axial, medimg.Coronal}, Window: &win, Progress: &progressOut, Warn: &warn})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Images == 0 || st.Images+st.EmptySkipped != 30+45 || st.SmallDropped == 0 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(progressOut.String(), "[1/1] ct_crop") || warn.Len() != 0 {
		t.Errorf("progress %q, warnings %q", progressOut.String(), warn.String())
	}
	ds, err := dataset.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Images) != st.Images || ds.NumMasks() != st.Masks {
		t.Fatalf("set has %d images, %d masks; stats %+v", len(ds.Images), ds.NumMasks(), st)
	}
	labVol, _ := medimg.ReadVolume(lab)
	for _, e := range ds.Images {
		var axis string
		var idx int
		if _, err := fmt.Sscanf(strings.ReplaceAll(strings.TrimPrefix(e.Name, "ct_crop_"), "_", " "), "%s %d", &axis, &idx); err != nil {
			t.Fatalf("image name %s: %v", e.Name, err)
		}
		if e.Modality != dataset.CT || e.Group != "ct_crop" || e.Meta.Extra["axis"] != axis || e.Meta.Extra["index"] != float64(idx) {
			t.Fatalf("%s: meta %+v", e.Name, e.Meta)
		}
		a, _ := medimg.ParseAxis(axis)
		labels, info, _ := labVol.SliceLabels(medimg.SliceSpec{Axis: a, Index: idx})
		if e.Width != info.Width || e.Height != info.Height {
			t.Fatalf("%s is %dx%d, want %dx%d", e.Name, e.Width, e.Height, info.Width, info.Height)
		}
		if axis == "coronal" && (e.Width != 100 || e.Height != 30) {
			t.Fatalf("coronal slice not resampled to square pixels: %dx%d", e.Width, e.Height)
		}
		// Every mask is large enough, lies inside its class and masks of
		// one class never overlap; sizes decrease with the index.
		seen := make(map[string][]bool)
		lastSize := map[string]int{}
		for i, m := range e.Masks {
			bits, err := e.LoadMaskBits(i)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for p, on := range bits {
				if !on {
					continue
				}
				n++
				if names.Default[int(labels[p])] != m.Class {
					t.Fatalf("%s: pixel %d of %s has label %d", e.Name, p, m.Path, labels[p])
				}
				if seen[m.Class] == nil {
					seen[m.Class] = make([]bool, len(bits))
				}
				if seen[m.Class][p] {
					t.Fatalf("%s: masks of %s overlap", e.Name, m.Class)
				}
				seen[m.Class][p] = true
			}
			if float64(n) < DefaultMinMaskFraction*float64(len(bits)) {
				t.Errorf("%s: mask %s has %d pixels, under the minimum", e.Name, m.Path, n)
			}
			if last, ok := lastSize[m.Class]; ok && n > last {
				t.Errorf("%s: %s larger than the previous mask of its class", e.Name, m.Path)
			}
			lastSize[m.Class] = n
		}
	}
}

// TestRunFolder prepares a folder holding two volumes, their label maps
// and a labels.json in the shared volumes' format, plus a DICOM series.
func TestRunFolder(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"sts019_pet.nii.gz", "sts019_pet_label.nii.gz", "ct_crop.nii.gz", "ct_crop_label.nii.gz"} {
		b, err := os.ReadFile(filepath.Join(niftiDir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	series := filepath.Join(dir, "mr_series")
	os.Mkdir(series, 0o755)
	entries, _ := os.ReadDir(filepath.Join(dicomDir, "implicit"))
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dicomDir, "implicit", e.Name()))
		os.WriteFile(filepath.Join(series, e.Name()), b, 0o644)
	}
	labelsJSON := `{"volumes": {"sts019_pet.nii.gz": {"label": "sts019_pet_label.nii.gz", "modality": "PET"}},
	  "labels": {"sts019_pet_label.nii.gz": {"1": "soft_tissue_sarcoma"}, "ct_crop_label.nii.gz": {"5": "liver"}}}`
	os.WriteFile(filepath.Join(dir, "labels.json"), []byte(labelsJSON), 0o644)
	names, err := ReadLabelNames(filepath.Join(dir, "labels.json"))
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := Plan(dir, "", names, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 {
		t.Fatalf("jobs %+v", jobs)
	}
	want := []struct{ vol, labels, modality string }{
		{"ct_crop.nii.gz", "ct_crop_label.nii.gz", ""},
		{"mr_series", "", ""},
		{"sts019_pet.nii.gz", "sts019_pet_label.nii.gz", "PET"},
	}
	for i, w := range want {
		j := jobs[i]
		if filepath.Base(j.Volume) != w.vol || (w.labels != "" && filepath.Base(j.Labels) != w.labels) || (w.labels == "" && j.Labels != "") || j.Modality != w.modality {
			t.Errorf("job %d: %+v, want %+v", i, j, w)
		}
	}
	// The CT has no modality anywhere: an error that says what to do.
	out := filepath.Join(t.TempDir(), "set")
	w, _ := dataset.Create(out)
	if _, err := Run(w, jobs, Options{}); err == nil || !strings.Contains(err.Error(), "--modality") {
		t.Fatalf("error %v", err)
	}
	jobs[0].Modality = "CT"
	// The CT's label map has 41 values, only 5 is named: an error naming
	// the unnamed values in increasing order, unless allowed.
	w, _ = dataset.Create(out, dataset.Overwrite())
	_, err = Run(w, jobs, Options{Axes: []medimg.Axis{medimg.Axial}})
	if !errors.Is(err, ErrUnnamed) || !strings.Contains(err.Error(), "ct_crop_label.nii.gz: label values without a class name: 1, 2, 3, 4, 6, 7,") {
		t.Fatalf("error %v", err)
	}
	var warn strings.Builder
	w, _ = dataset.Create(out, dataset.Overwrite())
	st, err := Run(w, jobs, Options{Axes: []medimg.Axis{medimg.Axial}, Warn: &warn, AllowUnnamed: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Volumes != 3 || st.Classes["soft_tissue_sarcoma"] == 0 || st.Classes["liver"] == 0 || st.Classes["label_1"] == 0 {
		t.Errorf("stats %+v", st)
	}
	if !strings.HasPrefix(warn.String(), "WARNING: ") || !strings.Contains(warn.String(), "label values 1, 2, 3, 4, 6, 7,") || strings.Count(warn.String(), "\n") != 1 {
		t.Errorf("warnings %q", warn.String())
	}
	ds, err := dataset.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	mods := map[string]int{}
	for _, e := range ds.Images {
		mods[e.Modality]++
	}
	// The MR series has no labels: its non-constant slices are all kept.
	if mods[dataset.MR] != 8 || mods[dataset.PET] == 0 || mods[dataset.CT] == 0 {
		t.Errorf("images per modality %v", mods)
	}
}

func TestRunErrors(t *testing.T) {
	pet := filepath.Join(niftiDir, "sts019_pet.nii.gz")
	cases := []struct {
		name string
		job  Job
		want string
	}{
		{"grid mismatch", Job{Volume: pet, Labels: filepath.Join(niftiDir, "ct_crop_label.nii.gz"), Modality: "PET"}, "voxels but volume"},
		{"bad modality", Job{Volume: pet, Modality: "MEG"}, "unknown modality"},
		{"missing", Job{Volume: "nope.nii.gz", Modality: "CT"}, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := dataset.Create(t.TempDir(), dataset.Overwrite())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Run(w, []Job{c.job}, Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	if _, err := Plan(niftiDir, filepath.Join(niftiDir, "ct_crop_label.nii.gz"), nil, ""); err == nil || !strings.Contains(err.Error(), "folder of label maps") {
		t.Errorf("Plan error %v", err)
	}
}

func TestStemName(t *testing.T) {
	cases := map[string]string{
		"/a/b/case 01.nii.gz": "case_01",
		"x.NII":               "x",
		"dir/series/":         "series",
		"s.dcm":               "s",
	}
	for in, want := range cases {
		if got := StemName(in); got != want {
			t.Errorf("StemName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPlanNames finds a label map's class names by the volume's record
// when the label file was renamed, and otherwise says why there are none.
func TestPlanNames(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "labels.json")
	os.WriteFile(p, []byte(`{"volumes": {"ct.nii.gz": {"label": "ct_seg.nii.gz", "modality": "CT"}},
	  "labels": {"ct_seg.nii.gz": {"1": "spleen"}, "mr_label.nii.gz": {"1": "liver"}}}`), 0o644)
	ln, err := ReadLabelNames(p)
	if err != nil {
		t.Fatal(err)
	}
	m, note := ln.namesForJob("/x/ct.nii.gz", "/x/renamed_label.nii.gz")
	if m[1] != "spleen" || note != "" {
		t.Errorf("by volume record: %v, %q", m, note)
	}
	m, note = ln.namesForJob("/x/pet.nii.gz", "/x/pet_label.nii.gz")
	if m != nil || !strings.Contains(note, "labels.json names the classes of ct_seg.nii.gz, mr_label.nii.gz, not of pet_label.nii.gz") {
		t.Errorf("unlisted: %v, %q", m, note)
	}
}
