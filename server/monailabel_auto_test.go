package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segsam/segsam/segsam"
)

// TestMLInferAutoBuiltin checks the automatic model backed by the server's
// own label everything (Config.AutomaticModel): /info/ lists it for a
// SEG-SAM model, /infer/segsam_auto answers with the label map that
// segsam.Automatic gives for the same volume and options, on the image's
// grid, with label_names naming every value used; a plain SAM model does
// not get it.
func TestMLInferAutoBuiltin(t *testing.T) {
	s, ts := newTestServer(t, false, Config{StudiesDir: studiesDir(t), DisablePrecompute: true, AutomaticModel: true})
	opts := segsam.DefaultAMGOptions()
	opts.PointsPerSide, opts.PredIoUThresh, opts.StabilityScoreThresh = 2, 0, 0
	if err := s.SetAutomaticDefaults(opts); err != nil {
		t.Fatal(err)
	}
	var info MLInfo
	mlJSON(t, "GET", ts.URL+"/info/", "", nil, &info)
	if m, ok := info.Models[mlAutoModel]; !ok || m.Type != "segmentation" {
		t.Fatalf("automatic model not listed: %+v", info.Models)
	}
	res := mlInfer(t, ts.URL, mlAutoModel, "ct_crop", "", map[string]any{})
	checkGeometry(t, res.label.Header, ctHeader(t))

	img, err := s.studyImage("ct_crop")
	if err != nil {
		t.Fatal(err)
	}
	a, err := segsam.NewAutomatic(s.model, opts)
	if err != nil {
		t.Fatal(err)
	}
	want, err := a.SegmentVolume(t.Context(), img.Volume, segsam.VolumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Classes) == 0 {
		t.Fatal("segsam.Automatic found nothing in the test CT: the check is empty")
	}
	got := labelValues(t, res.label)
	if len(got) != len(want.Labels) {
		t.Fatalf("%d label voxels, want %d", len(got), len(want.Labels))
	}
	for i := range got {
		if got[i] != float32(want.Labels[i]) {
			t.Fatalf("voxel %d: %v, segsam.Automatic gives %d", i, got[i], want.Labels[i])
		}
	}
	names, _ := res.params["label_names"].(map[string]any)
	if len(names) != len(want.Classes) {
		t.Errorf("label_names %v, classes %+v", names, want.Classes)
	}
	for _, c := range want.Classes {
		if names[c.Name] != float64(c.ID) {
			t.Errorf("label_names[%q] = %v, want %d", c.Name, names[c.Name], c.ID)
		}
	}

	_, plain := newTestServer(t, true, Config{StudiesDir: studiesDir(t), DisablePrecompute: true, AutomaticModel: true})
	_, code, body := mlInferRaw(t, plain.URL, mlAutoModel, "ct_crop", "", map[string]any{})
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "segmenter") {
		t.Errorf("automatic model on a plain SAM: %d %s", code, body)
	}
}

// TestVolumeTimeout: labelling a whole volume runs under VolumeTimeout,
// not RequestTimeout (minutes of decoding on a CPU; the longer of the two
// applies); segment-all on a slice keeps RequestTimeout, and an exceeded
// VolumeTimeout is a 503 that names it.
func TestVolumeTimeout(t *testing.T) {
	opts := segsam.DefaultAMGOptions()
	opts.PointsPerSide, opts.PredIoUThresh, opts.StabilityScoreThresh = 2, 0, 0
	for _, tt := range []struct {
		name             string
		request, volume  time.Duration
		autoCode, slCode int
	}{
		// 1 ns has passed by the time any work checks its context: the
		// outcome does not depend on how fast the model is (1 ms did: a
		// cached embedding and one fast batch finished inside it).
		{"short requests, long volumes", time.Nanosecond, 10 * time.Minute, http.StatusOK, http.StatusServiceUnavailable},
		{"short volumes", time.Nanosecond, time.Nanosecond, http.StatusServiceUnavailable, http.StatusServiceUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, ts := newTestServer(t, false, Config{StudiesDir: studiesDir(t), DisablePrecompute: true, AutomaticModel: true,
				RequestTimeout: tt.request, VolumeTimeout: tt.volume})
			if err := s.SetAutomaticDefaults(opts); err != nil {
				t.Fatal(err)
			}
			_, code, body := mlInferRaw(t, ts.URL, mlAutoModel, "ct_crop", "", map[string]any{})
			if code != tt.autoCode {
				t.Errorf("segsam_auto: %d %s, want %d", code, body, tt.autoCode)
			}
			if code == http.StatusServiceUnavailable && !strings.Contains(string(body), "timed out after "+tt.volume.String()) {
				t.Errorf("segsam_auto timeout message: %s", body)
			}
			// A slice of an uploaded volume through /v1 (the upload itself is
			// a normal request: give it time first).
			s.cfg.RequestTimeout = 10 * time.Minute
			vol := upload(t, ts.URL, phantomVolume, "")
			s.cfg.RequestTimeout = tt.request
			code, body, _ = segmentAll(t, ts.URL, vol.ID, `{"slice": "axial:2"}`)
			if code != tt.slCode {
				t.Errorf("segment-all on a slice: %d %s, want %d", code, body, tt.slCode)
			}
		})
	}
}
