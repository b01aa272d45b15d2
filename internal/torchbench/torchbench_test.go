package torchbench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakePython writes an executable standing in for python3: it checks that
// it was given the script and the options, then prints body.
func fakePython(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "python")
	sh := "#!/bin/sh\n" +
		"case \"$1\" in *torchbench.py) ;; *) echo \"no script: $1\" >&2; exit 3;; esac\n" +
		"grep -q 'def main' \"$1\" || { echo 'empty script' >&2; exit 3; }\n" +
		"case \"$*\" in *'--arch sammed2d_vit_b'*'--threads 2'*) ;; *) echo \"bad args: $*\" >&2; exit 3;; esac\n" +
		body + "\n"
	if err := os.WriteFile(p, []byte(sh), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func codeDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "segment_anything"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRun(t *testing.T) {
	opts := func(python, code string) Options {
		return Options{Python: python, Code: code, Arch: "sammed2d_vit_b", Runs: 1, Prompts: 2, Threads: 2}
	}
	good := `echo 'some log line'; echo '{"torch":"1.13.0a0","threads":2,"build_s":2.5,"encoder_first_s":4,"encoder_median_s":3.5,"decoder_s":0.012,"decoder16_s":0.1}'`
	r, err := Run(context.Background(), opts(fakePython(t, good), codeDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Torch != "1.13.0a0" || r.Threads != 2 || r.EncoderMedian != 3.5 || r.Decoder != 0.012 || r.Decoder16 != 0.1 {
		t.Errorf("parsed %+v", r)
	}
	for _, tt := range []struct {
		name, python, code, want string
	}{
		{"no package", fakePython(t, good), t.TempDir(), "no segment_anything package"},
		{"no torch", fakePython(t, `echo "ModuleNotFoundError: No module named 'torch'" >&2; exit 1`), codeDir(t), "No module named 'torch'"},
		{"not JSON", fakePython(t, `echo 'done'`), codeDir(t), "unreadable result"},
		{"no interpreter", filepath.Join(t.TempDir(), "python9"), codeDir(t), "python9"},
	} {
		_, err := Run(context.Background(), opts(tt.python, tt.code))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}
