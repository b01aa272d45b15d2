package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/segsam/segsam/medimg/nifti"
	"github.com/segsam/segsam/models"
	"github.com/segsam/segsam/segsam"
)

// ctHeader is the NIfTI header of the test CT.
func ctHeader(t testing.TB) nifti.Header {
	t.Helper()
	img, err := nifti.Decode(bytes.NewReader(readFile(t, demoVolume)))
	if err != nil {
		t.Fatal(err)
	}
	return img.Header
}

// checkGeometry checks that a label map has the image's exact geometry.
func checkGeometry(t testing.TB, got, want nifti.Header) {
	t.Helper()
	if got.Dim != want.Dim || got.Pixdim != want.Pixdim || got.QformCode != want.QformCode || got.SformCode != want.SformCode ||
		got.Srow != want.Srow || got.QuaternB != want.QuaternB || got.QuaternC != want.QuaternC || got.QuaternD != want.QuaternD || got.QOffset != want.QOffset {
		t.Errorf("label geometry differs from the image's:\n got dim %v pixdim %v q/s %d/%d srow %v q %v %v %v %v\nwant dim %v pixdim %v q/s %d/%d srow %v q %v %v %v %v",
			got.Dim, got.Pixdim, got.QformCode, got.SformCode, got.Srow, got.QuaternB, got.QuaternC, got.QuaternD, got.QOffset,
			want.Dim, want.Pixdim, want.QformCode, want.SformCode, want.Srow, want.QuaternB, want.QuaternC, want.QuaternD, want.QOffset)
	}
	if got.IntentCode != nifti.IntentLabel {
		t.Errorf("intent %d, want NIFTI_INTENT_LABEL", got.IntentCode)
	}
}

// v1Voxels asks /v1 for the mask of a prompt on a slice (the best of the
// candidates) and returns the voxels it covers on the test CT, whose
// axial slice k shows voxel (i, j) at pixel (49 - i, 44 - j): the file is
// RAS, the slice anterior up with the patient's left on the right.
func v1Voxels(t *testing.T, base, id string, k int, req PredictRequest) map[[3]int]bool {
	t.Helper()
	req.Slice, req.Format = "axial:"+itoa(k), "rle"
	res := predict(t, base, id, req)
	p := res.Prompts[0]
	mask, err := p.Masks[p.Best].RLE.Decode()
	if err != nil {
		t.Fatal(err)
	}
	out := map[[3]int]bool{}
	for i, on := range mask {
		if on {
			x, y := i%res.Width, i/res.Width
			out[[3]int{49 - x, 44 - y, k}] = true
		}
	}
	return out
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// labelVoxels returns the non-zero voxels of a label map.
func labelVoxels(t testing.TB, img *nifti.Image) map[[3]int]bool {
	t.Helper()
	nx, ny := int(img.Dim[1]), int(img.Dim[2])
	out := map[[3]int]bool{}
	for n, v := range labelValues(t, img) {
		if v != 0 {
			if v != 1 {
				t.Fatalf("label value %v, want 1", v)
			}
			out[[3]int{n % nx, (n / nx) % ny, n / (nx * ny)}] = true
		}
	}
	return out
}

// TestMLInferInteractive checks the interactive model's answer on a
// datastore CT: clicks [i, j, k] and an ROI [i0, i1, j0, j1, k0, k1] become
// the same prompt on the same slice as through /v1 (the mapping of voxel
// indices to slice pixels), the label map has the image's geometry and is
// filled on slice k only, and params carry label_names, the class, its
// confidence and the IoU.
func TestMLInferInteractive(t *testing.T) {
	_, ts := newTestServer(t, false, Config{StudiesDir: studiesDir(t), DisablePrecompute: true})
	v1 := upload(t, ts.URL, demoVolume, "?precompute=false").ID
	hdr := ctHeader(t)
	nonEmpty := 0
	cases := []struct {
		name   string
		params map[string]any
		k      int
		want   PredictRequest
	}{
		{"one click", map[string]any{"foreground": [][]int{{20, 20, 15}}, "background": [][]int{}, "label": "liver", "slice": 15}, 15,
			PredictRequest{Points: []Point{{X: 29, Y: 24}}, Multimask: true}},
		{"click without slice", map[string]any{"foreground": [][]int{{30, 12, 8}}}, 8,
			PredictRequest{Points: []Point{{X: 19, Y: 32}}, Multimask: true}},
		{"clicks on two slices", map[string]any{"foreground": [][]int{{30, 12, 8}, {10, 10, 9}}, "background": [][]int{{25, 25, 8}}, "slice": 8}, 8,
			PredictRequest{Points: []Point{{X: 19, Y: 32}, {X: 24, Y: 19, Label: intp(0)}}}},
		{"roi and a click", map[string]any{"foreground": [][]int{{20, 20, 15}}, "roi": []int{30, 10, 15, 35, 14, 16}, "slice": 15}, 15,
			PredictRequest{Points: []Point{{X: 29, Y: 24}}, Boxes: [][]float64{{19, 9, 39, 29}}}},
		{"roi alone", map[string]any{"roi": []int{10, 30, 15, 35, 20, 22}}, 21,
			PredictRequest{Boxes: [][]float64{{19, 9, 39, 29}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := mlInfer(t, ts.URL, mlInteractiveModel, "ct_crop", "", c.params)
			if !strings.HasSuffix(res.filename, ".nii.gz") {
				t.Errorf("file name %q", res.filename)
			}
			checkGeometry(t, res.label.Header, hdr)
			got := labelVoxels(t, res.label)
			for v := range got {
				if v[2] != c.k {
					t.Fatalf("voxel %v labelled, outside slice %d", v, c.k)
				}
			}
			want := v1Voxels(t, ts.URL, v1, c.k, c.want)
			if len(got) != len(want) {
				t.Fatalf("%d voxels labelled, /v1's mask of the same prompt covers %d", len(got), len(want))
			}
			for v := range want {
				if !got[v] {
					t.Fatalf("voxel %v is in /v1's mask, not in the label", v)
				}
			}
			if len(got) > 0 {
				nonEmpty++
			}
			p := res.params
			names, _ := p["label_names"].(map[string]any)
			cls, _ := p["class"].(string)
			if len(names) != 1 || p["iou"] == nil || p["confidence"] == nil || !contains(testClasses, cls) || p["slice"] != float64(c.k) {
				t.Errorf("params %v", p)
			}
			if l, ok := c.params["label"]; ok && names[l.(string)] != float64(1) {
				t.Errorf("label_names %v, want the segment's name %v", names, l)
			}
			if _, ok := c.params["label"]; !ok && names[cls] != float64(1) {
				t.Errorf("label_names %v, want the predicted class %q", names, cls)
			}
		})
	}
	if nonEmpty == 0 {
		t.Errorf("every mask was empty: the comparison with /v1 checked nothing")
	}
	if res := mlInfer(t, ts.URL, mlInteractiveModel, "ct_crop", "", map[string]any{"foreground": [][]int{{30, 12, 8}, {10, 10, 9}}, "slice": 8}); res.params["prompt"].(map[string]any)["ignored_points"] != float64(1) {
		t.Errorf("a click on another slice should be reported as ignored: %v", res.params["prompt"])
	}

	// output=json and output=image.
	pj, _ := json.Marshal(map[string]any{"foreground": [][]int{{20, 20, 15}}})
	ct, body := mlMultipart([]mlField{{"params", string(pj)}}, nil)
	code, data, _ := mlDo(t, "POST", ts.URL+"/infer/segsam?image=ct_crop&output=json", ct, body)
	var pm map[string]any
	if code != 200 || json.Unmarshal(data, &pm) != nil || pm["label_names"] == nil {
		t.Errorf("output=json: %d %s", code, data)
	}
	code, data, h := mlDo(t, "POST", ts.URL+"/infer/segsam?image=ct_crop&output=image", ct, body)
	if img, err := nifti.Decode(bytes.NewReader(data)); code != 200 || err != nil || !strings.Contains(h.Get("Content-Disposition"), ".nii.gz") {
		t.Errorf("output=image: %d %v %q", code, err, h.Get("Content-Disposition"))
	} else {
		checkGeometry(t, img.Header, hdr)
	}

	// A PNG study: [x, y] clicks, a W x H x 1 label.
	res := mlInfer(t, ts.URL, mlInteractiveModel, "slice", "", map[string]any{"foreground": [][]int{{100, 120}}})
	if d := res.label.Dim; d[1] != 256 || d[2] != 256 || d[3] != 1 {
		t.Fatalf("PNG label dims %v", d)
	}
	id2 := upload(t, ts.URL, demoImage, "?precompute=false").ID
	pr := predict(t, ts.URL, id2, PredictRequest{Points: []Point{{X: 100, Y: 120}}, Multimask: true, Format: "rle"})
	m, _ := pr.Prompts[0].Masks[pr.Prompts[0].Best].RLE.Decode()
	vals := labelValues(t, res.label)
	for i, on := range m {
		if on != (vals[i] == 1) {
			t.Fatalf("PNG label differs from /v1's mask at pixel %d", i)
		}
	}

	// An uploaded "file" instead of a datastore image.
	ct2, body2 := mlMultipart([]mlField{{"params", string(pj)}}, []mlFile{{"file", "/tmp/x.nii.gz", readFile(t, demoVolume)}})
	code, data, _ = mlDo(t, "POST", ts.URL+"/infer/segsam?output=json", ct2, body2)
	if code != 200 {
		t.Errorf("infer on an uploaded file: %d %s", code, data)
	}
}

// TestMLInferAuto checks the automatic model: the segmenter's label map on
// the image's grid, with its label_names.
func TestMLInferAuto(t *testing.T) {
	seg := &fakeSegmenter{}
	s, ts := newTestServer(t, false, Config{StudiesDir: studiesDir(t), DisablePrecompute: true, Segmenter: seg})
	res := mlInfer(t, ts.URL, mlAutoModel, "ct_crop", "", map[string]any{})
	checkGeometry(t, res.label.Header, ctHeader(t))
	names, _ := res.params["label_names"].(map[string]any)
	if names["bone"] != float64(1) || names["soft_tissue"] != float64(2) || seg.calls != 1 {
		t.Errorf("label_names %v, calls %d", names, seg.calls)
	}
	img, err := s.studyImage("ct_crop")
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := seg.SegmentVolume(t.Context(), img.Volume)
	got := labelValues(t, res.label)
	bone := 0
	for i := range want {
		if got[i] != float32(want[i]) {
			t.Fatalf("voxel %d: %v, the segmenter said %d", i, got[i], want[i])
		}
		if want[i] == 1 {
			bone++
		}
	}
	if bone == 0 {
		t.Errorf("no bone voxel in the test CT: the check is empty")
	}
	_, code, body := mlInferRaw(t, ts.URL, mlAutoModel, "slice", "", map[string]any{})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "2-D") {
		t.Errorf("automatic model on a PNG: %d %s", code, body)
	}
}

// TestMLBuiltinLiver is the acceptance path with the built-in
// model, through the client's exact requests: upload a CT, click a liver
// voxel (the centre of the ground truth's largest liver slice), get back a
// label of the volume's geometry with that voxel labelled and only that
// slice filled, save it as final and see it in the datastore.
func TestMLBuiltinLiver(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the built-in model")
	}
	m, err := models.Default(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(segsam.NewPredictor(m), Config{StudiesDir: t.TempDir(), DisablePrecompute: true})
	if err != nil {
		t.Fatal(err)
	}
	ts := newHTTPTest(t, s)
	var info MLInfo
	mlJSON(t, "GET", ts.URL+"/info/", "", nil, &info)
	if !contains(info.Labels, "liver") {
		t.Fatalf("the built-in model's labels lack liver: %v", info.Labels)
	}
	ct, body := mlMultipart([]mlField{{"params", `{"client_id": null}`}}, []mlFile{{"file", "/tmp/tmp1.nii.gz", readFile(t, demoVolume)}})
	mlJSON(t, "PUT", ts.URL+"/datastore/?image=ct", ct, body, nil)

	// The ground truth: liver is value 5 (ct_crop_labels.json).
	gt, err := nifti.Decode(bytes.NewReader(readFile(t, "../testdata/medimg/nifti/ct_crop_label.nii.gz")))
	if err != nil {
		t.Fatal(err)
	}
	gv := labelValues(t, gt)
	const nx, ny, nz = 50, 45, 30
	bestK, bestN := 0, 0
	for k := 0; k < nz; k++ {
		n := 0
		for p := 0; p < nx*ny; p++ {
			if gv[k*nx*ny+p] == 5 {
				n++
			}
		}
		if n > bestN {
			bestK, bestN = k, n
		}
	}
	var si, sj float64
	for p := 0; p < nx*ny; p++ {
		if gv[bestK*nx*ny+p] == 5 {
			si, sj = si+float64(p%nx), sj+float64(p/nx)
		}
	}
	click := [3]int{int(si/float64(bestN) + 0.5), int(sj/float64(bestN) + 0.5), bestK}
	if gv[click[0]+nx*(click[1]+ny*click[2])] != 5 {
		t.Fatalf("the liver's centre %v is not liver", click)
	}
	res := mlInfer(t, ts.URL, mlInteractiveModel, "ct", "", map[string]any{"foreground": [][3]int{click}, "background": []int{}, "label": "liver", "slice": click[2]})
	checkGeometry(t, res.label.Header, ctHeader(t))
	got := labelVoxels(t, res.label)
	if !got[click] {
		t.Fatalf("the clicked liver voxel %v is not labelled (%d voxels labelled; params %v)", click, len(got), res.params)
	}
	inter := 0
	for v := range got {
		if v[2] != click[2] {
			t.Fatalf("voxel %v labelled outside slice %d", v, click[2])
		}
		if gv[v[0]+nx*(v[1]+ny*v[2])] == 5 {
			inter++
		}
	}
	dice := 2 * float64(inter) / float64(len(got)+bestN)
	t.Logf("click %v: %d voxels labelled, Dice %.3f against the liver on slice %d (%d voxels); class %v (%.3f), IoU %.3f",
		click, len(got), dice, click[2], bestN, res.params["class"], res.params["confidence"], res.params["iou"])
	// The built-in model is a small demonstration model (a point gives DSC
	// 48 on its validation data): ask for a mask that overlaps the liver
	// well above chance, not for a good segmentation.
	if dice < 0.3 {
		t.Errorf("Dice %.3f against the liver: the mask is not on the liver", dice)
	}

	// Save it as final and see it in the datastore.
	labelBytes, err := encodeNIfTI(res.label)
	if err != nil {
		t.Fatal(err)
	}
	ct, body = mlMultipart([]mlField{{"params", `{"label_info": [{"name": "liver", "idx": 1}], "model": "segsam", "client_id": null}`}}, []mlFile{{"label", "/tmp/" + res.filename, labelBytes}})
	mlJSON(t, "PUT", ts.URL+"/datastore/label?image=ct", ct, body, nil)
	var all mlIndex
	mlJSON(t, "GET", ts.URL+"/datastore/?output=all", "", nil, &all)
	if l := all.Objects["ct"].Labels["final"]; l == nil || l.Info["model"] != "segsam" {
		t.Errorf("final label not in the datastore: %+v", all.Objects["ct"])
	}
}

// encodeNIfTI encodes a NIfTI image gzipped, as Slicer saves a .nii.gz.
func encodeNIfTI(img *nifti.Image) ([]byte, error) {
	return writeNIfTIBytes("l.nii.gz", func(path string) error { return nifti.Write(path, img) })
}

// TestMLInferPlainSAM checks the interactive model on a plain SAM
// checkpoint: no labels in /info/, the segment's name (or "segsam") in
// label_names, no class in params.
func TestMLInferPlainSAM(t *testing.T) {
	_, ts := newTestServer(t, true, Config{StudiesDir: studiesDir(t), DisablePrecompute: true})
	var info MLInfo
	mlJSON(t, "GET", ts.URL+"/info/", "", nil, &info)
	if len(info.Labels) != 0 || info.Models[mlInteractiveModel].Type != "deepgrow" {
		t.Errorf("info of a plain SAM: %+v", info)
	}
	res := mlInfer(t, ts.URL, mlInteractiveModel, "ct_crop", "", map[string]any{"foreground": [][]int{{20, 20, 15}}})
	names, _ := res.params["label_names"].(map[string]any)
	if names["segsam"] != float64(1) || res.params["class"] != nil {
		t.Errorf("params %v", res.params)
	}
	checkGeometry(t, res.label.Header, ctHeader(t))
}

// TestMLInferNRRD checks the NRRD answer OHIF asks for (output=image,
// result_extension .nrrd, result_compress false): the same voxels as the
// NIfTI answer, raw uint8 in file order, the grid's geometry in LPS.
func TestMLInferNRRD(t *testing.T) {
	_, ts := newTestServer(t, false, Config{StudiesDir: studiesDir(t), DisablePrecompute: true})
	click := map[string]any{"foreground": [][]int{{20, 20, 15}}}
	want := mlInfer(t, ts.URL, mlInteractiveModel, "ct_crop", "", click)
	pj, _ := json.Marshal(map[string]any{"foreground": [][]int{{20, 20, 15}}, "result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": false, "restore_label_idx": false})
	ct, body := mlMultipart([]mlField{{"params", string(pj)}}, nil)
	code, data, h := mlDo(t, "POST", ts.URL+"/infer/segsam?image=ct_crop&output=image", ct, body)
	if code != 200 || !strings.Contains(h.Get("Content-Disposition"), ".nrrd") {
		t.Fatalf("NRRD answer: %d %q %s", code, h.Get("Content-Disposition"), data[:min(len(data), 200)])
	}
	head, raw, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		t.Fatalf("no NRRD header end")
	}
	hdr := hdrFields(string(head))
	if !strings.HasPrefix(string(head), "NRRD000") || hdr["type"] != "uint8" || hdr["sizes"] != "50 45 30" || hdr["encoding"] != "raw" ||
		hdr["space"] != "left-posterior-superior" || hdr["space directions"] != "(-6,0,0) (0,-6,0) (0,0,3)" {
		t.Errorf("NRRD header %q", head)
	}
	vals := labelValues(t, want.label)
	if len(raw) != len(vals) {
		t.Fatalf("NRRD data of %d bytes for %d voxels", len(raw), len(vals))
	}
	for i, v := range vals {
		if float32(raw[i]) != v {
			t.Fatalf("voxel %d: NRRD %d, NIfTI %v", i, raw[i], v)
		}
	}
	_, code, body2 := mlInferRaw(t, ts.URL, mlInteractiveModel, "ct_crop", "", map[string]any{"foreground": [][]int{{20, 20, 15}}, "result_extension": ".mha"})
	if code != 400 || !strings.Contains(string(body2), "result_extension") {
		t.Errorf("unsupported result_extension: %d %s", code, body2)
	}
}

// hdrFields parses NRRD "key: value" lines.
func hdrFields(head string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(head, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			out[k] = v
		}
	}
	return out
}
