package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"math"
	"mime/multipart"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/medimg/nifti"
	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/segsam"
	"github.com/segsam/segsam/transform"
)

// decodePNGMask decodes a base64 PNG mask into a row-major binary plane.
func decodePNGMask(t *testing.T, b64 string) ([]bool, int, int) {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	out := make([]bool, b.Dx()*b.Dy())
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			r, _, _, _ := img.At(x, y).RGBA()
			if r != 0 && r != 0xffff {
				t.Fatalf("mask PNG pixel (%d,%d) = %d, want 0 or 255", x, y, r>>8)
			}
			out[y*b.Dx()+x] = r != 0
		}
	}
	return out, b.Dy(), b.Dx()
}

// TestPredictMatchesPredictor checks that the server answers what the model
// answers when run directly on the same image and prompt, in both formats.
func TestPredictMatchesPredictor(t *testing.T) {
	_, ts := newTestServer(t, false, Config{})
	info := upload(t, ts.URL, demoImage, "?name=amos.png")
	if info.Kind != "image" || info.Width != 256 || info.Height != 256 || info.Format != "png" || info.Name != "amos.png" {
		t.Fatalf("upload info %+v", info)
	}
	req := PredictRequest{Points: []Point{{X: 120, Y: 100}, {X: 30, Y: 40, Label: intp(0)}}}

	img, err := transform.DecodeImage(readFile(t, demoImage))
	if err != nil {
		t.Fatal(err)
	}
	direct := segsam.NewPredictor(segModel.Model)
	if err := direct.SetImage(img); err != nil {
		t.Fatal(err)
	}
	want, err := direct.Predict(sam.Prompt{Points: []sam.Point{{X: 120, Y: 100, Label: 1}, {X: 30, Y: 40, Label: 0}}})
	if err != nil {
		t.Fatal(err)
	}

	for _, format := range []string{"", "png", "rle"} {
		t.Run("format="+format, func(t *testing.T) {
			req.Format = format
			res := predict(t, ts.URL, info.ID, req)
			if res.Width != 256 || res.Height != 256 || len(res.Prompts) != 1 || len(res.Prompts[0].Masks) != 1 {
				t.Fatalf("response shape: %dx%d, %d prompts", res.Width, res.Height, len(res.Prompts))
			}
			p := res.Prompts[0]
			var mask []bool
			if format == "rle" {
				if p.Masks[0].RLE == nil || p.Masks[0].PNG != "" {
					t.Fatal("format rle: want an rle and no png")
				}
				if mask, err = p.Masks[0].RLE.Decode(); err != nil {
					t.Fatal(err)
				}
			} else {
				var h, w int
				mask, h, w = decodePNGMask(t, p.Masks[0].PNG)
				if h != 256 || w != 256 {
					t.Fatalf("mask PNG is %dx%d", w, h)
				}
			}
			wantMask := want.Mask(0, 0)
			for i := range mask {
				if mask[i] != wantMask[i] {
					t.Fatalf("mask differs from the predictor's at pixel %d", i)
				}
			}
			if p.Masks[0].Area != countOn(wantMask) {
				t.Errorf("area %d, want %d", p.Masks[0].Area, countOn(wantMask))
			}
			if math.Abs(float64(p.Masks[0].IoU-want.IoU[0])) > 1e-6 {
				t.Errorf("iou %v, want %v", p.Masks[0].IoU, want.IoU[0])
			}
			if p.Class != want.Class[0] || p.ClassIndex == nil || *p.ClassIndex != want.ClassIndex[0] || p.Confidence == nil || *p.Confidence != want.Confidence[0] {
				t.Errorf("class %q/%v/%v, want %q/%d/%v", p.Class, p.ClassIndex, p.Confidence, want.Class[0], want.ClassIndex[0], want.Confidence[0])
			}
			var sum float32
			for _, c := range testClasses {
				sum += p.ClassProbs[c]
			}
			if len(p.ClassProbs) != 3 || math.Abs(float64(sum)-1) > 1e-4 {
				t.Errorf("class_probs %v: want the 3 classes summing to 1", p.ClassProbs)
			}
			if p.Semantic == nil || p.Semantic.Area != countOn(want.SemanticMask(0)) {
				t.Errorf("semantic mask %+v, want area %d", p.Semantic, countOn(want.SemanticMask(0)))
			}
			if res.TimingsMS.Total <= 0 || res.TimingsMS.Embedding == "" {
				t.Errorf("timings %+v", res.TimingsMS)
			}
		})
	}
}

// TestPredictPlainSAM covers a model without classes: multimask, boxes, and
// a mask-only prompt fed from a previous call's low-res logits.
func TestPredictPlainSAM(t *testing.T) {
	_, ts := newTestServer(t, true, Config{})
	info := upload(t, ts.URL, demoImage, "")
	res := predict(t, ts.URL, info.ID, PredictRequest{Points: []Point{{X: 100, Y: 120}}, Multimask: true, ReturnLowRes: true, Format: "rle"})
	p := res.Prompts[0]
	if len(p.Masks) != 3 {
		t.Fatalf("multimask: %d masks, want 3", len(p.Masks))
	}
	if p.Class != "" || p.ClassIndex != nil || p.Semantic != nil {
		t.Errorf("plain SAM answered a class or semantic mask: %+v", p)
	}
	best := 0
	for i, m := range p.Masks {
		if m.IoU > p.Masks[best].IoU {
			best = i
		}
		low, err := decodeFloats(m.LowResLogits)
		if err != nil || len(low) != res.LowResSize*res.LowResSize {
			t.Fatalf("low_res_logits: %d values, %v", len(low), err)
		}
	}
	if p.Best != best {
		t.Errorf("best %d, want %d", p.Best, best)
	}
	res2 := predict(t, ts.URL, info.ID, PredictRequest{MaskInput: p.Masks[p.Best].LowResLogits, Format: "rle"})
	if len(res2.Prompts) != 1 || res2.TimingsMS.Embedding != "cached" {
		t.Errorf("mask-only prompt: %d prompts, embedding %q", len(res2.Prompts), res2.TimingsMS.Embedding)
	}
	res3 := predict(t, ts.URL, info.ID, PredictRequest{Boxes: [][]float64{{10, 10, 100, 100}, {50, 60, 200, 250}}})
	if len(res3.Prompts) != 2 {
		t.Errorf("2 boxes: %d prompts", len(res3.Prompts))
	}
}

// TestVolume uploads a NIfTI volume, predicts on a slice, renders it and
// paints the mask into a NIfTI label map.
func TestVolume(t *testing.T) {
	_, ts := newTestServer(t, false, Config{})
	info := upload(t, ts.URL, demoVolume, "?window=soft&name=ct_crop.nii.gz")
	if info.Kind != "volume" || info.Format != "nifti" || info.Volume == nil {
		t.Fatalf("upload info %+v", info)
	}
	vol, err := medimg.ReadVolume(demoVolume)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range medimg.Axes {
		si, _ := vol.SliceInfo(medimg.SliceSpec{Axis: a})
		got := info.Volume.Slices[a.String()]
		if got.Count != vol.NumSlices(a) || got.Width != si.Width || got.Height != si.Height {
			t.Errorf("%s slices %+v, want %d of %dx%d", a, got, vol.NumSlices(a), si.Width, si.Height)
		}
	}
	if info.Volume.Window != "soft" {
		t.Errorf("window %q, want soft", info.Volume.Window)
	}
	ax := info.Volume.Slices["axial"]
	res := predict(t, ts.URL, info.ID, PredictRequest{Slice: "axial:15", Points: []Point{{X: float64(ax.Width) / 2, Y: float64(ax.Height) / 2}}, Format: "rle"})
	if res.Width != ax.Width || res.Height != ax.Height || res.Slice != "axial:15" || res.Window != "soft" {
		t.Fatalf("predict on a slice: %dx%d %s %s", res.Width, res.Height, res.Slice, res.Window)
	}
	p := res.Prompts[0]
	if p.Class == "" {
		t.Error("no class on a volume slice")
	}

	// The rendered slice is the soft-window slice the model saw.
	code, body, hdr := do(t, "GET", ts.URL+"/v1/images/"+info.ID+"/render?slice=axial:15", "", nil)
	if code != 200 || hdr.Get("Content-Type") != "image/png" {
		t.Fatalf("render: %d %s", code, body)
	}
	got, err := png.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := vol.Slice8(medimg.SliceSpec{Axis: medimg.Axial, Index: 15}, medimg.SoftTissueWindow)
	if err != nil {
		t.Fatal(err)
	}
	if got.Bounds() != want.Bounds() {
		t.Fatalf("render size %v, want %v", got.Bounds(), want.Bounds())
	}
	for y := 0; y < want.Rect.Dy(); y++ {
		for x := 0; x < want.Rect.Dx(); x++ {
			if r, _, _, _ := got.At(x, y).RGBA(); uint8(r>>8) != want.GrayAt(x, y).Y {
				t.Fatalf("render pixel (%d,%d) = %d, want %d", x, y, r>>8, want.GrayAt(x, y).Y)
			}
		}
	}

	// Label map: the mask painted with label 3 on the volume's grid.
	lm, _ := json.Marshal(LabelMapRequest{Masks: []SliceLabel{{Slice: "axial:15", Label: 3, RLE: *p.Masks[0].RLE}}})
	code, body, hdr = do(t, "POST", ts.URL+"/v1/images/"+info.ID+"/labelmap", "application/json", lm)
	if code != 200 || hdr.Get("Content-Type") != "application/gzip" || !strings.Contains(hdr.Get("Content-Disposition"), "ct_crop_labels.nii.gz") {
		t.Fatalf("labelmap: %d %v %s", code, hdr, body)
	}
	ni, err := nifti.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	labels, err := medimg.FromNIfTI(ni)
	if err != nil {
		t.Fatal(err)
	}
	if labels.Dim != vol.Dim || labels.Affine != vol.Affine {
		t.Fatalf("label map grid %v %v, want %v %v", labels.Dim, labels.Affine, vol.Dim, vol.Affine)
	}
	mask, _ := p.Masks[0].RLE.Decode()
	idx, _, _ := vol.SliceVoxels(medimg.SliceSpec{Axis: medimg.Axial, Index: 15})
	n := 0
	for i, v := range labels.Data {
		if v != 0 && v != 3 {
			t.Fatalf("label %v at voxel %d", v, i)
		}
		if v == 3 {
			n++
		}
	}
	for p, on := range mask {
		if on && labels.Data[idx[p]] != 3 {
			t.Fatalf("mask pixel %d not labelled in the volume", p)
		}
	}
	if n != countOn(mask) { // the axial slice of this volume is not resampled
		t.Errorf("%d labelled voxels, want %d", n, countOn(mask))
	}
}

// gzipped returns data compressed with gzip.
func gzipped(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

// TestMultipartUpload: a well-formed multipart/form-data upload (a text
// field, then the file part) is accepted, as the raw body is.
func TestMultipartUpload(t *testing.T) {
	_, ts := newTestServer(t, false, Config{})
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	if err := mw.WriteField("note", "first a field"); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("file", "demo.png")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(readFile(t, demoImage))
	mw.Close()
	code, resp, _ := do(t, "POST", ts.URL+"/v1/images", mw.FormDataContentType(), body.Bytes())
	if code != http.StatusCreated {
		t.Fatalf("multipart upload: %d %s", code, resp)
	}
}

// TestBadRequests sends every kind of bad request: each gets a 4xx with a
// JSON error, and the server keeps serving.
func TestBadRequests(t *testing.T) {
	s, ts := newTestServer(t, false, Config{MaxImageBytes: 40_000, MaxVolumeBytes: 200_000, MaxDecompressedBytes: 1 << 20, MaxJSONBytes: 4096, MaxPoints: 4})
	img := upload(t, ts.URL, demoImage, "")
	vol := upload(t, ts.URL, demoVolume, "")
	bigPNG := readFile(t, "../testdata/dataset/demo_subset/images/cvcclinicdb_362.png") // 51 kB > 40 kB
	bomb := gzipped(t, make([]byte, 4<<20))                                             // 4 MiB of zeros, 4 kB compressed
	nifti1 := make([]byte, 352)
	nifti1[0], nifti1[1] = 0x5c, 0x01 // sizeof_hdr 348, then garbage
	pred := func(id string) string { return "/v1/images/" + id + "/predict" }
	cases := []struct {
		name, method, path, body string
		raw                      []byte
		want                     int
		errHas                   string
		contentType              string // "" sends none
	}{
		{"not an image", "POST", "/v1/images", "hello, world", nil, 415, "not an image", ""},
		{"empty upload", "POST", "/v1/images", "", nil, 400, "empty upload", ""},
		{"image too large", "POST", "/v1/images", "", bigPNG, 413, "limit", ""},
		{"body over every limit", "POST", "/v1/images", strings.Repeat("x", 300_000), nil, 413, "too large", ""},
		{"gzip bomb", "POST", "/v1/images", "", bomb, 413, "decompresses", ""},
		{"gzip not NIfTI", "POST", "/v1/images", "", gzipped(t, []byte("plain text")), 415, "not a NIfTI", ""},
		{"corrupt NIfTI", "POST", "/v1/images", "", nifti1, 400, "NIfTI", ""},
		{"bad window", "POST", "/v1/images?window=sunset", "", readFile(t, demoVolume), 400, "window", ""},
		{"bad precompute", "POST", "/v1/images?precompute=maybe", "", readFile(t, demoImage), 400, "precompute", ""},
		{"unknown id info", "GET", "/v1/images/nope", "", nil, 404, "unknown image", ""},
		{"unknown id predict", "POST", pred("nope"), `{"points":[{"x":1,"y":1}]}`, nil, 404, "unknown image", ""},
		{"unknown id delete", "DELETE", "/v1/images/nope", "", nil, 404, "unknown image", ""},
		{"unknown id render", "GET", "/v1/images/nope/render", "", nil, 404, "unknown image", ""},
		{"unknown endpoint", "GET", "/v1/nothing", "", nil, 404, "no endpoint", ""},
		{"empty id predict", "POST", "/v1/images//predict", `{"points":[{"x":1,"y":1}]}`, nil, 400, "empty image id", ""},
		{"empty id render", "GET", "/v1/images//render", "", nil, 400, "empty image id", ""},
		{"unclean API path", "GET", "/v1/images/x/./render", "", nil, 404, "not clean", ""},
		{"unknown page", "GET", "/nothing.html", "", nil, 404, "not found", ""},
		{"wrong method images", "PUT", "/v1/images", "", nil, 405, "not allowed", ""},
		{"wrong method predict", "GET", pred(img.ID), "", nil, 405, "not allowed", ""},
		{"wrong method page", "POST", "/", "", nil, 405, "not allowed", ""},
		{"malformed JSON", "POST", pred(img.ID), `{"points": [`, nil, 400, "malformed JSON", ""},
		{"JSON of the wrong type", "POST", pred(img.ID), `{"points": 3}`, nil, 400, "malformed JSON", ""},
		{"unknown JSON field", "POST", pred(img.ID), `{"pints": []}`, nil, 400, "unknown field", ""},
		{"trailing data", "POST", pred(img.ID), `{"points":[{"x":1,"y":1}]} {}`, nil, 400, "after the JSON", ""},
		{"JSON too large", "POST", pred(img.ID), `{"mask_input":"` + strings.Repeat("A", 5000) + `"}`, nil, 413, "too large", ""},
		{"point outside the image", "POST", pred(img.ID), `{"points":[{"x":300,"y":10}]}`, nil, 400, "outside", ""},
		{"negative point", "POST", pred(img.ID), `{"points":[{"x":-1,"y":10}]}`, nil, 400, "outside", ""},
		{"box outside the image", "POST", pred(img.ID), `{"boxes":[[0,0,10,900]]}`, nil, 400, "outside", ""},
		{"inverted box", "POST", pred(img.ID), `{"boxes":[[50,50,10,10]]}`, nil, 400, "x0 <= x1", ""},
		{"short box", "POST", pred(img.ID), `{"boxes":[[1,2,3]]}`, nil, 400, "want [x0, y0, x1, y1]", ""},
		{"bad label", "POST", pred(img.ID), `{"points":[{"x":1,"y":1,"label":2}]}`, nil, 400, "label", ""},
		{"empty prompt", "POST", pred(img.ID), `{}`, nil, 400, "empty prompt", ""},
		{"too many points", "POST", pred(img.ID), `{"points":[{"x":1,"y":1},{"x":1,"y":1},{"x":1,"y":1},{"x":1,"y":1},{"x":1,"y":1}]}`, nil, 400, "at most 4", ""},
		{"mask input not base64", "POST", pred(img.ID), `{"points":[{"x":1,"y":1}],"mask_input":"%%%"}`, nil, 400, "base64", ""},
		{"mask input wrong size", "POST", pred(img.ID), `{"points":[{"x":1,"y":1}],"mask_input":"AAAAAA=="}`, nil, 400, "mask input", ""},
		{"bad format", "POST", pred(img.ID), `{"points":[{"x":1,"y":1}],"format":"gif"}`, nil, 400, "format", ""},
		{"slice on a 2-D image", "POST", pred(img.ID), `{"points":[{"x":1,"y":1}],"slice":"axial:1"}`, nil, 400, "2-D image", ""},
		{"missing slice", "POST", pred(vol.ID), `{"points":[{"x":1,"y":1}]}`, nil, 400, "give a slice", ""},
		{"slice out of range", "POST", pred(vol.ID), `{"points":[{"x":1,"y":1}],"slice":"axial:30"}`, nil, 400, "out of range", ""},
		{"bad slice", "POST", pred(vol.ID), `{"points":[{"x":1,"y":1}],"slice":"diagonal:3"}`, nil, 400, "slice", ""},
		{"bad slice window", "POST", pred(vol.ID), `{"points":[{"x":1,"y":1}],"slice":"axial:3","window":"0,-5"}`, nil, 400, "width", ""},
		{"render missing slice", "GET", "/v1/images/" + vol.ID + "/render", "", nil, 400, "give a slice", ""},
		{"labelmap of a 2-D image", "POST", "/v1/images/" + img.ID + "/labelmap", `{"masks":[]}`, nil, 400, "2-D image", ""},
		{"labelmap bad size", "POST", "/v1/images/" + vol.ID + "/labelmap", `{"masks":[{"slice":"axial:1","label":1,"rle":{"size":[2,2],"counts":[4]}}]}`, nil, 400, "rle size", ""},
		{"labelmap bad label", "POST", "/v1/images/" + vol.ID + "/labelmap", `{"masks":[{"slice":"axial:1","label":0,"rle":{"size":[2,2],"counts":[4]}}]}`, nil, 400, "label 0", ""},
		{"truncated multipart", "POST", "/v1/images", "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"demo.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n", nil, 400, "file part \"demo.png\": the body ends before the closing boundary", "multipart/form-data; boundary=XyZ"},
		{"multipart cut in the part header", "POST", "/v1/images", "--XyZ\r\nContent-Disposition: form-da", nil, 400, "without a file part (or cut", "multipart/form-data; boundary=XyZ"},
		{"multipart without its boundary", "POST", "/v1/images", "hello", nil, 400, "malformed multipart upload", "multipart/form-data; boundary=XyZ"},
		{"multipart without boundary parameter", "POST", "/v1/images", "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"demo.png\"\r\nContent-Type: image/png\r\n\r\n", nil, 400, "no boundary parameter", "multipart/form-data"},
		{"multipart without a file part", "POST", "/v1/images", "--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--XyZ--\r\n", nil, 400, "without a file part", "multipart/form-data; boundary=XyZ"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := c.raw
			if body == nil {
				body = []byte(c.body)
			}
			code, resp, hdr := do(t, c.method, ts.URL+c.path, c.contentType, body)
			if code != c.want {
				t.Fatalf("status %d, want %d: %s", code, c.want, resp)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var e ErrorResponse
			if err := json.Unmarshal(resp, &e); err != nil || e.Error == "" {
				t.Fatalf("body %q is not a JSON error: %v", resp, err)
			}
			if !strings.Contains(e.Error, c.errHas) {
				t.Errorf("error %q does not mention %q", e.Error, c.errHas)
			}
			if code == 405 && hdr.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
			// The server keeps serving.
			if code, _, _ := do(t, "GET", ts.URL+"/healthz", "", nil); code != 200 {
				t.Fatalf("healthz after the bad request: %d", code)
			}
		})
	}
	// And still answers good requests on the same images.
	predict(t, ts.URL, img.ID, PredictRequest{Points: []Point{{X: 10, Y: 10}}})
	predict(t, ts.URL, vol.ID, PredictRequest{Points: []Point{{X: 10, Y: 10}}, Slice: "coronal:3"})
	if n, _, _ := s.store.Stats(); n != 2 {
		t.Errorf("%d images stored after the bad uploads, want 2", n)
	}
}

// TestSharedEmbedding sends concurrent first requests for one image: the
// encoder runs once and every request gets the same masks.
func TestSharedEmbedding(t *testing.T) {
	s, ts := newTestServer(t, false, Config{DisablePrecompute: true})
	info := upload(t, ts.URL, demoImage, "")
	const n = 8
	var wg sync.WaitGroup
	areas := make([]int, n)
	outcomes := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := predict(t, ts.URL, info.ID, PredictRequest{Points: []Point{{X: 128, Y: 128}}, Format: "rle"})
			areas[i], outcomes[i] = res.Prompts[0].Masks[0].Area, res.TimingsMS.Embedding
		}()
	}
	wg.Wait()
	st := s.cache.Stats()
	if st.Misses != 1 || st.Hits+st.Shared != n-1 {
		t.Errorf("cache after %d concurrent requests: %+v, want 1 miss", n, st)
	}
	computed := 0
	for i := range areas {
		if areas[i] != areas[0] {
			t.Errorf("request %d: area %d, want %d", i, areas[i], areas[0])
		}
		if outcomes[i] == "computed" {
			computed++
		}
	}
	if computed != 1 {
		t.Errorf("%d requests computed the embedding (%v), want 1", computed, outcomes)
	}
}

// TestEvictionAndDelete checks the cache bound and that deleting an image
// drops its embeddings.
func TestEvictionAndDelete(t *testing.T) {
	loadModels(t)
	mc := segModel.SAM.Model.Config
	entry := int64(4 * mc.PromptEncoder.EmbedDim * mc.TokenGrid() * mc.TokenGrid())
	s, ts := newTestServer(t, false, Config{DisablePrecompute: true, CacheBytes: 2 * entry})
	var ids []string
	for i := 0; i < 3; i++ {
		id := upload(t, ts.URL, demoImage, "").ID
		ids = append(ids, id)
		predict(t, ts.URL, id, PredictRequest{Points: []Point{{X: 5, Y: 5}}})
	}
	st := s.cache.Stats()
	if st.Entries != 2 || st.Evictions != 1 || st.Used != 2*entry || st.Used > st.Capacity {
		t.Errorf("cache %+v: want 2 entries, 1 eviction", st)
	}
	// The evicted (first) image still answers, recomputing its embedding.
	if res := predict(t, ts.URL, ids[0], PredictRequest{Points: []Point{{X: 5, Y: 5}}}); res.TimingsMS.Embedding != "computed" {
		t.Errorf("evicted image: embedding %q, want computed", res.TimingsMS.Embedding)
	}
	if code, _, _ := do(t, "DELETE", ts.URL+"/v1/images/"+ids[0], "", nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if len(s.cache.Keys(ids[0])) != 0 {
		t.Error("embeddings of a deleted image are still cached")
	}
	if code, _, _ := do(t, "GET", ts.URL+"/v1/images/"+ids[0], "", nil); code != 404 {
		t.Errorf("deleted image: %d, want 404", code)
	}
	var list ImageList
	_, body, _ := do(t, "GET", ts.URL+"/v1/images", "", nil)
	if err := json.Unmarshal(body, &list); err != nil || len(list.Images) != 2 {
		t.Errorf("list after delete: %s", body)
	}
}

// TestImageStoreBound checks that the store drops its least recently used
// images beyond MaxImages.
func TestImageStoreBound(t *testing.T) {
	s, ts := newTestServer(t, false, Config{DisablePrecompute: true, MaxImages: 2})
	a := upload(t, ts.URL, demoImage, "").ID
	b := upload(t, ts.URL, demoImage, "").ID
	do(t, "GET", ts.URL+"/v1/images/"+a, "", nil) // a is now more recent than b
	c := upload(t, ts.URL, demoImage, "").ID
	for id, want := range map[string]int{a: 200, b: 404, c: 200} {
		if code, _, _ := do(t, "GET", ts.URL+"/v1/images/"+id, "", nil); code != want {
			t.Errorf("image %s: %d, want %d", id, code, want)
		}
	}
	if n, _, ev := s.store.Stats(); n != 2 || ev != 1 {
		t.Errorf("store: %d images, %d evictions", n, ev)
	}
}

var metricLine = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? -?[0-9.e+\-Inf]+$`)

// TestMetrics checks the Prometheus text format and a few counters.
func TestMetrics(t *testing.T) {
	_, ts := newTestServer(t, false, Config{})
	info := upload(t, ts.URL, demoImage, "")
	for i := 0; i < 3; i++ {
		predict(t, ts.URL, info.ID, PredictRequest{Points: []Point{{X: 50, Y: 50}}})
	}
	do(t, "GET", ts.URL+"/v1/images/unknown", "", nil)
	code, body, hdr := do(t, "GET", ts.URL+"/metrics", "", nil)
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("metrics: %d %s", code, hdr.Get("Content-Type"))
	}
	text := string(body)
	for i, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		if !metricLine.MatchString(line) {
			t.Errorf("line %d is not a Prometheus sample: %q", i+1, line)
		}
	}
	for _, want := range []string{
		`segsam_http_requests_total{route="/v1/images/{id}/predict",method="POST",code="200"} 3`,
		`segsam_http_requests_total{route="/v1/images/{id}",method="GET",code="404"} 1`,
		`segsam_http_request_duration_seconds_count{route="/v1/images/{id}/predict"} 3`,
		`segsam_embedding_cache_misses_total 1`,
		`segsam_embedding_cache_entries 1`,
		`segsam_images_stored 1`,
		`segsam_image_encoder_duration_seconds_count 1`,
		`segsam_predict_duration_seconds_count 3`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestOpenAPI checks that the OpenAPI document covers every route.
func TestOpenAPI(t *testing.T) {
	s, ts := newTestServer(t, false, Config{})
	code, body, _ := do(t, "GET", ts.URL+"/openapi.json", "", nil)
	if code != 200 {
		t.Fatalf("openapi: %d", code)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	for _, rt := range s.routes {
		if _, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]; !ok {
			t.Errorf("openapi.json does not document %s %s", rt.method, rt.path)
		}
	}
	n := 0
	for path, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			n++
			found := false
			for _, rt := range s.routes {
				found = found || (rt.path == path && strings.ToLower(rt.method) == m)
			}
			if !found {
				t.Errorf("openapi.json documents %s %s, which the server lacks", m, path)
			}
		}
	}
	if n != len(s.routes) {
		t.Errorf("openapi.json has %d operations, the server %d", n, len(s.routes))
	}
}

// TestWebPage checks that the page and its assets are served from the
// binary, with no external references.
func TestWebPage(t *testing.T) {
	_, ts := newTestServer(t, false, Config{})
	for _, c := range []struct{ path, ctype, has string }{
		{"/", "text/html", `id="overlay-label"`},
		{"/app.js", "text/javascript", "/v1/images"},
		{"/style.css", "text/css", "#overlay"},
	} {
		code, body, hdr := do(t, "GET", ts.URL+c.path, "", nil)
		if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), c.ctype) || !strings.Contains(string(body), c.has) {
			t.Errorf("%s: %d %q", c.path, code, hdr.Get("Content-Type"))
		}
		if regexp.MustCompile(`(src|href)="https?://|url\(https?:|import .* from ['"]https?:`).Match(body) {
			t.Errorf("%s refers to an external resource", c.path)
		}
		if hdr.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: no Content-Security-Policy", c.path)
		}
	}
	code, body, _ := do(t, "GET", ts.URL+"/v1/model", "", nil)
	var mi ModelInfo
	if err := json.Unmarshal(body, &mi); err != nil || code != 200 || strings.Join(mi.Classes, ",") != "liver,kidney,spleen" || !mi.Semantic || mi.MaskOnlyPrompts {
		t.Errorf("model info: %d %s", code, body)
	}
}

// TestGracefulShutdown cancels Serve while a request waits for the encoder:
// the request completes, then Serve returns and the port is closed.
func TestGracefulShutdown(t *testing.T) {
	loadModels(t)
	s, err := New(segModel, Config{DisablePrecompute: true, ShutdownTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	info := upload(t, base, demoImage, "")

	// Hold every encoder slot so that the predict request stays in flight.
	for i := 0; i < cap(s.encodes); i++ {
		s.encodes <- struct{}{}
	}
	result := make(chan int, 1)
	go func() {
		code, _, _ := do(t, "POST", base+"/v1/images/"+info.ID+"/predict", "application/json", []byte(`{"points":[{"x":9,"y":9}]}`))
		result <- code
	}()
	for deadline := time.Now().Add(10 * time.Second); s.metrics.inFlight.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("request never reached the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}
	for i := 0; i < cap(s.encodes); i++ {
		<-s.encodes
	}
	if code := <-result; code != 200 {
		t.Errorf("in-flight request: %d, want 200", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("port still accepts connections after shutdown")
	}
}

// TestConfigErrors checks New's checks.
func TestConfigErrors(t *testing.T) {
	loadModels(t)
	if _, err := New(nil, Config{}); err == nil {
		t.Error("New(nil) succeeded")
	}
	if _, err := New(segModel, Config{CacheBytes: 100}); err == nil || !strings.Contains(err.Error(), "cannot hold") {
		t.Errorf("tiny cache: %v", err)
	}
}
