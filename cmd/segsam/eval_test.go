package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/eval"
)

const evalSubset = "../../testdata/dataset/demo_subset"

// runEvalCLI runs "segsam eval args..." and returns the exit code, the
// printed tables and the error output.
func runEvalCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("SEGSAM_CACHE", t.TempDir()) // keep embeddings out of the user's cache
	var out, errOut bytes.Buffer
	oldOut, oldErr := evalStdout, stderr
	evalStdout, stderr = &out, &errOut
	defer func() { evalStdout, stderr = oldOut, oldErr }()
	code := run(append([]string{"eval"}, args...))
	return code, out.String(), errOut.String()
}

func readResults(t *testing.T, dir string) eval.Results {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, eval.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	var r eval.Results
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEvalBaselines(t *testing.T) {
	out := t.TempDir()
	code, tables, errs := runEvalCLI(t, "--data", evalSubset, "--prompt", "both", "--seed", "5", "--gallery", "2", "--no-model", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"| baseline-box | Box |", "| baseline-ellipse | Point |", "34 objects"} {
		if !strings.Contains(tables, want) {
			t.Errorf("printed tables lack %q:\n%s", want, tables)
		}
	}
	if !strings.Contains(errs, "18/18") {
		t.Errorf("no progress bar on stderr: %q", errs)
	}
	for _, f := range []string{eval.SummaryMDFile, eval.SummaryCSVFile, eval.PromptsFile, "charts/CT.png", "gallery/baseline-box_point/02_"} {
		matches, _ := filepath.Glob(filepath.Join(out, f+"*"))
		if len(matches) == 0 {
			t.Errorf("missing %s", f)
		}
	}
	first := readResults(t, out)
	if len(first.Results) != 34*2*2 || len(first.Methods) != 2 {
		t.Fatalf("%d results, %d methods", len(first.Results), len(first.Methods))
	}

	// Replaying the prompts with another seed gives the same results.
	replayed := t.TempDir()
	code, _, errs = runEvalCLI(t, "--data", evalSubset, "--prompts", filepath.Join(out, eval.PromptsFile), "--seed", "6", "--baseline", "ellipse", "--no-model", "--quiet", "--out", replayed)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s", code, errs)
	}
	if errs != "" {
		t.Errorf("--quiet printed %q", errs)
	}
	again := readResults(t, replayed)
	want := map[string]float64{}
	for _, r := range first.Results {
		if r.Method == "baseline-ellipse" {
			want[r.Mask+"/"+r.Prompt] = r.DSC
		}
	}
	if len(again.Results) != len(want) {
		t.Fatalf("replay: %d results, want %d", len(again.Results), len(want))
	}
	for _, r := range again.Results {
		if d, ok := want[r.Mask+"/"+r.Prompt]; !ok || d != r.DSC {
			t.Errorf("replay %s %s: DSC %v, first run %v", r.Mask, r.Prompt, r.DSC, d)
		}
	}

	// The val split holds whole groups only.
	val := t.TempDir()
	if code, _, errs := runEvalCLI(t, "--data", evalSubset, "--prompt", "box", "--split", "val", "--val-fraction", "0.5", "--quiet", "--out", val); code != 0 {
		t.Fatalf("val split: exit %d: %s", code, errs)
	}
	if r := readResults(t, val); r.Images == 0 || r.Images >= 18 {
		t.Errorf("val split evaluated %d of 18 images", r.Images)
	}
}

func TestEvalErrors(t *testing.T) {
	out := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"no data", []string{"--prompt", "box", "--out", out}, 2, "--data and --out are required"},
		{"no prompt", []string{"--data", evalSubset, "--out", out}, 2, "--prompt"},
		{"bad prompt", []string{"--data", evalSubset, "--prompt", "lasso", "--out", out}, 2, "want box, point or both"},
		{"bad baseline", []string{"--data", evalSubset, "--prompt", "box", "--baseline", "star", "--out", out}, 2, "--baseline"},
		{"nothing to evaluate", []string{"--data", evalSubset, "--prompt", "box", "--no-baselines", "--no-model", "--out", out}, 2, "nothing to evaluate"},
		{"no model and a checkpoint", []string{"--data", evalSubset, "--prompt", "box", "--no-model", "--checkpoint", "x.pth", "--out", out}, 2, "exclude each other"},
		{"missing checkpoint", []string{"--data", evalSubset, "--prompt", "box", "--checkpoint", "x.pth", "--out", out}, 1, "x.pth"},
		{"bad split", []string{"--data", evalSubset, "--prompt", "box", "--split", "test", "--out", out}, 2, "--split"},
		{"bad fraction", []string{"--data", evalSubset, "--prompt", "box", "--val-fraction", "2", "--out", out}, 2, "--val-fraction"},
		{"arch alone", []string{"--data", evalSubset, "--prompt", "box", "--arch", "vit_b", "--out", out}, 2, "give --checkpoint too"},
		{"missing data", []string{"--data", "nope", "--prompt", "box", "--out", out}, 1, "nope"},
		{"stray argument", []string{"--data", evalSubset, "--prompt", "box", "--out", out, "extra"}, 2, "unexpected argument"},
	}
	for _, tt := range tests {
		code, _, errs := runEvalCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.wantErr) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tt.name, code, errs, tt.code, tt.wantErr)
		}
	}
}

// TestEvalModel evaluates the built-in SEG-SAM model end to end (binary and
// semantic metrics) and checks that the summary's DSC and mDSC are the means
// of the per-object results.
func TestEvalModel(t *testing.T) {
	out := t.TempDir()
	code, tables, errs := runEvalCLI(t, "--data", evalSubset, "--prompt", "box", "--baseline", "none", "--quiet", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	res := readResults(t, out)
	if len(res.Results) != 34 || len(res.Methods) != 1 {
		t.Fatalf("%d results, %d methods", len(res.Results), len(res.Methods))
	}
	// Recompute DSC per modality and its average from the per-object results.
	sums := map[string][2]float64{}
	classes := 0
	for _, r := range res.Results {
		v := sums[r.Modality]
		v[0] += r.DSC
		v[1]++
		sums[r.Modality] = v
		if r.PredClass != "" {
			classes++
		}
	}
	if classes != len(res.Results) {
		t.Errorf("%d of %d objects have a predicted class", classes, len(res.Results))
	}
	avg := 0.0
	for _, v := range sums {
		avg += v[0] / v[1]
	}
	avg /= float64(len(sums))
	if want := fmt.Sprintf("%.2f", 100*avg); !strings.Contains(tables, want) {
		t.Errorf("table lacks the average DSC %s recomputed from results.json:\n%s", want, tables)
	}
	if !strings.Contains(tables, "mDSC") {
		t.Errorf("no semantic (mDSC) table for a model with classes:\n%s", tables)
	}
}

// TestEvalAuto runs eval --auto (no --prompt) with the built-in model: one
// automatic row per object, and the errors of --auto without a model.
func TestEvalAuto(t *testing.T) {
	out := t.TempDir()
	code, tables, errs := runEvalCLI(t, "--data", evalSubset, "--auto", "--points-per-side", "2", "--stability-thresh", "0", "--baseline", "none", "--gallery", "0", "--quiet", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(tables, "| segsam_small | Auto (no prompt) |") {
		t.Errorf("no automatic row:\n%s", tables)
	}
	res := readResults(t, out)
	if !res.Auto || len(res.Results) != 34 {
		t.Fatalf("auto %v, %d results", res.Auto, len(res.Results))
	}
	for _, r := range res.Results {
		if r.Prompt != eval.KindAuto || r.SemanticDSC == nil || r.DSC < 0 || r.DSC > 1 || (r.PredClass != r.Class && *r.SemanticDSC != 0) {
			t.Errorf("result %+v", r)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--auto", "--no-model", "--baseline", "box"}, "--auto needs a model"},
		{[]string{"--auto", "--classes", "unicorn"}, "unknown class unicorn"},
		{[]string{}, "--prompt box|point|both is required"},
	} {
		code, _, errs := runEvalCLI(t, append([]string{"--data", evalSubset, "--out", t.TempDir()}, c.args...)...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, %q; want 2 with %q", c.args, code, errs, c.want)
		}
	}
}
