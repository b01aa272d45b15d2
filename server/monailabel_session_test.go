package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segsam/segsam/medimg"
)

// TestMLSession walks the client's session calls: create_session (PUT
// /session/ with the volume, as python-requests encodes it), get_session,
// infer on session_id (the same label as on the datastore image), expiry
// and remove_session, and a DICOM series uploaded as one session.
func TestMLSession(t *testing.T) {
	s, ts := newTestServer(t, false, Config{StudiesDir: studiesDir(t), DisablePrecompute: true, SessionExpiry: 10 * time.Minute})
	clock := time.Now()
	s.sessions.now = func() time.Time { return clock }

	ct, body := requestsMultipart([]mlFile{{"files", "/tmp/tmpq1.nii.gz", readFile(t, demoVolume)}})
	var created struct {
		SessionID   string        `json:"session_id"`
		SessionInfo MLSessionInfo `json:"session_info"`
	}
	mlJSON(t, "PUT", ts.URL+"/session/?expiry=3600", ct, body, &created)
	sid := created.SessionID
	if sid == "" || created.SessionInfo.Name != sid || created.SessionInfo.Expiry != 600 {
		t.Fatalf("create session: %+v (the expiry is capped at the server's 600 s)", created)
	}
	if _, err := os.Stat(created.SessionInfo.Image); err != nil {
		t.Errorf("session image: %v", err)
	}
	var info MLSessionInfo
	mlJSON(t, "GET", ts.URL+"/session/"+sid, "", nil, &info)
	if info.Name != sid || info.CreateTS == 0 {
		t.Errorf("get session %+v", info)
	}
	code, img, _ := mlDo(t, "GET", ts.URL+"/session/"+sid+"?image=true", "", nil)
	if code != 200 || !bytes.Equal(img, readFile(t, demoVolume)) {
		t.Errorf("session image download: %d", code)
	}

	click := map[string]any{"foreground": [][]int{{20, 20, 15}}, "label": "liver"}
	bySession := mlInfer(t, ts.URL, mlInteractiveModel, "ct_crop", sid, click)
	byImage := mlInfer(t, ts.URL, mlInteractiveModel, "ct_crop", "", map[string]any{"foreground": [][]int{{20, 20, 15}}, "label": "liver"})
	checkGeometry(t, bySession.label.Header, ctHeader(t))
	if !bytes.Equal(bySession.label.Data, byImage.label.Data) {
		t.Errorf("label on the session differs from the label on the same datastore image")
	}

	// Each access renews the expiry; past it the session is gone.
	clock = clock.Add(9 * time.Minute)
	mlJSON(t, "GET", ts.URL+"/session/"+sid+"?update_ts=true", "", nil, &info)
	clock = clock.Add(9 * time.Minute)
	mlJSON(t, "GET", ts.URL+"/session/"+sid, "", nil, &info)
	clock = clock.Add(11 * time.Minute)
	if code, body, _ := mlDo(t, "GET", ts.URL+"/session/"+sid, "", nil); code != 404 || !strings.Contains(string(body), "expired") {
		t.Errorf("expired session: %d %s", code, body)
	}
	if _, err := os.Stat(created.SessionInfo.Path); !os.IsNotExist(err) {
		t.Errorf("expired session's folder still there: %v", err)
	}

	// A DICOM series: several "files" parts, one volume.
	dir := "../testdata/medimg/dicom/explicit"
	entries, _ := os.ReadDir(dir)
	var files []mlFile
	for _, e := range entries {
		files = append(files, mlFile{"files", e.Name(), readFile(t, filepath.Join(dir, e.Name()))})
	}
	ct, body = requestsMultipart(files)
	mlJSON(t, "PUT", ts.URL+"/session/", ct, body, &created)
	res := mlInfer(t, ts.URL, mlInteractiveModel, "", created.SessionID, map[string]any{"foreground": [][]int{{5, 4, 2}}})
	series, err := medimg.ReadVolume(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeVolume(mustEncode(t, res), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if !got.SameGrid(series, 1e-4) {
		t.Errorf("label of the DICOM session: %v %v, series %v %v", got.Dim, got.Affine, series.Dim, series.Affine)
	}
	var removed MLSessionInfo
	mlJSON(t, "DELETE", ts.URL+"/session/"+created.SessionID, "", nil, &removed)
	if removed.Name != created.SessionID {
		t.Errorf("remove session answer %+v", removed)
	}
	if code, _, _ := mlDo(t, "DELETE", ts.URL+"/session/"+created.SessionID, "", nil); code != 404 {
		t.Errorf("second remove: %d", code)
	}
}

func mustEncode(t *testing.T, res mlInferResult) []byte {
	t.Helper()
	b, err := encodeNIfTI(res.label)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMLSessionBound checks that the least recently used session is
// dropped beyond MaxSessions or beyond MaxStoreBytes of decoded images (the
// test CT is 270,000 bytes as float32), and that Close removes the
// sessions' folders.
func TestMLSessionBound(t *testing.T) {
	for _, cfg := range []Config{{MaxSessions: 2}, {MaxStoreBytes: 600_000}} {
		cfg.DisablePrecompute = true
		s, ts := newTestServer(t, false, cfg)
		clock := time.Now()
		s.sessions.now = func() time.Time { return clock }
		var paths []string
		for i := 0; i < 3; i++ {
			ct, body := requestsMultipart([]mlFile{{"files", "ct.nii.gz", readFile(t, demoVolume)}})
			var created struct {
				SessionID   string        `json:"session_id"`
				SessionInfo MLSessionInfo `json:"session_info"`
			}
			mlJSON(t, "PUT", ts.URL+"/session/", ct, body, &created)
			paths = append(paths, created.SessionInfo.Path)
			clock = clock.Add(time.Second) // session times are in seconds
		}
		if _, err := os.Stat(paths[0]); !os.IsNotExist(err) {
			t.Errorf("%+v: the oldest session was kept", cfg)
		}
		if _, err := os.Stat(paths[1]); err != nil {
			t.Errorf("%+v: the second session was dropped: %v", cfg, err)
		}
		s.Close()
		for _, p := range paths[1:] {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("Close left %s", p)
			}
		}
	}
}

// TestMLActiveLearning checks next_sample: first and random give a study
// without a final label, record the strategy in its info, and {} once
// every study has one.
func TestMLActiveLearning(t *testing.T) {
	_, ts := newTestServer(t, false, Config{StudiesDir: studiesDir(t), DisablePrecompute: true})
	var next map[string]any
	mlJSON(t, "POST", ts.URL+"/activelearning/first", "application/json", []byte(`{"client_id": null}`), &next)
	if next["id"] != "ct_crop" || next["name"] != "ct_crop.nii.gz" || next["path"] == nil {
		t.Errorf("first: %v", next)
	}
	var info map[string]any
	mlJSON(t, "GET", ts.URL+"/datastore/image/info?image=ct_crop", "", nil, &info)
	if st, _ := info["strategy"].(map[string]any); st["first"] == nil {
		t.Errorf("strategy not recorded: %v", info)
	}
	// Label ct_crop and slice: the next is the DICOM series, which has no
	// path (Slicer downloads it as NIfTI).
	lab := readFile(t, "../testdata/medimg/nifti/ct_crop_label.nii.gz")
	ct, body := mlMultipart([]mlField{{"params", "{}"}}, []mlFile{{"label", "l.nii.gz", lab}})
	mlJSON(t, "PUT", ts.URL+"/datastore/label?image=ct_crop&tag=final", ct, body, nil)
	seen := map[any]bool{}
	for i := 0; i < 20; i++ {
		next = nil
		mlJSON(t, "POST", ts.URL+"/activelearning/random", "application/json", []byte(`{"client_id": null}`), &next)
		seen[next["id"]] = true
	}
	if len(seen) != 2 || !seen["dicom_ct"] || !seen["slice"] {
		t.Errorf("random picked %v, want dicom_ct and slice", seen)
	}
	next = nil
	mlJSON(t, "POST", ts.URL+"/activelearning/first", "", nil, &next)
	if next["id"] != "dicom_ct" || next["path"] != nil {
		t.Errorf("first after labelling ct_crop: %v", next)
	}
	pngLabel := readFile(t, demoImage) // any 256x256 PNG is a label of the right size
	for _, id := range []string{"dicom_ct", "slice"} {
		var f mlFile
		if id == "slice" {
			f = mlFile{"label", "l.png", pngLabel}
		} else {
			f = mlFile{"label", "l.nii.gz", mustDICOMLabel(t)}
		}
		ct, body = mlMultipart([]mlField{{"params", "{}"}}, []mlFile{f})
		mlJSON(t, "PUT", ts.URL+"/datastore/label?image="+id, ct, body, nil)
	}
	next = nil
	mlJSON(t, "POST", ts.URL+"/activelearning/first", "application/json", []byte(`{}`), &next)
	if len(next) != 0 {
		t.Errorf("every study labelled, next sample %v, want {}", next)
	}
}

// mustDICOMLabel returns an empty label map on the DICOM test series' grid.
func mustDICOMLabel(t *testing.T) []byte {
	t.Helper()
	v, err := medimg.ReadVolume("../testdata/medimg/dicom/explicit")
	if err != nil {
		t.Fatal(err)
	}
	b, err := labelVolumeNIfTI(v, make([]uint16, len(v.Data)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
