package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/dataset"
)

const dataExclusions = "../../testdata/training_exclusions.json"

func TestDataList(t *testing.T) {
	var out, log bytes.Buffer
	if err := dataMain([]string{"list", "--sources", "../../dataset/sources"}, &out, &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "REPO@COMMIT") || !strings.Contains(out.String(), "sources in") {
		t.Errorf("list output:\n%s", out.String())
	}
}

// dataRepo makes reposDir/o+r/repo/.git holding two image/mask pairs and
// returns reposDir and the commit.
func dataRepo(t *testing.T) (string, string) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	repos := t.TempDir()
	work := filepath.Join(repos, "o+r", "repo")
	for _, n := range []string{"a", "b"} {
		img := image.NewGray(image.Rect(0, 0, 30, 20))
		m := image.NewGray(image.Rect(0, 0, 30, 20))
		for y := 4; y < 16; y++ {
			for x := 5; x < 25; x++ {
				img.SetGray(x, y, color.Gray{200})
				m.SetGray(x, y, color.Gray{255})
			}
		}
		for p, g := range map[string]*image.Gray{"img/" + n + ".png": img, "mask/" + n + ".png": m} {
			full := filepath.Join(work, p)
			os.MkdirAll(filepath.Dir(full), 0o755)
			var buf bytes.Buffer
			png.Encode(&buf, g)
			if err := os.WriteFile(full, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = work
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "data")
	return repos, git("rev-parse", "HEAD")
}

func writeManifest(t *testing.T, dir, id, dataset, repo, commit string) {
	body := `{"schema": 1, "id": "` + id + `", "dataset": "` + dataset + `", "modality": "MR", "repo": "` + repo + `",
 "commit": "` + commit + `", "license": "CC0", "role": "train", "kind": "pairs", "images": "img/*.png",
 "masks": [{"path": "mask/{name}", "mode": "binary", "class": "liver"}]}`
	if err := os.WriteFile(filepath.Join(dir, id+".source.json"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDataBuild(t *testing.T) {
	repos, commit := dataRepo(t)
	srcDir := t.TempDir()
	writeManifest(t, srcDir, "one", "Test", "o/r", commit)
	writeManifest(t, srcDir, "two", "Test two", "o/r", commit)
	out := filepath.Join(t.TempDir(), "built")
	args := []string{"build", "--sources", srcDir, "--repos", repos, "--out", out, "--exclusions", dataExclusions}
	var stdout, log bytes.Buffer
	if err := dataMain(append(args, "--only", "one"), &stdout, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "one: 2 images taken") || !strings.Contains(stdout.String(), "MODALITY") {
		t.Errorf("log:\n%s\nstdout:\n%s", log.String(), stdout.String())
	}
	ds, err := dataset.Open(filepath.Join(out, "one"))
	if err != nil || len(ds.Images) != 2 {
		t.Fatalf("open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "two")); err == nil {
		t.Error("--only built two")
	}
	log.Reset()
	if err := dataMain(args, &stdout, &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "one: already built") || !strings.Contains(log.String(), "two: 2 images taken") {
		t.Errorf("log:\n%s", log.String())
	}
	if err := dataMain(append(args, "--force", "--only", "one"), &stdout, &log); err != nil {
		t.Fatal(err)
	}

	// A reserved dataset is refused before anything is built.
	writeManifest(t, srcDir, "busi", "BUSI", "o/r", commit)
	if code := run(append([]string{"data"}, append(args, "--force")...)); code != 1 {
		t.Errorf("reserved dataset: exit code %d, want 1", code)
	}

	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"data"}, 2},
		{[]string{"data", "frobnicate"}, 2},
		{[]string{"data", "build", "--sources", srcDir, "--repos", repos}, 2},
		{[]string{"data", "build", "--sources", srcDir, "--repos", filepath.Join(repos, "nope"), "--out", out, "--exclusions", dataExclusions}, 2},
		{[]string{"data", "build", "--sources", srcDir, "--repos", repos, "--out", out}, 2}, // no exclusions next to a temp folder
		{[]string{"data", "build", "--sources", srcDir, "--repos", repos, "--out", out, "--exclusions", dataExclusions, "--only", "zzz"}, 2},
		{[]string{"data", "build", "--sources", filepath.Join(srcDir, "nope"), "--repos", repos, "--out", out, "--exclusions", dataExclusions}, 1},
		{[]string{"data", "list", "--sources", filepath.Join(srcDir, "nope")}, 1},
		{[]string{"data", "list", "extra"}, 2},
	} {
		if code := run(c.args); code != c.code {
			t.Errorf("segsam %v: exit code %d, want %d", c.args, code, c.code)
		}
	}
}
