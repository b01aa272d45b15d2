package segsam

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/sam"
)

func TestBuildPointGrid(t *testing.T) {
	// np.linspace(1/(2n), 1-1/(2n), n) on both axes, x fastest.
	for _, n := range []int{1, 2, 4, 32} {
		g := sam.BuildPointGrid(n)
		if len(g) != n*n {
			t.Fatalf("n=%d: %d points", n, len(g))
		}
		off := 1 / (2 * float64(n))
		for i, p := range g {
			x, y := i%n, i/n
			want := [2]float64{0.5, 0.5}
			if n > 1 {
				step := (1 - 2*off) / float64(n-1)
				want = [2]float64{off + float64(x)*step, off + float64(y)*step}
			}
			if math.Abs(p[0]-want[0]) > 1e-12 || math.Abs(p[1]-want[1]) > 1e-12 {
				t.Fatalf("n=%d point %d = %v, want %v", n, i, p, want)
			}
		}
	}
	layers := sam.BuildAllLayerPointGrids(16, 2, 2)
	if len(layers) != 3 || len(layers[0]) != 256 || len(layers[1]) != 64 || len(layers[2]) != 16 {
		t.Fatalf("layer grids %d/%d/%d", len(layers[0]), len(layers[1]), len(layers[2]))
	}
}

func TestGenerateCropBoxes(t *testing.T) {
	// SAM's generate_crop_boxes((100, 200), 1, 512/1500): short side 100,
	// overlap int(0.3413*100*1) = 34, crop_w ceil((34+200)/2) = 117,
	// crop_h ceil((34+100)/2) = 67, x0 in {0, 83}, y0 in {0, 33}.
	boxes, layers := sam.GenerateCropBoxes(100, 200, 1, 512.0/1500)
	want := []sam.CropBox{{0, 0, 200, 100}, {0, 0, 117, 67}, {0, 33, 117, 100}, {83, 0, 200, 67}, {83, 33, 200, 100}}
	if len(boxes) != len(want) {
		t.Fatalf("boxes %v", boxes)
	}
	for i := range want {
		if boxes[i] != want[i] {
			t.Errorf("box %d = %v, want %v", i, boxes[i], want[i])
		}
	}
	if layers[0] != 0 || layers[4] != 1 {
		t.Errorf("layers %v", layers)
	}
}

func TestStabilityScore(t *testing.T) {
	cases := []struct {
		logits []float32
		want   float32
	}{
		{[]float32{3, 3, 0.5, -0.5, -3}, 2.0 / 4}, // > 1: 2; > -1: 4
		{[]float32{-5, -5}, 0},                    // empty looser mask
		{[]float32{5, 5, 5}, 1},
	}
	for _, c := range cases {
		if got := StabilityScore(c.logits, 0, 1); got != c.want {
			t.Errorf("StabilityScore(%v) = %v, want %v", c.logits, got, c.want)
		}
	}
}

func TestBoxIoUAndNMS(t *testing.T) {
	if got := BoxIoU([4]int{0, 0, 10, 10}, [4]int{5, 0, 15, 10}); math.Abs(got-50.0/150) > 1e-12 {
		t.Errorf("BoxIoU = %v", got)
	}
	if got := BoxIoU([4]int{0, 0, 2, 2}, [4]int{5, 5, 8, 8}); got != 0 {
		t.Errorf("disjoint BoxIoU = %v", got)
	}
	objs := []Object{
		{Box: [4]int{0, 0, 10, 10}, PredIoU: 0.5},
		{Box: [4]int{1, 0, 11, 10}, PredIoU: 0.9}, // overlaps the first one (IoU 0.82): wins
		{Box: [4]int{20, 20, 30, 30}, PredIoU: 0.1},
	}
	kept := nms(objs, 0.7, func(o *Object) float64 { return float64(o.PredIoU) })
	if len(kept) != 2 || kept[0].PredIoU != 0.9 || kept[1].PredIoU != 0.1 {
		t.Fatalf("nms kept %+v", kept)
	}
}

func TestObjectFromLogits(t *testing.T) {
	// 4x3 plane with two pixels above 0.
	plane := []float32{
		-1, -1, -1, -1,
		-1, 2, -1, -1,
		-1, -1, 0.5, -1,
	}
	ob, ok := objectFromLogits(plane, 4, 3, 0)
	if !ok || ob.Box != [4]int{1, 1, 2, 2} || ob.Area != 2 {
		t.Fatalf("object %+v %v", ob, ok)
	}
	if !ob.At(1, 1) || ob.At(2, 1) || !ob.At(2, 2) || ob.At(0, 0) {
		t.Errorf("At wrong: %v", ob.Mask)
	}
	full := ob.FullMask(3, 4)
	if !full[1*4+1] || !full[2*4+2] || countTrue(full) != 2 {
		t.Errorf("FullMask %v", full)
	}
	if _, ok := objectFromLogits([]float32{-1, -2}, 2, 1, 0); ok {
		t.Error("empty plane gave an object")
	}
}

func countTrue(m []bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

// rect is an object covering x0..x1, y0..y1 (inclusive) of class c.
func rect(x0, y0, x1, y1, c int, iou float32) Object {
	ob := Object{Box: [4]int{x0, y0, x1, y1}, ClassIndex: c, PredIoU: iou, Confidence: 0.5}
	ob.Mask = make([]bool, (x1-x0+1)*(y1-y0+1))
	for i := range ob.Mask {
		ob.Mask[i] = true
	}
	ob.Area = len(ob.Mask)
	return ob
}

func TestMergeObjects(t *testing.T) {
	names := []string{"kidney", "liver", "spleen"}
	objs := []Object{
		rect(0, 0, 5, 5, 0, 0.6),  // kidney, 36 px
		rect(3, 3, 8, 8, 1, 0.9),  // liver wins the 9 px overlap
		rect(9, 0, 9, 1, 2, 0.95), // spleen: 2 px, a fragment below min area 3
	}
	lm := MergeObjects(10, 10, objs, names, MergeOptions{MinRegionArea: 3})
	at := func(x, y int) uint16 { return lm.Labels[y*10+x] }
	if at(4, 4) != 2 || at(1, 1) != 1 || at(9, 0) != 0 || at(9, 9) != 0 {
		t.Fatalf("labels at overlap %d, kidney %d, fragment %d, bg %d", at(4, 4), at(1, 1), at(9, 0), at(9, 9))
	}
	if len(lm.Classes) != 2 {
		t.Fatalf("classes %+v", lm.Classes)
	}
	k, l := lm.Classes[0], lm.Classes[1]
	if k.ID != 1 || k.Name != "kidney" || k.Pixels != 36-9 || l.ID != 2 || l.Name != "liver" || l.Pixels != 36 || l.Score != 0.9 {
		t.Errorf("class table %+v", lm.Classes)
	}
	if lm.Score[4*10+4] != 0.9 || lm.Score[0] != 0.6 {
		t.Errorf("scores %v %v", lm.Score[44], lm.Score[0])
	}
	// Plain SAM (no names): one ID per object by score.
	lm = MergeObjects(10, 10, []Object{rect(0, 0, 1, 1, -1, 0.2), rect(5, 5, 6, 6, -1, 0.8)}, nil, MergeOptions{})
	if lm.Labels[0] != 2 || lm.Labels[5*10+5] != 1 || lm.Classes[0].Name != "object_1" {
		t.Errorf("instance labels %v %+v", lm.Labels[:2], lm.Classes)
	}
}

func TestRemoveSmallRegions(t *testing.T) {
	// Two regions of label 1 (3 px and 1 px, not 4-connected) and one of 2.
	labels := []uint16{
		1, 1, 0, 2,
		1, 0, 1, 2,
	}
	cleared := 0
	removeSmallRegions(labels, 2, 4, 2, func(int) { cleared++ })
	want := []uint16{1, 1, 0, 2, 1, 0, 0, 2}
	for i := range want {
		if labels[i] != want[i] {
			t.Fatalf("labels %v, want %v", labels, want)
		}
	}
	if cleared != 1 {
		t.Errorf("cleared %d", cleared)
	}
}

func TestVoteAxes(t *testing.T) {
	labels := [][]uint16{{1, 1, 0, 3}, {1, 2, 0, 4}, {0, 2, 5, 0}}
	scores := [][]float32{{.5, .5, 0, .2}, {.5, .5, 0, .9}, {0, .5, .3, 0}}
	got := voteAxes(labels, scores)
	// voxel 0: 1 twice; 1: 2 twice; 2: background twice; 3: one vote
	// each, background's score 0 loses to 4's 0.9.
	want := []uint16{1, 2, 0, 4}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("vote %v, want %v", got, want)
		}
	}
}

func TestNewAutomaticErrors(t *testing.T) {
	m := tinyModel(t, "seg_sam")
	p := NewPredictor(m)
	opts := DefaultAMGOptions()
	opts.Classes = []string{"liver", "unicorn"}
	if _, err := NewAutomatic(p, opts); !errors.Is(err, ErrUnknownClass) {
		t.Errorf("unknown class: %v", err)
	}
	bad := DefaultAMGOptions()
	bad.PointsPerSide = 0
	if _, err := NewAutomatic(p, bad); err == nil {
		t.Error("0 points per side accepted")
	}
	samOnly := NewSAMPredictor(m.SAM)
	withClasses := DefaultAMGOptions()
	withClasses.Classes = []string{"liver"}
	if _, err := NewAutomatic(samOnly, withClasses); err == nil {
		t.Error("class filter on a plain SAM accepted")
	}
}

// TestSegmentImageAndVolume runs the whole path on a tiny random-weight
// SEG-SAM model: objects within the image, a label map whose IDs and pixel
// counts match its class table, and a volume label map on the input grid.
func TestSegmentImageAndVolume(t *testing.T) {
	m := tinyModel(t, "seg_sam")
	opts := DefaultAMGOptions()
	opts.PointsPerSide, opts.PointsPerBatch = 3, 4 // 9 points: 2 full batches + a padded one
	opts.PredIoUThresh, opts.StabilityScoreThresh = 0, 0
	a, err := NewAutomatic(NewPredictor(m), opts)
	if err != nil {
		t.Fatal(err)
	}
	img := fixtureImage(t)
	lm, err := a.SegmentImage(context.Background(), img, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// sam_tiny is a SAM: 3 multimask outputs per point.
	if lm.Generated.Candidates != 27 {
		t.Errorf("candidates %d, want 27", lm.Generated.Candidates)
	}
	if len(lm.Generated.Presence) != len(testClasses) {
		t.Errorf("presence %v", lm.Generated.Presence)
	}
	if len(lm.Generated.Objects) == 0 || len(lm.Classes) == 0 {
		t.Fatalf("no object kept with the thresholds off (%d candidates)", lm.Generated.Candidates)
	}
	checkTable(t, lm.LabelMap, testClasses)
	for _, ob := range lm.Generated.Objects {
		if ob.Box[0] < 0 || ob.Box[1] < 0 || ob.Box[2] >= img.W || ob.Box[3] >= img.H || ob.Area == 0 {
			t.Errorf("object box %v area %d outside the %dx%d image", ob.Box, ob.Area, img.W, img.H)
		}
		if ob.Class != testClasses[ob.ClassIndex] || ob.Confidence <= 0 || ob.Confidence > 1 {
			t.Errorf("object class %q %d %v", ob.Class, ob.ClassIndex, ob.Confidence)
		}
	}
	// Filters: a class filter keeps only that class; a presence threshold
	// of 1 keeps nothing (sigmoid scores are below 1), of 0 everything.
	only := opts
	only.Classes = []string{lm.Generated.Objects[0].Class}
	af, err := NewAutomatic(NewPredictor(m), only)
	if err != nil {
		t.Fatal(err)
	}
	gen, err := af.Generate(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if len(gen.Objects) == 0 {
		t.Error("class filter dropped the class it names")
	}
	for _, ob := range gen.Objects {
		if ob.Class != only.Classes[0] {
			t.Errorf("class filter %v kept %s", only.Classes, ob.Class)
		}
	}
	for _, c := range []struct {
		thresh float64
		want   int
	}{{1, 0}, {0, len(lm.Generated.Objects)}} {
		pres := opts
		pres.Presence, pres.PresenceThresh = true, c.thresh
		ap, err := NewAutomatic(NewPredictor(m), pres)
		if err != nil {
			t.Fatal(err)
		}
		gen, err := ap.Generate(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		if len(gen.Objects) != c.want {
			t.Errorf("presence threshold %g: %d objects, want %d", c.thresh, len(gen.Objects), c.want)
		}
		for _, ob := range gen.Objects {
			if ob.Presence != gen.Presence[ob.ClassIndex] {
				t.Errorf("object presence %v, image's %v for class %d", ob.Presence, gen.Presence[ob.ClassIndex], ob.ClassIndex)
			}
		}
	}

	// The same with a crop layer: more candidates, objects still inside.
	opts.CropNLayers = 1
	ac, err := NewAutomatic(NewPredictor(m), opts)
	if err != nil {
		t.Fatal(err)
	}
	gen, err = ac.Generate(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if gen.Candidates != 27*5 {
		t.Errorf("with crops: %d candidates, want %d", gen.Candidates, 27*5)
	}
	for _, ob := range gen.Objects {
		c := ob.Crop
		if ob.Box[0] < c[0] || ob.Box[1] < c[1] || ob.Box[2] >= c[2] || ob.Box[3] >= c[3] || ob.Area != countTrue(ob.Mask) {
			t.Errorf("object box %v outside its crop %v (area %d)", ob.Box, c, ob.Area)
		}
	}

	vol, err := medimg.ReadVolume(filepath.Join("..", "testdata", "segment", "phantom.nii.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.SegmentVolume(context.Background(), vol, VolumeOptions{MaxVoxels: 100}); !errors.Is(err, ErrVolumeTooLarge) {
		t.Errorf("memory bound: %v", err)
	}
	vl, err := a.SegmentVolume(context.Background(), vol, VolumeOptions{Axes: []medimg.Axis{medimg.Axial, medimg.Coronal}})
	if err != nil {
		t.Fatal(err)
	}
	if len(vl.Labels) != len(vol.Data) || vl.Slices != vol.NumSlices(medimg.Axial)+vol.NumSlices(medimg.Coronal) {
		t.Fatalf("%d labels for %d voxels, %d slices", len(vl.Labels), len(vol.Data), vl.Slices)
	}
	counts := map[int]int{}
	for _, l := range vl.Labels {
		if l != 0 {
			counts[int(l)]++
		}
	}
	if len(counts) == 0 || len(counts) != len(vl.Classes) {
		t.Fatalf("label values %v, class table %+v", counts, vl.Classes)
	}
	for _, c := range vl.Classes {
		if counts[c.ID] != c.Pixels || c.Name != testClasses[c.ID-1] || math.Abs(c.VolumeML-float64(c.Pixels)*1.5*1.5*3/1000) > 1e-9 {
			t.Errorf("class %+v: %d voxels in the map", c, counts[c.ID])
		}
	}
	path := filepath.Join(t.TempDir(), "labels.nii.gz")
	if err := vl.WriteNIfTI(path); err != nil {
		t.Fatal(err)
	}
	back, err := medimg.ReadVolume(path)
	if err != nil {
		t.Fatal(err)
	}
	if !back.SameGrid(vol, 1e-5) {
		t.Errorf("written grid %v %v, input %v %v", back.Dim, back.Affine, vol.Dim, vol.Affine)
	}
	for i, v := range back.Data {
		if uint16(v) != vl.Labels[i] {
			t.Fatalf("voxel %d: wrote %v, have %d", i, v, vl.Labels[i])
		}
	}
}

func checkTable(t *testing.T, lm *LabelMap, names []string) {
	t.Helper()
	counts := map[int]int{}
	for _, l := range lm.Labels {
		if l != 0 {
			counts[int(l)]++
		}
	}
	if len(counts) != len(lm.Classes) {
		t.Fatalf("label values %v, class table %+v", counts, lm.Classes)
	}
	for _, c := range lm.Classes {
		if counts[c.ID] != c.Pixels || c.Name != names[c.ID-1] || c.Objects < 1 {
			t.Errorf("class %+v: %d pixels in the map", c, counts[c.ID])
		}
	}
}
