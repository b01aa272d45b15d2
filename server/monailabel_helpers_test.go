package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/medimg/nifti"
)

// These helpers build the requests MONAI Label's client
// (monailabel/client/client.py) sends, byte for byte.

// mlBoundary is the fixed boundary of the client's
// MONAILabelUtils.encode_multipart_formdata.
const mlBoundary = "----------lImIt_of_THE_fIle_eW_$"

// mlField is a form field; mlFile a file part with the file name the
// client puts in it (the path it was given).
type mlField struct{ name, value string }
type mlFile struct {
	field, filename string
	data            []byte
}

// mlMultipart encodes fields then files as encode_multipart_formdata does:
// CRLF-joined lines, each file with the Content-Type Python's mimetypes
// guesses (application/octet-stream for .nii.gz and .nii, image/png for
// .png), and a final CRLF after the closing boundary.
func mlMultipart(fields []mlField, files []mlFile) (contentType string, body []byte) {
	var b bytes.Buffer
	line := func(s string) { b.WriteString(s + "\r\n") }
	for _, f := range fields {
		line("--" + mlBoundary)
		line(fmt.Sprintf("Content-Disposition: form-data; name=\"%s\"", f.name))
		line("")
		line(f.value)
	}
	for _, f := range files {
		ct := "application/octet-stream"
		if strings.HasSuffix(f.filename, ".png") {
			ct = "image/png"
		}
		line("--" + mlBoundary)
		line(fmt.Sprintf("Content-Disposition: form-data; name=\"%s\"; filename=\"%s\"", f.field, f.filename))
		line("Content-Type: " + ct)
		line("")
		b.Write(f.data)
		b.WriteString("\r\n")
	}
	line("--" + mlBoundary + "--")
	line("")
	return "multipart/form-data; boundary=" + mlBoundary, b.Bytes()
}

// requestsMultipart encodes files as python-requests (urllib3) does for
// the client's create_session (http_upload): a random hex boundary, each
// file part with its base name and a guessed Content-Type, no trailing
// CRLF after the closing boundary.
func requestsMultipart(files []mlFile) (contentType string, body []byte) {
	const boundary = "3c5f0f6a1b2d4e8f9a0b1c2d3e4f5a6b"
	var b bytes.Buffer
	for _, f := range files {
		b.WriteString("--" + boundary + "\r\n")
		b.WriteString(fmt.Sprintf("Content-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n", f.field, filepath.Base(f.filename)))
		b.WriteString("Content-Type: application/octet-stream\r\n\r\n")
		b.Write(f.data)
		b.WriteString("\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return "multipart/form-data; boundary=" + boundary, b.Bytes()
}

// mlDo sends a request with the headers Python's http.client sends
// (Host, Accept-Encoding: identity, and content-type / content-length
// when there is a body) and returns the answer.
func mlDo(t testing.TB, method, url, contentType string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	if body != nil {
		req.Header.Set("content-type", contentType)
		req.Header.Set("content-length", fmt.Sprint(len(body)))
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

// mlJSON sends a request that must answer 200 and decodes its JSON.
func mlJSON(t testing.TB, method, url, contentType string, body []byte, out any) {
	t.Helper()
	code, data, _ := mlDo(t, method, url, contentType, body)
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, url, code, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, data)
		}
	}
}

// mlInferResult is an infer answer parsed as the client does (its
// parse_multipart): the params part and the file part by its file name.
type mlInferResult struct {
	params   map[string]any
	filename string
	label    *nifti.Image
}

// mlInfer posts an infer request as the client's infer() does and parses
// the multipart answer.
func mlInfer(t testing.TB, base, model, image, session string, params map[string]any) mlInferResult {
	t.Helper()
	res, code, body := mlInferRaw(t, base, model, image, session, params)
	if code != http.StatusOK {
		t.Fatalf("infer %s: %d %s", model, code, body)
	}
	return res
}

func mlInferRaw(t testing.TB, base, model, image, session string, params map[string]any) (mlInferResult, int, []byte) {
	t.Helper()
	params["client_id"] = nil
	pj, _ := json.Marshal(params)
	ct, body := mlMultipart([]mlField{{"params", string(pj)}}, nil)
	url := base + "/infer/" + model + "?image=" + image
	if session != "" {
		url += "&session_id=" + session
	}
	code, data, h := mlDo(t, "POST", url, ct, body)
	if code != http.StatusOK {
		return mlInferResult{}, code, data
	}
	mt, mp, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("infer answer Content-Type %q: %v", h.Get("Content-Type"), err)
	}
	var out mlInferResult
	mr := multipart.NewReader(bytes.NewReader(data), mp["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		if part.FileName() == "" {
			if part.FormName() != "params" {
				t.Fatalf("answer has a form field %q", part.FormName())
			}
			if err := json.Unmarshal(b, &out.params); err != nil {
				t.Fatal(err)
			}
			continue
		}
		out.filename = part.FileName()
		if out.label, err = nifti.Decode(bytes.NewReader(b)); err != nil {
			t.Fatalf("label file %s: %v", out.filename, err)
		}
	}
	if out.params == nil || out.label == nil {
		t.Fatalf("infer answer lacks params or the label file: %s", data)
	}
	return out, code, data
}

// labelValues returns a uint8/uint16 label image's voxels.
func labelValues(t testing.TB, img *nifti.Image) []float32 {
	t.Helper()
	v, err := img.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// studiesDir returns a temporary studies folder holding the test CT
// (ct_crop.nii.gz), a DICOM series folder (dicom_ct/) and a PNG (slice.png).
func studiesDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, demoVolume, filepath.Join(dir, "ct_crop.nii.gz"))
	copyFile(t, demoImage, filepath.Join(dir, "slice.png"))
	src := "../testdata/medimg/dicom/explicit"
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dir, "dicom_ct", e.Name()))
	}
	return dir
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, readFile(t, src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newHTTPTest serves s on an httptest server closed with the test.
func newHTTPTest(t testing.TB, s *Server) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return ts
}
