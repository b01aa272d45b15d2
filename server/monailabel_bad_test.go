package server

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// TestMLBadRequests checks that bad MONAI Label requests get a 4xx naming
// the problem, never a 500.
func TestMLBadRequests(t *testing.T) {
	dir := studiesDir(t)
	_, ts := newTestServer(t, false, Config{StudiesDir: dir, DisablePrecompute: true, MaxVolumeBytes: 200 << 10})
	_, noStudies := newTestServer(t, false, Config{DisablePrecompute: true})
	ct := readFile(t, demoVolume)
	mp := func(fields []mlField, files []mlFile) (string, []byte) { return mlMultipart(fields, files) }
	ctUp, ctBody := mp(nil, []mlFile{{"file", "x.nii.gz", ct}})
	trunc := ctBody[:len(ctBody)/2]
	pngUp, pngBody := mp(nil, []mlFile{{"label", "label.png", readFile(t, demoImage)}})
	txtUp, txtBody := mp(nil, []mlFile{{"label", "label.nii.gz", []byte("not a label map")}})
	petLab, petBody := mp(nil, []mlFile{{"label", "l.nii.gz", readFile(t, "../testdata/medimg/nifti/sts019_pet_label.nii.gz")}})
	nrrdUp, nrrdBody := mp(nil, []mlFile{{"label", "l.seg.nrrd", []byte("NRRD0004")}})
	big := append(bytes.Clone(ct), make([]byte, 200<<10)...)
	bigUp, bigBody := mp(nil, []mlFile{{"file", "big.nii.gz", big}})
	params := func(p string) (string, []byte) { return mp([]mlField{{"params", p}}, nil) }
	fgOut, fgOutBody := params(`{"foreground": [[50, 10, 3]], "background": []}`)
	kOut, kOutBody := params(`{"foreground": [[5, 10, 30]], "slice": 30}`)
	noPrompt, noPromptBody := params(`{"foreground": [], "background": []}`)
	badJSON, badJSONBody := params(`{"foreground": [[1, 2`)
	badType, badTypeBody := params(`{"foreground": "here"}`)
	badRoi, badRoiBody := params(`{"roi": [1, 2, 3]}`)
	goodClick, goodClickBody := params(`{"foreground": [[20, 20, 15]]}`)
	cases := []struct {
		name, method, url, ctype string
		body                     []byte
		status                   int
		msg                      string
	}{
		{"truncated multipart upload", "PUT", "/datastore/?image=a", ctUp, trunc, 400, "truncated"},
		{"no boundary", "PUT", "/datastore/?image=a", "multipart/form-data", ctBody, 400, "boundary"},
		{"no file part", "PUT", "/datastore/?image=a", pngUp, pngBody, 400, "send the image as multipart field"},
		{"upload over the limit", "PUT", "/datastore/?image=a", bigUp, bigBody, 413, "limit"},
		{"image id with a slash", "PUT", "/datastore/?image=a%2F..%2Fescape", ctUp, ctBody, 400, "path separator"},
		{"image id starting with a dot", "PUT", "/datastore/?image=.hidden", ctUp, ctBody, 400, "dot"},
		{"unknown image download", "GET", "/datastore/image?image=nope", "", nil, 404, "unknown image"},
		{"download without id", "GET", "/datastore/image", "", nil, 400, "missing query parameter"},
		{"non-NIfTI label", "PUT", "/datastore/label?image=ct_crop", txtUp, txtBody, 415, "not a NIfTI"},
		{"PNG label for a volume", "PUT", "/datastore/label?image=ct_crop", pngUp, pngBody, 415, "volume"},
		{"NRRD label", "PUT", "/datastore/label?image=ct_crop", nrrdUp, nrrdBody, 415, "File Extension"},
		{"label of another shape", "PUT", "/datastore/label?image=ct_crop", petLab, petBody, 400, "shape"},
		{"label for an unknown image", "PUT", "/datastore/label?image=nope", txtUp, txtBody, 404, "unknown image"},
		{"label tag with a slash", "PUT", "/datastore/label?image=ct_crop&tag=a/b", txtUp, txtBody, 400, "path separator"},
		{"unknown label", "GET", "/datastore/label?label=ct_crop&tag=final", "", nil, 404, "no label"},
		{"bad output", "GET", "/datastore/?output=xml", "", nil, 400, "output"},
		{"unknown model", "POST", "/infer/deepedit?image=ct_crop", goodClick, goodClickBody, 404, "unknown model"},
		{"automatic model without segmenter", "POST", "/infer/segsam_auto?image=ct_crop", goodClick, goodClickBody, 503, "segmenter"},
		{"infer unknown image", "POST", "/infer/segsam?image=nope", goodClick, goodClickBody, 404, "unknown image"},
		{"infer without image", "POST", "/infer/segsam", goodClick, goodClickBody, 400, "no image"},
		{"click outside the volume", "POST", "/infer/segsam?image=ct_crop", fgOut, fgOutBody, 400, "outside the volume"},
		{"slice outside the volume", "POST", "/infer/segsam?image=ct_crop", kOut, kOutBody, 400, "outside the volume"},
		{"no prompt", "POST", "/infer/segsam?image=ct_crop&output=json", noPrompt, noPromptBody, 400, "no slice"},
		{"malformed params", "POST", "/infer/segsam?image=ct_crop", badJSON, badJSONBody, 400, "params is not a JSON object"},
		{"params of the wrong type", "POST", "/infer/segsam?image=ct_crop", badType, badTypeBody, 400, "params"},
		{"roi of 3 numbers", "POST", "/infer/segsam?image=ct_crop", badRoi, badRoiBody, 400, "roi"},
		{"bad output kind", "POST", "/infer/segsam?image=ct_crop&output=dicom_seg", goodClick, goodClickBody, 400, "dicom_seg"},
		{"non-NIfTI label to infer", "POST", "/infer/segsam?image=ct_crop", txtUp, txtBody, 415, "not a NIfTI"},
		{"truncated infer body", "POST", "/infer/segsam?image=ct_crop", goodClick, goodClickBody[:20], 400, "truncated"},
		{"unknown session", "GET", "/session/abc", "", nil, 404, "not found"},
		{"infer on an unknown session", "POST", "/infer/segsam?image=ct_crop&session_id=abc", goodClick, goodClickBody, 404, "session"},
		{"session without files", "PUT", "/session/", goodClick, goodClickBody, 400, "send the volume as multipart field"},
		{"session of a text file", "PUT", "/session/", txtUp, bytes.ReplaceAll(txtBody, []byte(`name="label"`), []byte(`name="files"`)), 415, "not a NIfTI"},
		{"session bad expiry", "PUT", "/session/?expiry=soon", ctUp, ctBody, 400, "expiry"},
		{"unknown strategy", "POST", "/activelearning/uncertainty", "application/json", []byte(`{}`), 404, "unknown strategy"},
		{"strategy body not JSON", "POST", "/activelearning/first", "application/json", []byte(`[1,`), 400, "JSON"},
		{"wrong method", "POST", "/datastore/label", "", nil, 405, "not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body, _ := mlDo(t, c.method, ts.URL+c.url, c.ctype, c.body)
			if code != c.status || !strings.Contains(string(body), c.msg) {
				t.Errorf("%s %s: %d %s, want %d with %q", c.method, c.url, code, body, c.status, c.msg)
			}
		})
	}
	// Without --studies the datastore endpoints say how to turn it on.
	for _, p := range []string{"/datastore/", "/datastore/image?image=a", "/activelearning/first"} {
		method := "GET"
		if strings.HasPrefix(p, "/activelearning") {
			method = "POST"
		}
		code, body, _ := mlDo(t, method, noStudies.URL+p, "", nil)
		if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "--studies") {
			t.Errorf("%s without studies: %d %s", p, code, body)
		}
	}
	// The /v1 upload answers a truncated multipart body with a 400 too.
	code, body, _ := mlDo(t, "POST", ts.URL+"/v1/images", ctUp, trunc)
	if code != 400 || !strings.Contains(string(body), "truncated") {
		t.Errorf("/v1/images truncated multipart: %d %s", code, body)
	}
	// Nothing bad was stored.
	var st MLDatastoreStats
	mlJSON(t, "GET", ts.URL+"/datastore/", "", nil, &st)
	if st.Total != 3 || st.Completed != 0 {
		t.Errorf("after bad requests: %+v", st)
	}
}
