package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
)

// Test inputs, all in the repository's testdata (see their SOURCES.md).
const (
	samConfig  = "../testdata/fixtures/sam_tiny/config.json"
	samCkpt    = "../testdata/fixtures/sam_tiny/sam_tiny.pth"
	demoImage  = "../testdata/dataset/demo_subset/images/amos_0004_75.png" // 256x256 CT slice
	demoVolume = "../testdata/medimg/nifti/ct_crop.nii.gz"                 // 50x45x30 CT crop
)

var testClasses = []string{"liver", "kidney", "spleen"}

var (
	modelsOnce sync.Once
	segModel   *segsam.Predictor
	samModel   *segsam.Predictor
	modelsErr  error
	modelsDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if modelsDir != "" {
		os.RemoveAll(modelsDir)
	}
	os.Exit(code)
}

// loadModels builds a tiny random SEG-SAM checkpoint (so_co on the tiny SAM
// fixture, three classes), saves and reloads it through segsam.LoadAny as
// `segsam serve` does, and loads the plain tiny SAM fixture.
func loadModels(t testing.TB) {
	t.Helper()
	modelsOnce.Do(func() {
		base, err := sam.LoadConfig(samConfig)
		if err != nil {
			modelsErr = err
			return
		}
		cfg, err := segsam.NewConfig(base, "so_co", testClasses, 0)
		if err != nil {
			modelsErr = err
			return
		}
		m, err := segsam.New(cfg, nil)
		if err != nil {
			modelsErr = err
			return
		}
		if err := m.Seed(1); err != nil {
			modelsErr = err
			return
		}
		if err := m.Materialize(); err != nil {
			modelsErr = err
			return
		}
		if modelsDir, err = os.MkdirTemp("", "segsam-server-test-"); err != nil {
			modelsErr = err
			return
		}
		path := filepath.Join(modelsDir, "tiny_segsam.safetensors")
		if err := m.Save(path, nil); err != nil {
			modelsErr = err
			return
		}
		if segModel, err = segsam.LoadAny(path, "", ""); err != nil {
			modelsErr = err
			return
		}
		samModel, modelsErr = segsam.LoadAny(samCkpt, "", samConfig)
	})
	if modelsErr != nil {
		t.Fatalf("load test models: %v", modelsErr)
	}
}

// newTestServer starts a server for the tiny SEG-SAM model (or the plain
// SAM) on an httptest server.
func newTestServer(t testing.TB, plainSAM bool, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	loadModels(t)
	model := segModel
	if plainSAM {
		model = samModel
	}
	s, err := New(model, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return s, ts
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// do sends a request and returns the status and body.
func do(t testing.TB, method, url, contentType string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, data, res.Header
}

// upload stores a file and returns its info.
func upload(t testing.TB, base, path, query string) ImageInfo {
	t.Helper()
	code, body, _ := do(t, "POST", base+"/v1/images"+query, "application/octet-stream", readFile(t, path))
	if code != http.StatusCreated {
		t.Fatalf("upload %s: %d %s", path, code, body)
	}
	var info ImageInfo
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

// predict posts a predict request and decodes a 200 answer.
func predict(t testing.TB, base, id string, req PredictRequest) PredictResponse {
	t.Helper()
	data, _ := json.Marshal(req)
	code, body, _ := do(t, "POST", base+"/v1/images/"+id+"/predict", "application/json", data)
	if code != http.StatusOK {
		t.Fatalf("predict: %d %s", code, body)
	}
	var out PredictResponse
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func intp(i int) *int { return &i }
