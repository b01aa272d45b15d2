package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image"
	"image/png"
	"net/http"
	"strings"
	"testing"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/segsam"
)

const phantomVolume = "../testdata/segment/phantom.nii.gz" // 40x36x4 synthetic CT with labels

func segmentAll(t *testing.T, base, id, body string) (int, []byte, http.Header) {
	t.Helper()
	return do(t, "POST", base+"/v1/images/"+id+"/segment-all", "application/json", []byte(body))
}

// TestSegmentAllImage labels a 2-D image: the PNG label map's IDs and
// pixel counts match the class table, and the RLE format gives the same
// masks.
func TestSegmentAllImage(t *testing.T) {
	_, ts := newTestServer(t, false, Config{DisablePrecompute: true})
	img := upload(t, ts.URL, demoImage, "")
	req := `{"points_per_side": 3, "pred_iou_thresh": 0, "stability_thresh": 0}`
	code, body, _ := segmentAll(t, ts.URL, img.ID, req)
	if code != http.StatusOK {
		t.Fatalf("segment-all: %d %s", code, body)
	}
	var resp SegmentAllResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Width != 256 || resp.Height != 256 || resp.Candidates != 27 || len(resp.Classes) == 0 || len(resp.Presence) != len(testClasses) {
		t.Fatalf("answer %dx%d, %d candidates, classes %+v", resp.Width, resp.Height, resp.Candidates, resp.Classes)
	}
	data, err := base64.StdEncoding.DecodeString(resp.LabelMapPNG)
	if err != nil {
		t.Fatal(err)
	}
	pic, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	g, ok := pic.(*image.Gray)
	if !ok || g.Bounds().Dx() != 256 {
		t.Fatalf("label map PNG %T %v", pic, pic.Bounds())
	}
	counts := map[int]int{}
	for _, v := range g.Pix {
		if v != 0 {
			counts[int(v)]++
		}
	}
	if len(counts) != len(resp.Classes) {
		t.Fatalf("label values %v, classes %+v", counts, resp.Classes)
	}
	for _, c := range resp.Classes {
		if counts[c.ID] != c.Pixels || c.Name != testClasses[c.ID-1] {
			t.Errorf("class %+v: %d pixels in the PNG", c, counts[c.ID])
		}
	}
	// RLE: one mask per class, equal to the PNG's pixels of that ID.
	code, body, _ = segmentAll(t, ts.URL, img.ID, `{"points_per_side": 3, "pred_iou_thresh": 0, "stability_thresh": 0, "format": "rle"}`)
	if code != http.StatusOK {
		t.Fatalf("segment-all rle: %d %s", code, body)
	}
	var rresp SegmentAllResponse
	if err := json.Unmarshal(body, &rresp); err != nil {
		t.Fatal(err)
	}
	if len(rresp.Classes) != len(resp.Classes) || rresp.LabelMapPNG != "" {
		t.Fatalf("rle answer %+v", rresp.Classes)
	}
	for _, c := range rresp.Classes {
		mask, err := c.RLE.Decode()
		if err != nil {
			t.Fatal(err)
		}
		for p, on := range mask {
			if on != (int(g.Pix[p]) == c.ID) {
				t.Fatalf("class %d: RLE and PNG differ at pixel %d", c.ID, p)
			}
		}
	}
}

// TestSegmentAllVolume labels a whole volume (NIfTI answer on the
// volume's grid, class table in a header) and one slice of it.
func TestSegmentAllVolume(t *testing.T) {
	_, ts := newTestServer(t, false, Config{DisablePrecompute: true})
	vol := upload(t, ts.URL, phantomVolume, "")
	code, body, hdr := segmentAll(t, ts.URL, vol.ID, `{"volume": true, "axes": ["axial"], "points_per_side": 2, "pred_iou_thresh": 0, "stability_thresh": 0}`)
	if code != http.StatusOK {
		t.Fatalf("segment-all volume: %d %s", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/gzip" {
		t.Errorf("content type %q", ct)
	}
	got, err := decodeVolume(body, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	in, err := medimg.ReadVolume(phantomVolume)
	if err != nil {
		t.Fatal(err)
	}
	if !got.SameGrid(in, 1e-5) {
		t.Fatalf("label map grid %v %v, volume %v %v", got.Dim, got.Affine, in.Dim, in.Affine)
	}
	var table []segsam.ClassEntry
	if err := json.Unmarshal([]byte(hdr.Get("X-Segsam-Classes")), &table); err != nil {
		t.Fatalf("class header %q: %v", hdr.Get("X-Segsam-Classes"), err)
	}
	counts := map[int]int{}
	for _, v := range got.Data {
		if v != 0 {
			counts[int(v)]++
		}
	}
	if len(table) == 0 || len(counts) != len(table) {
		t.Fatalf("label values %v, class table %+v", counts, table)
	}
	for _, c := range table {
		if counts[c.ID] != c.Pixels || c.VolumeML <= 0 {
			t.Errorf("class %+v: %d voxels", c, counts[c.ID])
		}
	}
	code, body, _ = segmentAll(t, ts.URL, vol.ID, `{"slice": "axial:2", "points_per_side": 2, "pred_iou_thresh": 0, "stability_thresh": 0}`)
	if code != http.StatusOK {
		t.Fatalf("segment-all slice: %d %s", code, body)
	}
	var resp SegmentAllResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Slice != "axial:2" || resp.Width != 40 || resp.Height != 36 {
		t.Errorf("slice answer %q %dx%d", resp.Slice, resp.Width, resp.Height)
	}
}

func TestSegmentAllErrors(t *testing.T) {
	_, ts := newTestServer(t, false, Config{DisablePrecompute: true})
	img := upload(t, ts.URL, demoImage, "")
	vol := upload(t, ts.URL, phantomVolume, "")
	cases := []struct {
		name, id, body string
		code           int
		want           string
	}{
		{"unknown class", img.ID, `{"classes": ["liver", "unicorn"]}`, 400, "unknown class unicorn"},
		{"bad format", img.ID, `{"format": "gif"}`, 400, "format"},
		{"volume of a 2-D image", img.ID, `{"volume": true}`, 400, "2-D image"},
		{"axes without volume", vol.ID, `{"slice": "axial:1", "axes": ["axial"]}`, 400, "axes apply"},
		{"slice and volume", vol.ID, `{"slice": "axial:1", "volume": true}`, 400, "not both"},
		{"volume needs a slice", vol.ID, `{}`, 400, "give a slice"},
		{"bad axis", vol.ID, `{"volume": true, "axes": ["up"]}`, 400, "unknown axis"},
		{"too many points", img.ID, `{"points_per_side": 100}`, 400, "at most 64"},
		{"bad threshold", img.ID, `{"pred_iou_thresh": 1.5}`, 400, "predicted-IoU threshold"},
		{"unknown field", img.ID, `{"points": 3}`, 400, "malformed JSON"},
		{"nothing found", img.ID, `{"points_per_side": 2, "pred_iou_thresh": 0.999, "stability_thresh": 1}`, 422, "nothing found"},
		{"unknown image", "nope", `{}`, 404, "unknown image"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body, _ := segmentAll(t, ts.URL, c.id, c.body)
			if code != c.code || !strings.Contains(string(body), c.want) {
				t.Errorf("%d %s; want %d with %q", code, body, c.code, c.want)
			}
		})
	}
}
