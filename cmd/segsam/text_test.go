package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/segsam/segsam/knowledge"
	"github.com/segsam/segsam/textembed"
)

const textTestdata = "../../testdata/textembed"

// runText runs 'segsam text ...' and returns the exit code, stdout and
// stderr.
func runTextCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	oldOut, oldErr := textStdout, stderr
	textStdout, stderr = &out, &errb
	defer func() { textStdout, stderr = oldOut, oldErr }()
	code := run(append([]string{"text"}, args...))
	return code, out.String(), errb.String()
}

func TestTextList(t *testing.T) {
	code, out, _ := runTextCLI(t, "list")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(knowledge.Classes())+1 {
		t.Errorf("%d lines for %d classes", len(lines), len(knowledge.Classes()))
	}
	if !strings.HasPrefix(lines[0], "liver ") || !strings.Contains(out, fmt.Sprintf("# %d classes, class knowledge version %s", len(knowledge.Classes()), knowledge.Version())) {
		t.Errorf("output starts %q, ends %q", lines[0], lines[len(lines)-1])
	}
	code, out, _ = runTextCLI(t, "list", "--category", "instrument", "--aliases")
	if code != 0 || !strings.Contains(out, "surgical_instrument") || strings.Contains(out, "liver") || !strings.Contains(out, "surgical_tool") {
		t.Errorf("filtered list (exit %d):\n%s", code, out)
	}
}

func TestTextShow(t *testing.T) {
	code, out, _ := runTextCLI(t, "show", "Hepatic")
	liver, _ := knowledge.Lookup("liver")
	if code != 0 || !strings.HasPrefix(out, "liver (Liver)\n") || !strings.Contains(out, liver.Description()) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	code, _, errOut := runTextCLI(t, "show", "unicorn")
	if code != 1 || !strings.Contains(errOut, `unknown class "unicorn"`) {
		t.Errorf("unknown class: exit %d, %q", code, errOut)
	}
}

func TestTextUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "missing subcommand"},
		{[]string{"frobnicate"}, `unknown subcommand "frobnicate"`},
		{[]string{"show"}, "exactly one class name"},
		{[]string{"show", "a", "b"}, "exactly one class name"},
		{[]string{"list", "--category", "planet"}, `unknown category "planet"`},
		{[]string{"embed", "--classes", "liver"}, "--out FILE.npy is required"},
		{[]string{"embed", "--classes", "liver", "--out", "x.bin"}, "must end in .npy"},
		{[]string{"embed", "--out", "x.npy"}, "exactly one of --classes and --data"},
		{[]string{"embed", "--classes", "liver", "--data", "d", "--out", "x.npy"}, "exactly one of --classes and --data"},
		{[]string{"embed", "--classes", " , ", "--out", "x.npy"}, "names no class"},
		{[]string{"embed", "--provider", "bert", "--classes", "liver", "--out", "x.npy"}, `unknown --provider "bert"`},
		{[]string{"embed", "--base-url", "http://x", "--classes", "liver", "--out", "x.npy"}, "--base-url applies to --provider openai, not hashed"},
		{[]string{"embed", "--provider", "openai", "--dim", "64", "--classes", "liver", "--out", "x.npy"}, "--dim applies to --provider hashed"},
		{[]string{"embed", "--provider", "file", "--classes", "liver", "--out", "x.npy"}, "needs --file"},
		{[]string{"embed", "--dim", "3", "--classes", "liver", "--out", "x.npy"}, "--dim"},
		{[]string{"embed", "--provider", "openai", "--batch", "0", "--classes", "liver", "--out", "x.npy"}, "--batch"},
		{[]string{"embed", "--bogus"}, "flag provided but not defined"},
	}
	for _, tc := range tests {
		code, _, errOut := runTextCLI(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("text %q: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestTextEmbedDemoData embeds the demo data's 48 classes offline, as
// 'segsam text embed --data DIR' does on the demo data, and checks the
// written file with textembed.Load.
func TestTextEmbedDemoData(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo2d_text.npy")
	code, stdout, errOut := runTextCLI(t, "embed", "--data", filepath.Join(textTestdata, "demo2d_classes.json"), "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	set, err := textembed.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Classes) != 48 || set.Dim() != textembed.DefaultHashedDim || set.Provider != "hashed" || set.KnowledgeVersion != knowledge.Version() {
		t.Fatalf("set: %d classes x %d, %s, knowledge %q", len(set.Classes), set.Dim(), set.Provider, set.KnowledgeVersion)
	}
	if !strings.Contains(stdout, "fingerprint "+set.Fingerprint()) || !strings.Contains(stdout, "wrote 48 classes x 512") {
		t.Errorf("stdout %q", stdout)
	}
	if !strings.Contains(errOut, "48/48") {
		t.Errorf("no progress on stderr: %q", errOut)
	}
	// The file provider reproduces it exactly.
	again := filepath.Join(t.TempDir(), "again.npy")
	if code, _, errOut := runTextCLI(t, "embed", "--provider", "file", "--file", out,
		"--data", filepath.Join(textTestdata, "demo2d_classes.json"), "--out", again); code != 0 {
		t.Fatalf("file provider: exit %d: %s", code, errOut)
	}
	set2, err := textembed.Load(again)
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Compare(set2); err != nil {
		t.Fatal(err)
	}
}

func TestTextEmbedUnknownClass(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.npy")
	code, _, errOut := runTextCLI(t, "embed", "--classes", "liver,unicorn_horn", "--out", out)
	if code != 1 || !strings.Contains(errOut, `unknown class(es) "unicorn_horn"`) {
		t.Fatalf("exit %d, %q", code, errOut)
	}
}

func TestTextEmbedOpenAI(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.Path != "/v1/embeddings" || r.Header.Get("Authorization") != "Bearer k-123" {
			http.Error(w, `{"error":{"message":"bad path or key"}}`, http.StatusUnauthorized)
			return
		}
		var req struct {
			Model string   `json:"model"`
			Input []string `json:"input"`
		}
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &req)
		var items []string
		for i, text := range req.Input {
			items = append(items, fmt.Sprintf(`{"index": %d, "embedding": [%d, 0.5, -1]}`, i, len(text)))
		}
		fmt.Fprintf(w, `{"object": "list", "data": [%s]}`, strings.Join(items, ","))
	}))
	defer srv.Close()
	t.Setenv("SEGSAM_TEXT_TEST_KEY", "k-123")
	dir := t.TempDir()
	args := []string{"embed", "--provider", "openai", "--base-url", srv.URL + "/v1", "--model", "local-embed",
		"--api-key-env", "SEGSAM_TEXT_TEST_KEY", "--batch", "2", "--cache", filepath.Join(dir, "cache"),
		"--classes", "liver,spleen,aorta", "--out", filepath.Join(dir, "e.npy")}
	code, stdout, errOut := runTextCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if requests.Load() != 2 || !strings.Contains(stdout, "requests 2 (retries 0), cache hits 0, misses 3") {
		t.Errorf("%d requests; stdout %q", requests.Load(), stdout)
	}
	set, err := textembed.Load(filepath.Join(dir, "e.npy"))
	if err != nil {
		t.Fatal(err)
	}
	liver, _ := knowledge.Lookup("liver")
	if set.Provider != "openai" || set.Model != "local-embed" || set.Dim() != 3 || set.Vectors[0][0] != float32(len(liver.Description())) {
		t.Errorf("set %s %s %d %v", set.Provider, set.Model, set.Dim(), set.Vectors[0])
	}
	// Second run: everything from the cache.
	code, stdout, _ = runTextCLI(t, args...)
	if code != 0 || requests.Load() != 2 || !strings.Contains(stdout, "cache hits 3, misses 0") {
		t.Errorf("cached run: exit %d, %d requests, %q", code, requests.Load(), stdout)
	}
	// A wrong key: HTTP 401 is reported and not retried.
	t.Setenv("SEGSAM_TEXT_TEST_KEY", "wrong")
	args[len(args)-3] = "kidney" // not cached
	code, _, errOut = runTextCLI(t, args...)
	if code != 1 || !strings.Contains(errOut, "HTTP 401") || !strings.Contains(errOut, "$SEGSAM_TEXT_TEST_KEY") || requests.Load() != 3 {
		t.Errorf("wrong key: exit %d, %d requests, %q", code, requests.Load(), errOut)
	}
}
