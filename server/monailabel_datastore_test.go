package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/medimg/dicom"
	"github.com/segsam/segsam/medimg/nifti"
)

// fakeSegmenter labels voxels by intensity: 1 "bone" above 200 HU, 2
// "soft_tissue" between -100 and 100 HU. It stands in for the
// label-everything generator, which the server only calls.
type fakeSegmenter struct{ calls int }

func (f *fakeSegmenter) SegmentVolume(ctx context.Context, vol *medimg.Volume) ([]uint16, map[string]int, error) {
	f.calls++
	out := make([]uint16, len(vol.Data))
	for i, v := range vol.Data {
		switch {
		case v > 200:
			out[i] = 1
		case v > -100 && v < 100:
			out[i] = 2
		}
	}
	return out, map[string]int{"bone": 1, "soft_tissue": 2}, nil
}

// TestMLInfo checks GET /info/ as Slicer's module reads it: the
// interactive model (deepgrow, dimension 2) with the model's classes as
// labels, the automatic one (segmentation, dimension 3) only with a
// segmenter, the strategies and the datastore counts.
func TestMLInfo(t *testing.T) {
	for _, withSeg := range []bool{false, true} {
		cfg := Config{StudiesDir: studiesDir(t), DisablePrecompute: true}
		if withSeg {
			cfg.Segmenter = &fakeSegmenter{}
		}
		_, ts := newTestServer(t, false, cfg)
		var info MLInfo
		mlJSON(t, "GET", ts.URL+"/info/", "", nil, &info)
		if info.Name != "segsam" || info.Version == "" {
			t.Errorf("name %q version %q", info.Name, info.Version)
		}
		if strings.Join(info.Labels, ",") != strings.Join(testClasses, ",") {
			t.Errorf("labels %v, want the model's classes %v", info.Labels, testClasses)
		}
		m, ok := info.Models[mlInteractiveModel]
		if !ok || m.Type != "deepgrow" || m.Dimension != 2 || m.Labels["liver"] != 1 || m.Description == "" {
			t.Errorf("interactive model %+v", m)
		}
		a, ok := info.Models[mlAutoModel]
		if ok != withSeg || ok && (a.Type != "segmentation" || a.Dimension != 3) {
			t.Errorf("with segmenter %v: automatic model %v %+v", withSeg, ok, a)
		}
		if _, ok := info.Strategies["random"]; !ok {
			t.Errorf("strategies %v", info.Strategies)
		}
		if _, ok := info.Strategies["first"]; !ok {
			t.Errorf("strategies %v", info.Strategies)
		}
		if info.Datastore.Total != 3 || info.Datastore.Completed != 0 {
			t.Errorf("datastore %+v, want 3 studies, none labelled", info.Datastore)
		}
	}
}

// TestMLDatastore walks the datastore calls of the client and of Slicer's
// module: the studies found at start (NIfTI, DICOM series folder, PNG),
// upload, download, checksum, info, saving a final label, and that all of
// it is on disk in MONAI Label's layout and survives a restart.
func TestMLDatastore(t *testing.T) {
	dir := studiesDir(t)
	_, ts := newTestServer(t, false, Config{StudiesDir: dir, DisablePrecompute: true})
	var all mlIndex
	mlJSON(t, "GET", ts.URL+"/datastore/?output=all", "", nil, &all)
	for id, ext := range map[string]string{"ct_crop": ".nii.gz", "slice": ".png", "dicom_ct": ""} {
		if o := all.Objects[id]; o == nil || o.Image.Ext != ext {
			t.Errorf("study %s: %+v, want ext %q", id, o, ext)
		}
	}

	// upload_image(image_in, image_id): PUT /datastore/?image=ID, with the
	// temporary file's full path as the part's file name.
	ct := readFile(t, demoVolume)
	ctype, body := mlMultipart([]mlField{{"params", `{"client_id": null}`}}, []mlFile{{"file", "/tmp/tmpab12cd.nii.gz", ct}})
	var up map[string]string
	mlJSON(t, "PUT", ts.URL+"/datastore/?image=patient%201", ctype, body, &up)
	if up["image"] != "patient 1" {
		t.Fatalf("upload answer %v", up)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "patient 1.nii.gz")); err != nil || !bytes.Equal(got, ct) {
		t.Fatalf("uploaded file on disk: %v (equal %v)", err, bytes.Equal(got, ct))
	}
	code, got, h := mlDo(t, "GET", ts.URL+"/datastore/image?image=patient+1", "", nil)
	if code != 200 || !bytes.Equal(got, ct) || !strings.Contains(h.Get("Content-Disposition"), `filename="patient_1.nii.gz"`) {
		t.Errorf("download: %d, %d bytes, %q", code, len(got), h.Get("Content-Disposition"))
	}
	sum := sha256.Sum256(ct)
	if code, _, _ := mlDo(t, "HEAD", ts.URL+"/datastore/image?image=patient+1&check_sum=SHA256:"+hex.EncodeToString(sum[:]), "", nil); code != 200 {
		t.Errorf("HEAD with the right checksum: %d", code)
	}
	if code, _, _ := mlDo(t, "HEAD", ts.URL+"/datastore/image?image=patient+1&check_sum=SHA256:00", "", nil); code != 404 {
		t.Errorf("HEAD with a wrong checksum: %d", code)
	}
	var info map[string]any
	mlJSON(t, "GET", ts.URL+"/datastore/image/info?image=patient+1", "", nil, &info)
	if info["name"] != "patient 1.nii.gz" || info["path"] != filepath.Join(dir, "patient 1.nii.gz") {
		t.Errorf("image info %v", info)
	}

	// A DICOM series folder downloads as NIfTI with the series' geometry.
	code, got, h = mlDo(t, "GET", ts.URL+"/datastore/image?image=dicom_ct", "", nil)
	if code != 200 || !strings.Contains(h.Get("Content-Disposition"), "dicom_ct.nii.gz") {
		t.Fatalf("DICOM download: %d %q %s", code, h.Get("Content-Disposition"), got[:min(len(got), 200)])
	}
	dv, err := decodeVolume(got, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	series, err := medimg.ReadVolume(filepath.Join(dir, "dicom_ct"))
	if err != nil {
		t.Fatal(err)
	}
	if !dv.SameGrid(series, 1e-3) || dv.Data[7] != series.Data[7] {
		t.Errorf("DICOM as NIfTI: %v %v vs series %v %v", dv.Dim, dv.Affine, series.Dim, series.Affine)
	}

	// OHIF names a DICOM series by its SeriesInstanceUID.
	sr, err := dicom.ReadSeries(filepath.Join(dir, "dicom_ct"))
	if err != nil || sr.SeriesInstanceUID == "" {
		t.Fatalf("test series UID: %v %q", err, sr.SeriesInstanceUID)
	}
	var di map[string]any
	mlJSON(t, "GET", ts.URL+"/datastore/image/info?image="+sr.SeriesInstanceUID, "", nil, &di)
	if di["SeriesInstanceUID"] != sr.SeriesInstanceUID || di["name"] != "dicom_ct" {
		t.Errorf("info by SeriesInstanceUID: %v", di)
	}
	res := mlInfer(t, ts.URL, mlInteractiveModel, sr.SeriesInstanceUID, "", map[string]any{"foreground": [][]int{{5, 4, 2}}})
	if got := res.label.Dim; got[1] != 12 || got[2] != 10 || got[3] != 6 {
		t.Errorf("label of the series by UID: dims %v", got)
	}

	// save_label(image_id, label_in, tag="final", params): a label map on
	// the image's grid, written to labels/final/ID.nii.gz.
	lab := readFile(t, "../testdata/medimg/nifti/ct_crop_label.nii.gz")
	ctype, body = mlMultipart([]mlField{{"params", `{"label_info": [{"name": "liver", "idx": 5}], "client_id": null}`}}, []mlFile{{"label", "/tmp/tmpzz.nii.gz", lab}})
	var saved map[string]string
	mlJSON(t, "PUT", ts.URL+"/datastore/label?image=patient+1&tag=final", ctype, body, &saved)
	if saved["image"] != "patient 1" || saved["label"] != "patient 1" {
		t.Errorf("save label answer %v", saved)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "labels", "final", "patient 1.nii.gz")); err != nil || !bytes.Equal(got, lab) {
		t.Fatalf("label on disk: %v", err)
	}
	code, got, _ = mlDo(t, "GET", ts.URL+"/datastore/label?label=patient+1&tag=final", "", nil)
	if code != 200 || !bytes.Equal(got, lab) {
		t.Errorf("download label: %d", code)
	}
	var st MLDatastoreStats
	mlJSON(t, "GET", ts.URL+"/datastore/", "", nil, &st)
	if st.Total != 4 || st.Completed != 1 || st.LabelTags["final"] != 1 {
		t.Errorf("stats %+v", st)
	}
	var li map[string]any
	mlJSON(t, "GET", ts.URL+"/datastore/label/info?label=patient+1&tag=final", "", nil, &li)
	if li["name"] != "patient 1.nii.gz" || li["label_info"] == nil {
		t.Errorf("label info %v", li)
	}

	// A restart finds everything again, from datastore_v2.json and the files.
	var idx mlIndex
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, mlIndexFile)), &idx); err != nil {
		t.Fatal(err)
	}
	if idx.Objects["patient 1"].Labels["final"] == nil {
		t.Errorf("%s lacks the label: %s", mlIndexFile, readFile(t, filepath.Join(dir, mlIndexFile)))
	}
	_, ts2 := newTestServer(t, false, Config{StudiesDir: dir, DisablePrecompute: true})
	mlJSON(t, "GET", ts2.URL+"/datastore/?output=stats", "", nil, &st)
	if st.Total != 4 || st.Completed != 1 {
		t.Errorf("after restart: %+v", st)
	}
	var train []map[string]string
	mlJSON(t, "GET", ts2.URL+"/datastore/?output=train", "", nil, &train)
	if len(train) != 1 || train[0]["label"] != filepath.Join(dir, "labels", "final", "patient 1.nii.gz") {
		t.Errorf("train list %v", train)
	}

	// Removing the image removes its label too.
	mlJSON(t, "DELETE", ts2.URL+"/datastore/image?id=patient+1", "", nil, nil)
	for _, p := range []string{filepath.Join(dir, "patient 1.nii.gz"), filepath.Join(dir, "labels", "final", "patient 1.nii.gz")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	if code, _, _ := mlDo(t, "GET", ts2.URL+"/datastore/image?image=patient+1", "", nil); code != 404 {
		t.Errorf("removed image: %d", code)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".upload-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestMLDatastoreIndexErrors checks start-up on a broken or foreign index.
func TestMLDatastoreIndexErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, mlIndexFile), []byte("{not json"), 0o644)
	if _, err := openDatastore(dir); err == nil || !strings.Contains(err.Error(), "not a datastore index") {
		t.Errorf("broken index: %v", err)
	}
	os.WriteFile(filepath.Join(dir, mlIndexFile), []byte(`{"images_dir": "imgs", "labels_dir": "labels", "objects": {}}`), 0o644)
	if _, err := openDatastore(dir); err == nil || !strings.Contains(err.Error(), "default layout") {
		t.Errorf("other layout: %v", err)
	}
	// An index entry whose file is gone is dropped; a label without its
	// image is ignored.
	os.WriteFile(filepath.Join(dir, mlIndexFile), []byte(`{"images_dir": ".", "labels_dir": "labels", "objects": {"gone": {"image": {"ext": ".nii.gz", "info": {}}, "labels": {}}}}`), 0o644)
	os.MkdirAll(filepath.Join(dir, "labels", "final"), 0o755)
	os.WriteFile(filepath.Join(dir, "labels", "final", "orphan.nii.gz"), []byte("x"), 0o644)
	d, err := openDatastore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.Total != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestMLBinaryLabel checks OHIF's save_label: the label map's raw voxel
// buffer as "label.bin", stored as a NIfTI label with the image's geometry.
func TestMLBinaryLabel(t *testing.T) {
	dir := studiesDir(t)
	_, ts := newTestServer(t, false, Config{StudiesDir: dir, DisablePrecompute: true})
	const n = 50 * 45 * 30
	raw := make([]byte, n)
	for i := 0; i < n; i += 7 {
		raw[i] = byte(1 + i%3)
	}
	ct, body := mlMultipart([]mlField{{"params", `{"label_info": []}`}}, []mlFile{{"label", "label.bin", raw}})
	mlJSON(t, "PUT", ts.URL+"/datastore/label?image=ct_crop", ct, body, nil)
	img, err := nifti.Read(filepath.Join(dir, "labels", "final", "ct_crop.nii.gz"))
	if err != nil {
		t.Fatal(err)
	}
	checkGeometry(t, img.Header, ctHeader(t))
	for i, v := range labelValues(t, img) {
		if v != float32(raw[i]) {
			t.Fatalf("voxel %d: %v, sent %d", i, v, raw[i])
		}
	}
	ct, body = mlMultipart(nil, []mlFile{{"label", "label.bin", raw[:n-1]}})
	if code, msg, _ := mlDo(t, "PUT", ts.URL+"/datastore/label?image=ct_crop", ct, body); code != 400 || !strings.Contains(string(msg), "voxels") {
		t.Errorf("short .bin label: %d %s", code, msg)
	}
}
