package sources

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/bmp"

	"github.com/segsam/segsam/dataset"
	"github.com/segsam/segsam/medimg/nifti"
)

const exclusionsFile = "../../testdata/training_exclusions.json"

// testRepo is a git repository made for a test, laid out as the fetch
// snapshots are (reposDir/owner+name/repo/.git).
type testRepo struct {
	reposDir, work string
	first, head    string
}

func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func encodePNG(t *testing.T, img image.Image) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func rgbImage(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	return img
}

func fill(g interface{ Set(x, y int, c color.Color) }, r image.Rectangle, c color.Color) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			g.Set(x, y, c)
		}
	}
}

func niftiBytes[T nifti.Number](t *testing.T, dir string, shape []int, data []T) []byte {
	img, err := nifti.New(shape, data)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "v.nii.gz")
	if err := nifti.Write(p, img); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func makeRepo(t *testing.T) *testRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	reposDir := t.TempDir()
	work := filepath.Join(reposDir, "test+repo", "repo")
	files := map[string][]byte{}

	// Endoscopy pairs, binary masks: case1 has two blobs and a speck.
	files["pairs/images/case1_a.png"] = encodePNG(t, rgbImage(300, 200))
	m := image.NewGray(image.Rect(0, 0, 300, 200))
	fill(m, image.Rect(10, 10, 100, 100), color.Gray{255})
	fill(m, image.Rect(150, 50, 280, 180), color.Gray{200})
	fill(m, image.Rect(120, 190, 123, 193), color.Gray{255}) // 9 px: dropped
	files["pairs/masks/case1_a.png"] = encodePNG(t, m)
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, rgbImage(120, 100), nil); err != nil {
		t.Fatal(err)
	}
	files["pairs/images/case2_b.jpg"] = jb.Bytes()
	m2 := image.NewGray(image.Rect(0, 0, 120, 100))
	fill(m2, image.Rect(20, 20, 80, 70), color.Gray{255})
	files["pairs/masks/case2_b.png"] = encodePNG(t, m2)
	files["pairs/images/case3_c.png"] = encodePNG(t, rgbImage(50, 40)) // no mask
	files["pairs/images/aug_case1_a.png"] = encodePNG(t, rgbImage(50, 40))

	// X-ray, 16-bit image, values mask.
	g16 := image.NewGray16(image.Rect(0, 0, 64, 48))
	for i := range g16.Pix {
		g16.Pix[i] = byte(i)
	}
	files["xr/img/p1.png"] = encodePNG(t, g16)
	lab := image.NewGray(image.Rect(0, 0, 64, 48))
	fill(lab, image.Rect(2, 2, 30, 46), color.Gray{1})
	fill(lab, image.Rect(34, 2, 62, 46), color.Gray{2})
	fill(lab, image.Rect(40, 40, 44, 44), color.Gray{7}) // unlisted: ignored
	files["xr/lab/p1.png"] = encodePNG(t, lab)

	// Fundus, BMP image, colour mask.
	var bb bytes.Buffer
	if err := bmp.Encode(&bb, rgbImage(80, 80)); err != nil {
		t.Fatal(err)
	}
	files["fun/img/f1.bmp"] = bb.Bytes()
	cm := image.NewNRGBA(image.Rect(0, 0, 80, 80))
	fill(cm, cm.Rect, color.NRGBA{0, 0, 0, 255})
	fill(cm, image.Rect(20, 20, 60, 60), color.NRGBA{0, 255, 0, 255})
	fill(cm, image.Rect(30, 30, 50, 50), color.NRGBA{255, 0, 0, 255})
	files["fun/gt/f1.png"] = encodePNG(t, cm)

	// HC18-style ultrasound: group 010 is excluded by the real rules.
	for _, g := range []string{"010", "011", "012"} {
		files["src/Dataset/training/image/"+g+"_HC.png"] = encodePNG(t, image.NewGray(image.Rect(0, 0, 40, 30)))
		a := image.NewGray(image.Rect(0, 0, 40, 30))
		fill(a, image.Rect(5, 5, 30, 25), color.Gray{255})
		files["src/Dataset/training/image/"+g+"_HC_Annotation.png"] = encodePNG(t, a)
	}
	// An outline mask to fill.
	files["ring/img/r1.png"] = encodePNG(t, image.NewGray(image.Rect(0, 0, 40, 40)))
	ring := image.NewGray(image.Rect(0, 0, 40, 40))
	for i := 8; i < 32; i++ {
		ring.SetGray(i, 8, color.Gray{255})
		ring.SetGray(i, 31, color.Gray{255})
		ring.SetGray(8, i, color.Gray{255})
		ring.SetGray(31, i, color.Gray{255})
	}
	files["ring/gt/r1.png"] = encodePNG(t, ring)
	// Path with a space.
	files["sp ace/im 1.png"] = encodePNG(t, image.NewGray(image.Rect(0, 0, 20, 20)))
	sm := image.NewGray(image.Rect(0, 0, 20, 20))
	fill(sm, image.Rect(2, 2, 18, 18), color.Gray{255})
	files["sp ace/im 1_mask.png"] = encodePNG(t, sm)

	// A CT volume 300 x 20 x 4 with a label box (1) and an unnamed value 3.
	tmp := t.TempDir()
	const nx, ny, nz = 300, 20, 4
	ct := make([]int16, nx*ny*nz)
	seg := make([]uint8, nx*ny*nz)
	for k := 0; k < nz; k++ {
		for j := 0; j < ny; j++ {
			for i := 0; i < nx; i++ {
				p := i + nx*(j+ny*k)
				ct[p] = int16(i - 100)
				if i >= 50 && i < 250 && j >= 4 && j < 16 {
					seg[p] = 1
				}
				if i < 10 && j < 10 {
					seg[p] = 3
				}
			}
		}
	}
	files["vol/case1/ct.nii.gz"] = niftiBytes(t, tmp, []int{nx, ny, nz}, ct)
	files["vol/case1/seg.nii.gz"] = niftiBytes(t, tmp, []int{nx, ny, nz}, seg)

	for p, data := range files {
		full := filepath.Join(work, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitCmd(t, work, "init", "-q")
	gitCmd(t, work, "add", "-A")
	gitCmd(t, work, "commit", "-q", "-m", "first")
	r := &testRepo{reposDir: reposDir, work: work}
	r.first = gitCmd(t, work, "rev-parse", "HEAD")
	// HEAD differs: case2 is deleted later.
	gitCmd(t, work, "rm", "-q", "pairs/images/case2_b.jpg")
	gitCmd(t, work, "commit", "-q", "-m", "second")
	r.head = gitCmd(t, work, "rev-parse", "HEAD")
	return r
}

func manifest(t *testing.T, fields map[string]any) *Source {
	t.Helper()
	m := map[string]any{"schema": 1, "repo": "test/repo", "license": "CC0", "role": "train"}
	for k, v := range fields {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(data)
	if err != nil {
		t.Fatalf("parse %s: %v", data, err)
	}
	return s
}

func loadExcl(t *testing.T) *Exclusions {
	t.Helper()
	e, err := LoadExclusions(exclusionsFile)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestBuildSources(t *testing.T) {
	r := makeRepo(t)
	excl := loadExcl(t)
	out := t.TempDir()
	ctx := context.Background()

	type check func(t *testing.T, ds *dataset.Dataset, taken string, res *Result)
	cases := []struct {
		name   string
		fields map[string]any
		check  check
	}{
		{"binary pairs", map[string]any{
			"id": "endo", "dataset": "Test polyps", "modality": "endoscopy", "kind": "pairs", "commit": r.first,
			"images": "pairs/images/*.{png,jpg}", "skip": []string{"**/aug_*"},
			"masks": []any{map[string]any{"path": "{dir}/../masks/{stem}.png", "mode": "binary", "class": "polyp"}},
			"group": `^.*/(case\d+)_[^/]*$`,
		}, func(t *testing.T, ds *dataset.Dataset, taken string, res *Result) {
			if res.Taken != 2 || res.MissingMask != 1 || res.SmallDropped != 1 || res.Masks != 3 {
				t.Errorf("result %+v", res)
			}
			e := find(t, ds, "endo__case1_a")
			if e.Width != 256 || e.Height != 171 || len(e.Masks) != 2 {
				t.Errorf("case1: %dx%d, %d masks", e.Width, e.Height, len(e.Masks))
			}
			if e.Meta.OriginalSize != [2]int{300, 200} || e.Group != "endo:case1" || e.Meta.Dataset != "Test polyps" ||
				e.Meta.License != "CC0" || e.Meta.Source != "test/repo:pairs/images/case1_a.png@"+r.first || e.Modality != dataset.Endoscopy {
				t.Errorf("meta %+v", e.Meta)
			}
			// Read at the manifest's commit, though HEAD deleted it.
			e2 := find(t, ds, "endo__case2_b")
			if e2.Width != 120 || e2.Height != 100 {
				t.Errorf("case2 %dx%d: small images are not upscaled", e2.Width, e2.Height)
			}
			if !strings.Contains(taken, "pairs/images/case1_a.png\tcase1\tpairs/masks/case1_a.png\tendo__case1_a\n") {
				t.Errorf("taken.tsv:\n%s", taken)
			}
		}},
		{"pairs with orient", map[string]any{
			"id": "endor", "dataset": "Test polyps", "modality": "endoscopy", "kind": "pairs", "commit": r.first,
			"images": "pairs/images/*.{png,jpg}", "skip": []string{"**/aug_*"}, "orient": "rot90",
			"masks": []any{map[string]any{"path": "{dir}/../masks/{stem}.png", "mode": "binary", "class": "polyp"}},
			"group": `^.*/(case\d+)_[^/]*$`,
		}, func(t *testing.T, ds *dataset.Dataset, taken string, res *Result) {
			if res.Taken != 2 || res.Masks != 3 {
				t.Errorf("result %+v", res)
			}
			e := find(t, ds, "endor__case1_a")
			if e.Width != 171 || e.Height != 256 || e.Meta.OriginalSize != [2]int{300, 200} {
				t.Errorf("rot90 case1: %dx%d (original %v), want 171x256", e.Width, e.Height, e.Meta.OriginalSize)
			}
			for i := range e.Masks {
				g, err := e.LoadMask(i)
				if err != nil {
					t.Fatal(err)
				}
				if b := g.Bounds(); b.Dx() != 171 || b.Dy() != 256 {
					t.Errorf("mask %d is %dx%d, want the turned image's 171x256", i, b.Dx(), b.Dy())
				}
			}
		}},
		{"values, no split", map[string]any{
			"id": "xr", "dataset": "Test chest", "modality": "X-ray", "kind": "pairs", "commit": r.first,
			"images": "xr/img/*.png", "split_components": false,
			"masks": []any{map[string]any{"path": "xr/lab/{name}", "mode": "values", "values": map[string]string{"1": "left_lung", "2": "right_lung"}}},
		}, func(t *testing.T, ds *dataset.Dataset, taken string, res *Result) {
			e := find(t, ds, "xr__p1")
			if got := strings.Join(ds.Classes(), ","); got != "left_lung,right_lung" || len(e.Masks) != 2 {
				t.Errorf("classes %s, %d masks", got, len(e.Masks))
			}
			img, err := e.LoadImage()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := img.(*image.Gray); !ok {
				t.Errorf("X-ray image stored as %T, want grey", img)
			}
			if e.Group != "xr:p1" {
				t.Errorf("default group %q", e.Group)
			}
		}},
		{"colors", map[string]any{
			"id": "fun", "dataset": "Test fundus", "modality": "fundus", "kind": "pairs", "commit": r.first,
			"images": "fun/img/*.bmp",
			"masks":  []any{map[string]any{"path": "fun/gt/{stem}.png", "mode": "colors", "colors": map[string]string{"ff0000": "optic_cup", "00ff00": "optic_disc"}}},
		}, func(t *testing.T, ds *dataset.Dataset, taken string, res *Result) {
			e := find(t, ds, "fun__f1")
			if len(e.Masks) != 2 || res.Classes["optic_cup"] != 1 || res.Classes["optic_disc"] != 1 {
				t.Errorf("masks %d, classes %v", len(e.Masks), res.Classes)
			}
		}},
		{"HC18 excluded group", map[string]any{
			"id": "hc", "dataset": "HC18", "modality": "ultrasound", "kind": "pairs", "commit": r.first,
			"images": "src/Dataset/training/image/*_HC.png",
			"masks":  []any{map[string]any{"path": "{dir}/{stem}_Annotation.png", "mode": "binary", "class": "fetal_head"}},
		}, func(t *testing.T, ds *dataset.Dataset, taken string, res *Result) {
			if res.Excluded != 1 || res.Taken != 2 {
				t.Errorf("result %+v", res)
			}
			for _, e := range ds.Images {
				if strings.Contains(e.Name, "010") {
					t.Errorf("excluded image %s taken", e.Name)
				}
			}
		}},
		{"fill", map[string]any{
			"id": "ring", "dataset": "Test", "modality": "ultrasound", "kind": "pairs", "commit": r.first,
			"images": "ring/img/*.png",
			"masks":  []any{map[string]any{"path": "ring/gt/{name}", "mode": "binary", "class": "fetal_head", "fill": true}},
		}, func(t *testing.T, ds *dataset.Dataset, taken string, res *Result) {
			m, err := find(t, ds, "ring__r1").LoadMask(0)
			if err != nil {
				t.Fatal(err)
			}
			if m.GrayAt(20, 20).Y != 255 || m.GrayAt(2, 2).Y != 0 {
				t.Errorf("outline not filled")
			}
		}},
		{"space in path", map[string]any{
			"id": "sp", "dataset": "Test", "modality": "MR", "kind": "pairs", "commit": r.first,
			"images": "sp ace/im ?.png",
			"masks":  []any{map[string]any{"path": "{dir}/{stem}_mask.png", "mode": "binary", "class": "lesion"}},
		}, func(t *testing.T, ds *dataset.Dataset, taken string, res *Result) {
			find(t, ds, "sp__im_1")
		}},
		{"volumes", map[string]any{
			"id": "vol", "dataset": "Test CT", "modality": "CT", "kind": "volumes", "commit": r.first,
			"volume_glob": "vol/*/ct.nii.gz", "label_template": "{dir}/seg.nii.gz", "group": "^vol/([^/]+)/",
			"labels": map[string]string{"1": "liver"}, "window": "soft", "axes": []string{"axial", "coronal"},
		}, func(t *testing.T, ds *dataset.Dataset, taken string, res *Result) {
			if got := strings.Join(ds.Classes(), ","); got != "liver" {
				t.Errorf("classes %s (unnamed values must be ignored)", got)
			}
			axial := 0
			for _, e := range ds.Images {
				if e.Width > MaxSide || e.Height > MaxSide {
					t.Errorf("%s is %dx%d", e.Name, e.Width, e.Height)
				}
				if e.Group != "vol:case1" || e.Meta.Source != "test/repo:vol/case1/ct.nii.gz@"+r.first ||
					e.Meta.Dataset != "Test CT" || e.Meta.License != "CC0" || e.Meta.Extra["source_id"] != "vol" {
					t.Fatalf("meta %+v", e.Meta)
				}
				if e.Meta.Extra["axis"] == "axial" {
					axial++
					if e.Width != 256 {
						t.Errorf("axial slice %dx%d, want width 256", e.Width, e.Height)
					}
				}
			}
			if axial != 4 || !strings.HasPrefix(ds.Images[0].Name, "vol__ct_") {
				t.Errorf("%d axial slices; first %s", axial, ds.Images[0].Name)
			}
			if !strings.Contains(taken, "vol/case1/ct.nii.gz\tcase1\tvol/case1/seg.nii.gz\tvol__ct\n") {
				t.Errorf("taken.tsv:\n%s", taken)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := manifest(t, c.fields)
			var log bytes.Buffer
			res, err := Build(ctx, src, r.reposDir, excl, out, &log)
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			dir := filepath.Join(out, src.ID)
			ds, err := dataset.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds.Warnings) > 0 {
				t.Errorf("warnings %v", ds.Warnings)
			}
			taken, err := os.ReadFile(filepath.Join(dir, TakenFile))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir + ".tmp"); err == nil {
				t.Errorf("%s.tmp left behind", dir)
			}
			c.check(t, ds, string(taken), res)
		})
	}
}

func find(t *testing.T, ds *dataset.Dataset, name string) *dataset.ImageEntry {
	t.Helper()
	var names []string
	for _, e := range ds.Images {
		if e.Name == name {
			return e
		}
		names = append(names, e.Name)
	}
	t.Fatalf("no image %s in %v", name, names)
	return nil
}

func TestBuildForceAndHead(t *testing.T) {
	r := makeRepo(t)
	excl := loadExcl(t)
	out := t.TempDir()
	fields := map[string]any{
		"id": "endo", "dataset": "Test polyps", "modality": "endoscopy", "kind": "pairs", "commit": r.head,
		"images": "pairs/images/case*",
		"masks":  []any{map[string]any{"path": "pairs/masks/{stem}.png", "mode": "binary", "class": "polyp"}},
	}
	res, err := Build(context.Background(), manifest(t, fields), r.reposDir, excl, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Taken != 1 { // at HEAD case2 is gone
		t.Errorf("at HEAD: %d taken, want 1", res.Taken)
	}
	fields["commit"] = r.first
	var log bytes.Buffer
	res, err = Build(context.Background(), manifest(t, fields), r.reposDir, excl, out, &log)
	if err != nil || !res.AlreadyBuilt || !strings.Contains(log.String(), "already built") {
		t.Fatalf("second build: %v %+v %q", err, res, log.String())
	}
	res, err = Build(context.Background(), manifest(t, fields), r.reposDir, excl, out, &log, Force())
	if err != nil || res.AlreadyBuilt || res.Taken != 2 {
		t.Fatalf("forced build: %v %+v", err, res)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Errorf("output holds %d entries, want only endo/", len(entries))
	}
	// A commit that is not in the snapshot.
	fields["commit"] = strings.Repeat("ab", 20)
	if _, err := Build(context.Background(), manifest(t, fields), r.reposDir, excl, out, nil, Force()); err == nil || !strings.Contains(err.Error(), "not in the local snapshot") {
		t.Errorf("unknown commit: %v", err)
	}
	if _, err := Build(context.Background(), manifest(t, fields), r.reposDir, nil, out, nil, Force()); err == nil {
		t.Error("build without exclusions succeeded")
	}
}

func TestExcludedFile(t *testing.T) {
	r := makeRepo(t)
	var e map[string]any
	data, err := os.ReadFile(exclusionsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatal(err)
	}
	ps := e["patient_split"].(map[string]any)["datasets"].(map[string]any)
	ps["HC18 (fetal head circumference)"] = map[string]any{
		"hosting_repositories": []string{"test/repo@" + r.first},
		"excluded_groups":      []string{"999"},
		"excluded_files":       []string{"src/Dataset/training/image/011_HC.png"},
	}
	p := filepath.Join(t.TempDir(), "excl.json")
	data, _ = json.Marshal(e)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	excl, err := LoadExclusions(p)
	if err != nil {
		t.Fatal(err)
	}
	// The dataset is not named HC18: the hosting repository applies the rule.
	src := manifest(t, map[string]any{
		"id": "hc", "dataset": "Fetal heads", "modality": "ultrasound", "kind": "pairs", "commit": r.first,
		"images": "src/Dataset/training/image/*_HC.png",
		"masks":  []any{map[string]any{"path": "{dir}/{stem}_Annotation.png", "mode": "binary", "class": "fetal_head"}},
	})
	res, err := Build(context.Background(), src, r.reposDir, excl, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Taken != 2 || res.ExcludedBy["HC18 excluded file"] != 1 {
		t.Errorf("result %+v", res)
	}
}

func TestExcludedNames(t *testing.T) {
	excl := loadExcl(t)
	src := manifest(t, map[string]any{
		"id": "sts", "dataset": "Soft-tissue Sarcoma (TCIA STS)", "modality": "CT", "kind": "volumes", "commit": strings.Repeat("0", 40),
		"volumes": []any{map[string]any{"image": "x/STS_001/CT_image.nii.gz", "label": "x/STS_001/CT_mask.nii.gz"}}, "labels": map[string]string{"1": "tumor"},
	})
	rules := excl.splitRules(src)
	cands := map[string]int{"CT_image.nii.gz": 2}
	cases := []struct {
		path, group string
		want        string
	}{
		{"ibsi_validation/nifti/STS_001/CT_image.nii.gz", "STS_001", ""},
		{"ibsi_validation/nifti/STS_003/CT_image.nii.gz", "STS_001", "Soft-tissue Sarcoma excluded file"},
		{"mirror/ibsi_validation/nifti/STS_003/CT_image.nii.gz", "", "Soft-tissue Sarcoma excluded file"},
		{"other/STS_018/ct.nii.gz", "", "Soft-tissue Sarcoma excluded group"},
		{"other/p1/ct.nii.gz", "STS_023", "Soft-tissue Sarcoma excluded group"},
	}
	for _, c := range cases {
		if got := excluded(rules, cands, c.path, c.group); got.rule != c.want {
			t.Errorf("%s (group %s): %q, want %q", c.path, c.group, got.rule, c.want)
		}
	}
	// COVID file names are distinctive: a mirror's other folder still matches.
	covid := manifest(t, map[string]any{
		"id": "cov", "dataset": "COVID-19 Chest X-ray Segmentations", "modality": "X-ray", "kind": "pairs", "commit": strings.Repeat("0", 40),
		"images": "*.jpg", "masks": []any{map[string]any{"path": "{stem}.png", "mode": "binary", "class": "lung"}},
	})
	if got := excluded(excl.splitRules(covid), map[string]int{}, "pics/covid-19-pneumonia-2.jpg", "patient1"); got.rule == "" {
		t.Error("COVID excluded file name in another folder not excluded")
	}
	if got := excluded(excl.splitRules(covid), map[string]int{}, "pics/x.jpg", "patient101"); got.rule == "" {
		t.Error("COVID excluded patient not excluded")
	}
}

func TestRefusals(t *testing.T) {
	excl := loadExcl(t)
	base := map[string]any{
		"id": "x", "dataset": "Kvasir-SEG", "modality": "endoscopy", "kind": "pairs", "commit": strings.Repeat("0", 40),
		"images": "*.png", "masks": []any{map[string]any{"path": "{stem}.png", "mode": "binary", "class": "polyp"}},
	}
	cases := []struct {
		repo, dataset string
		refused       bool
	}{
		{"a/b", "Kvasir-SEG", false},
		{"a/b", "CVC-ClinicDB", false},
		{"a/b", "HC18", false},
		{"a/b", "PH2Dataset", false},
		{"a/b", "ISIC 2018 task 1", false},
		{"sarah-antillia/TensorFlow-FlexUNet-Image-Segmentation-BUSI-Breast-Cancer", "Breast ultrasound", true},
		{"Sarah-Antillia/TensorFlow-FlexUNet-Image-Segmentation-KiTS19-Kidney-Tumor", "kidney", true},
		{"thisismexp/artefact_insertion", "x", true},
		{"a/b", "BUSI", true},
		{"a/b", "busi (breast ultrasound)", true},
		{"a/b", "HAM10000", true},
		{"a/b", "ISIC 2018 Task 3", true},
		{"a/b", "Drishti-GS1", true},
		{"a/b", "ETIS-LaribPolypDB", true},
		{"a/b", "CVC-ColonDB", true},
		{"a/b", "CVC-300", true},
		{"a/b", "EndoScene", true},
		{"a/b", "KiTS19", true},
		{"a/b", "KiTS21", true},
		{"a/b", "CURVAS", true},
		{"a/b", "CURVAS 2024", true},
		{"a/b", "ACDC", true},
		{"a/b", "Prostate158", true},
		{"a/b", "BraTS 2021", true},
		{"a/b", "BraTS2023-GLI", true},
		{"a/b", "Brain tumours (BraTS subset)", true},
	}
	for _, c := range cases {
		f := map[string]any{}
		for k, v := range base {
			f[k] = v
		}
		f["repo"], f["dataset"] = c.repo, c.dataset
		err := excl.Check(manifest(t, f))
		if (err != nil) != c.refused {
			t.Errorf("repo %s dataset %q: error %v, want refused=%v", c.repo, c.dataset, err, c.refused)
		}
		if err != nil {
			if _, berr := Build(context.Background(), manifest(t, f), t.TempDir(), excl, t.TempDir(), nil); berr == nil || !strings.Contains(berr.Error(), "refused") {
				t.Errorf("Build of a refused source: %v", berr)
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	good := `{"schema": 1, "id": "s1", "dataset": "D", "modality": "CT", "repo": "o/n", "commit": "` + strings.Repeat("a", 40) + `",
 "license": "CC0", "kind": "pairs", "images": "*.png", "image_regex": "^(.*)\\.png$",
 "masks": [{"path": "m/{1}.png", "mode": "values", "values": {"1": "liver"}}]}`
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
	cases := []struct{ name, from, to, want string }{
		{"unknown field", `"kind"`, `"knd": 1, "kind"`, `unknown field "knd"`},
		{"unknown nested field", `"mode"`, `"mdoe": 1, "mode"`, `unknown field "mdoe"`},
		{"bad id", `"s1"`, `"S-1"`, `"id"`},
		{"unknown modality", `"CT"`, `"MEG"`, "unknown \"modality\""},
		{"bad commit", `"commit": "a`, `"commit": "g`, `"commit"`},
		{"bad mode", `"values", "values"`, `"labels", "values"`, `"mode" "labels"`},
		{"bad regex", `^(.*)\\.png$`, `^(.*\\.png$`, "does not compile"},
		{"missing class", `"mode": "values", "values": {"1": "liver"}`, `"mode": "binary"`, "\"class\" is missing"},
		{"non-integer value", `{"1": "liver"}`, `{"one": "liver"}`, `key "one" is not an integer`},
		{"class not snake", `"liver"`, `"Liver Left"`, "snake_case"},
		{"template group", `m/{1}.png`, `m/{2}.png`, "image_regex has 1 groups"},
		{"bad placeholder", `m/{1}.png`, `m/{base}.png`, "unknown placeholder"},
		{"volumes field in pairs", `"kind"`, `"window": "soft", "kind"`, "\"window\" is a field of kind"},
		{"bad kind", `"pairs"`, `"pictures"`, "\"kind\""},
		{"bad schema", `"schema": 1`, `"schema": 2`, "\"schema\""},
		{"comment", `{"schema"`, "{// c\n\"schema\"", "comments are not allowed"},
		{"wrong type", `"schema": 1`, `"schema": "1"`, `field "schema"`},
		{"group groups", `"kind"`, `"group": "a(b)(c)", "kind"`, "exactly one capture group"},
		{"bad orient", `"kind"`, `"orient": "rot45", "kind"`, `"orient" "rot45"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(good, c.from) {
				t.Fatalf("%q not in the manifest", c.from)
			}
			_, err := Parse([]byte(strings.Replace(good, c.from, c.to, 1)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	// Load: file errors name the file; duplicate ids; file name must match.
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("s1.source.json", good)
	write("notes.txt", "ignored")
	if srcs, err := Load(dir); err != nil || len(srcs) != 1 {
		t.Fatalf("load: %v %d", err, len(srcs))
	}
	write("s2.source.json", good)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "s2.source.json") {
		t.Errorf("misnamed file: %v", err)
	}
	os.Remove(filepath.Join(dir, "s2.source.json"))
	write("bad.source.json", strings.Replace(good, `"kind"`, `"extra": 1, "kind"`, 1))
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "bad.source.json") || !strings.Contains(err.Error(), `"extra"`) {
		t.Errorf("unknown field: %v", err)
	}
	os.Remove(filepath.Join(dir, "bad.source.json"))
	write("s3.source.json", strings.Replace(good, `"s1"`, `"s3"`, 1))
	srcs, err := Load(dir)
	if err != nil || len(srcs) != 2 || srcs[0].ID != "s1" || srcs[1].ID != "s3" {
		t.Fatalf("load: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing folder loaded")
	}
}

func TestDuplicateID(t *testing.T) {
	good := `{"schema": 1, "id": "dup", "dataset": "D", "modality": "CT", "repo": "o/n", "commit": "` + strings.Repeat("a", 40) + `",
 "license": "CC0", "kind": "pairs", "images": "*.png", "masks": [{"path": "{stem}_m.png", "mode": "binary", "class": "liver"}]}`
	srcs := []*Source{}
	for range 2 {
		s, err := Parse([]byte(good))
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, s)
	}
	if err := checkUnique(srcs); err == nil || !strings.Contains(err.Error(), "duplicate id") {
		t.Errorf("duplicate ids: %v", err)
	}
}

func TestImageNames(t *testing.T) {
	got := imageNames("s", []string{"a/x/CT_image.nii.gz", "a/y/CT_image.nii.gz", "b/z.png", "c/z.png", "q.png", "d/q.png"})
	want := map[string]string{
		"a/x/CT_image.nii.gz": "s__x_CT_image", "a/y/CT_image.nii.gz": "s__y_CT_image",
		"b/z.png": "s__b_z", "c/z.png": "s__c_z", "q.png": "s__q", "d/q.png": "s__d_q",
	}
	for p, n := range want {
		if got[p] != n {
			t.Errorf("%s: %s, want %s", p, got[p], n)
		}
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		glob, path string
		want       bool
	}{
		{"a/*.png", "a/x.png", true},
		{"a/*.png", "a/b/x.png", false},
		{"a/**/x.png", "a/x.png", true},
		{"a/**/x.png", "a/b/c/x.png", true},
		{"**/aug_*", "a/b/aug_1.png", true},
		{"**/aug_*", "aug_1.png", true},
		{"a/*.{png,jpg}", "a/x.jpg", true},
		{"a/?.png", "a/xy.png", false},
		{"a/[0-9]*.png", "a/1x.png", true},
		{"a/[!0-9]*.png", "a/1x.png", false},
		{"a.b/*", "axb/c", false},
	}
	for _, c := range cases {
		re, err := GlobRegexp(c.glob)
		if err != nil {
			t.Fatal(err)
		}
		if got := re.MatchString(c.path); got != c.want {
			t.Errorf("glob %q on %q: %v", c.glob, c.path, got)
		}
	}
	if got := expand("{dir}/../masks/{stem}_m.png", "d/images/x.tar.png", nil); got != "d/masks/x.tar_m.png" {
		t.Errorf("expand: %s", got)
	}
	if got := expand("{dir}/seg.nii.gz", "ct.nii.gz", nil); got != "seg.nii.gz" {
		t.Errorf("expand at root: %s", got)
	}
}

// TestCommittedManifests loads the committed manifests of this folder and
// checks each against the exclusion rules; it needs no repository.
func TestCommittedManifests(t *testing.T) {
	srcs, err := Load(".")
	if err != nil {
		t.Fatal(err)
	}
	excl := loadExcl(t)
	for _, s := range srcs {
		if err := excl.Check(s); err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d committed sources", len(srcs))
}
