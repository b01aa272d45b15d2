package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveCLI runs segsam with args, capturing its error output.
func serveCLI(args ...string) (int, string) {
	var buf syncBuffer
	old := stderr
	stderr = &buf
	defer func() { stderr = old }()
	code := run(args)
	return code, buf.String()
}

func TestServeUsageErrors(t *testing.T) {
	ckpt := "../../testdata/fixtures/sam_tiny/sam_tiny.pth"
	for _, c := range []struct {
		name string
		args []string
		msg  string
	}{
		{"arch without checkpoint", []string{"serve", "--arch", "vit_b"}, "give --checkpoint too"},
		{"unknown flag", []string{"serve", "--checkpoint", ckpt, "--port", "80"}, "flag provided but not defined"},
		{"bad address", []string{"serve", "--checkpoint", ckpt, "--addr", "localhost"}, "--addr"},
		{"zero cache", []string{"serve", "--checkpoint", ckpt, "--cache-mb", "0"}, "--cache-mb must be positive"},
		{"stray argument", []string{"serve", "--checkpoint", ckpt, "extra"}, "unexpected argument"},
		{"studies is a file", []string{"serve", "--checkpoint", ckpt, "--studies", ckpt}, "is a file"},
		{"zero session expiry", []string{"serve", "--checkpoint", ckpt, "--session-expiry", "0s"}, "--session-expiry must be positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out := serveCLI(c.args...)
			if code != 2 || !strings.Contains(out, c.msg) {
				t.Errorf("exit %d, output %q; want 2 and %q", code, out, c.msg)
			}
		})
	}
	if code, out := serveCLI("serve", "--checkpoint", "no/such/file.pth"); code != 1 || !strings.Contains(out, "no/such/file.pth") {
		t.Errorf("missing checkpoint: exit %d, output %q", code, out)
	}
}

// TestServeRunsAndStopsOnSIGTERM starts `segsam serve` on a free port with
// the tiny SAM fixture, uses the API and the page, then sends SIGTERM: the
// command stops gracefully with exit code 0.
func TestServeRunsAndStopsOnSIGTERM(t *testing.T) {
	addrc := make(chan string, 1)
	serveReady = func(addr string) { addrc <- addr }
	defer func() { serveReady = nil }()
	type result struct {
		code int
		out  string
	}
	done := make(chan result, 1)
	studies := t.TempDir()
	go func() {
		code, out := serveCLI("serve", "--checkpoint", fixtures+"/sam_tiny/sam_tiny.pth", "--config", fixtures+"/sam_tiny/config.json", "--addr", "127.0.0.1:0", "--studies", studies)
		done <- result{code, out}
	}()
	var base string
	select {
	case addr := <-addrc:
		base = "http://" + addr
	case r := <-done:
		t.Fatalf("serve exited early: %d %s", r.code, r.out)
	case <-time.After(time.Minute):
		t.Fatal("serve did not start")
	}
	get := func(path string) (int, string) {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("healthz: %d %s", code, body)
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, "<canvas") {
		t.Errorf("page: %d", code)
	}
	// MONAI Label's API on the studies folder (--studies).
	if code, body := get("/info/"); code != 200 || !strings.Contains(body, `"deepgrow"`) {
		t.Errorf("MONAI Label info: %d %s", code, body)
	}
	if code, body := get("/datastore/"); code != 200 || !strings.Contains(body, `"total":0`) {
		t.Errorf("MONAI Label datastore: %d %s", code, body)
	}
	if _, err := os.Stat(studies + "/labels/final"); err != nil {
		t.Errorf("studies folder layout: %v", err)
	}
	img, err := os.ReadFile("../../testdata/dataset/demo_subset/images/amos_0004_75.png")
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Post(base+"/v1/images", "image/png", bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 201 || !strings.Contains(string(b), `"width":256`) {
		t.Errorf("upload: %d %s", res.StatusCode, b)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.code != 0 || !strings.Contains(r.out, "listening on http://") || !strings.Contains(r.out, "stopped") {
			t.Errorf("serve: exit %d, output %q", r.code, r.out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}
