package dataset

import (
	"fmt"
	"image"
	"image/color"
	"testing"
)

// writeSet writes a set of tiny images, one per (name, source, group).
func writeSet(t *testing.T, rows [][3]string) *Dataset {
	t.Helper()
	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		img := image.NewGray(image.Rect(0, 0, 8, 8))
		m := image.NewGray(img.Rect)
		m.SetGray(2, 2, color.Gray{255})
		if err := w.AddImage(r[0], img, ImageMeta{Modality: "endoscopy", Source: r[1], Group: r[2]}, []Mask{{Class: "polyp", Mask: m}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ds, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestAssembleDeduplicates: an old set split by groups next to a new,
// larger copy of the same datasets. Patients of the old set's validation
// part leave the new training copy where ids match (Kvasir-like, one id per
// image); where the new copy names patients otherwise (frame numbers against
// sequence ids, ClinicDB-like) the old validation images of that folder go.
func TestAssembleDeduplicates(t *testing.T) {
	const repo = "o/r"
	var old, fresh [][3]string
	for i := range 20 {
		id := fmt.Sprintf("k%02d", i)
		old = append(old, [3]string{"kv_" + id, repo + ":data/Kvasir/images/" + id + ".jpg@c1", "kvasir:" + id})
		seq := fmt.Sprintf("seq%02d", i)
		old = append(old, [3]string{"cvc_" + seq, repo + ":data/Clinic/images/" + fmt.Sprint(10*i+1) + ".jpg@c1", "cvc:" + seq})
	}
	for i := range 40 {
		id := fmt.Sprintf("k%02d", i)
		fresh = append(fresh, [3]string{"new_kv_" + id, repo + ":data/Kvasir/images/" + id + ".jpg@c2", "kvasir_seg:" + id})
	}
	for f := 1; f <= 200; f++ {
		fresh = append(fresh, [3]string{fmt.Sprintf("new_cvc_%03d", f), repo + ":data/Clinic/images/" + fmt.Sprint(f) + ".jpg@c2", "cvc_clinicdb:" + fmt.Sprint(f)})
	}
	oldSet, freshSet := writeSet(t, old), writeSet(t, fresh)
	a, err := Assemble([]*Dataset{freshSet}, nil, []*Dataset{oldSet}, 0.25, 1)
	if err != nil {
		t.Fatal(err)
	}
	valPatients := map[string]bool{}
	var valKvasir, valClinic int
	for _, e := range a.Val.Images {
		valPatients[patientOf(e)] = true
		switch e.Name[:3] {
		case "kv_":
			valKvasir++
		case "cvc":
			valClinic++
		}
	}
	if valKvasir == 0 || valClinic != 0 {
		t.Fatalf("validation holds %d Kvasir-like and %d ClinicDB-like images; want some and none", valKvasir, valClinic)
	}
	for _, e := range a.Train.Images {
		if valPatients[patientOf(e)] && e.Name[:6] == "new_kv" {
			t.Errorf("training image %s has a validation patient", e.Name)
		}
	}
	if got := a.DroppedTrain[freshSet.Dir]; got != valKvasir {
		t.Errorf("%d new training images dropped, want %d (one per validation patient)", got, valKvasir)
	}
	if want := len(a.Train.Images) + len(a.Val.Images) + a.DroppedTrain[freshSet.Dir] + a.DroppedVal[oldSet.Dir]; want != len(old)+len(fresh) {
		t.Errorf("images lost: %d in, %d accounted for", len(old)+len(fresh), want)
	}
}
