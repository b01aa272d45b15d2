package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"time"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/medimg/nifti"
	"github.com/segsam/segsam/sam"
)

// MONAI Label's POST /infer/{model} (monailabel/endpoints/infer.py).
//
// The interactive model follows MONAI Label's 2-D interactive tasks
// (deepgrow 2-D, monailabel/sam2/infer.py): the clicks are voxel indices
// [i, j, k] of the image as stored (the file's array order, which is what
// 3D Slicer's RAS-to-IJK gives for the volume it uploaded), the slice is
// the plane k = const, and the ROI is [i0, i1, j0, j1, k0, k1]. segsam's
// model sees that plane as the canonical slice holding it (axial for the
// usual CT/MR file, shown anterior up, patient left on the right, square
// pixels: the way it was trained), so each voxel is mapped to the pixels of
// that slice that sample it, and the predicted mask is painted back voxel
// by voxel (a voxel is inside when most of its pixels are). The answer is a
// label map with the image's exact geometry (its NIfTI header's shape,
// pixdim, qform and sform; a DICOM series' affine), 1 inside the mask on
// slice k and 0 everywhere else.

// mlInferParams are the interactive model's request params.
type mlInferParams struct {
	Foreground [][]float64 `json:"foreground"`
	Background [][]float64 `json:"background"`
	ROI        []float64   `json:"roi"`
	Slice      *float64    `json:"slice"`
	Label      any         `json:"label"`
	// segsam's additions: the intensity window of the slice ("soft",
	// "L,W", ...; the volume's default otherwise) and SAM's multimask
	// output (by default on for a single click without ROI, as SAM
	// advises for ambiguous prompts; the candidate with the best
	// predicted IoU is returned).
	Window    string `json:"window"`
	Multimask *bool  `json:"multimask"`
}

// mlImage is the image an infer request is about.
type mlImage struct {
	img  *storedImage
	name string // for the result's file name
	temp bool   // an uploaded file: drop its embeddings after
}

// inferImage resolves the image of an infer request: a session, an
// uploaded "file" part, or a datastore image.
func (s *Server) inferImage(r *http.Request, form *requestForm) (mlImage, error) {
	q := r.URL.Query()
	if sid := q.Get("session_id"); sid != "" {
		sess, ok := s.sessions.Get(sid, true)
		if !ok {
			return mlImage{}, unknownSession(sid)
		}
		return mlImage{img: sess.img, name: "session"}, nil
	}
	if f := form.file("file"); f != nil {
		ext, err := sniffExt(f.filename, f.data, imageExts)
		if err != nil {
			return mlImage{}, err
		}
		img, err := s.decodeUploadedImage(f.data, ext)
		if err != nil {
			return mlImage{}, err
		}
		img.ID = "upload:" + newID()
		name, _, _ := splitExt(f.filename, imageExts)
		return mlImage{img: img, name: name, temp: true}, nil
	}
	id := q.Get("image")
	if id == "" {
		return mlImage{}, httpErrorf(http.StatusBadRequest, "no image: give ?image=ID (a datastore image), ?session_id=S, or a multipart \"file\"")
	}
	img, err := s.studyImage(id)
	if err != nil {
		return mlImage{}, err
	}
	return mlImage{img: img, name: id}, nil
}

// mlResult is an infer answer: the label file and the params.
type mlResult struct {
	label    []byte
	filename string
	params   map[string]any
}

func (s *Server) handleMLInfer(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	model := r.PathValue("model")
	output := r.URL.Query().Get("output")
	switch output {
	case "", "all", "image", "json":
	case "dicom_seg":
		return httpErrorf(http.StatusBadRequest, "output dicom_seg needs a DICOMweb datastore; segsam answers with NIfTI (output all, image or json)")
	default:
		return httpErrorf(http.StatusBadRequest, "output %q: want all, image or json", output)
	}
	if model != mlInteractiveModel && model != mlAutoModel {
		return httpErrorf(http.StatusNotFound, "unknown model %q: this server has %s", model, s.describeModels())
	}
	if model == mlAutoModel && s.cfg.Segmenter == nil {
		return httpErrorf(http.StatusServiceUnavailable, "model %q needs segsam's label-everything segmenter, which this server was not given", model)
	}
	form, err := readForm(w, r, s.uploadLimit())
	if err != nil {
		return err
	}
	params, err := jsonObject("params", form.values["params"])
	if err != nil {
		return err
	}
	if lf := form.file("label"); lf != nil && len(lf.data) > 0 && !isNIfTI(lf.data) && !(len(lf.data) >= 2 && lf.data[0] == 0x1f && lf.data[1] == 0x8b) {
		return httpErrorf(http.StatusUnsupportedMediaType, "label %q is not a NIfTI file (.nii.gz or .nii)", lf.filename)
	}
	format, err := parseResultFormat(params)
	if err != nil {
		return err
	}
	im, err := s.inferImage(r, form)
	if err != nil {
		return err
	}
	if im.temp {
		defer s.cache.DropImage(im.img.ID)
	}
	var res *mlResult
	if model == mlAutoModel {
		res, err = s.inferAuto(r, im, format)
	} else {
		res, err = s.inferInteractive(r, im, params, format)
	}
	if err != nil {
		return err
	}
	if t, ok := res.params["timings_ms"].(*Timings); ok {
		t.Total = ms(time.Since(start))
	}
	return writeMLResult(w, res, output)
}

// writeMLResult answers as MONAI Label does: the label file (image), the
// params (json), or both in a multipart body (all, the default), params
// first as in MONAI Label's MultipartEncoder answer.
func writeMLResult(w http.ResponseWriter, res *mlResult, output string) error {
	switch output {
	case "json":
		writeJSON(w, http.StatusOK, res.params)
		return nil
	case "image":
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=\"%s\"", res.filename))
		_, err := w.Write(res.label)
		return err
	}
	pj, err := json.Marshal(res.params)
	if err != nil {
		return fmt.Errorf("encode params: %w", err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="params"`)
	h.Set("Content-Type", "application/json")
	pw, err := mw.CreatePart(h)
	if err == nil {
		_, err = pw.Write(pj)
	}
	if err != nil {
		return err
	}
	h = textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="image"; filename="%s"`, res.filename))
	h.Set("Content-Type", "application/octet-stream")
	fw, err := mw.CreatePart(h)
	if err == nil {
		_, err = fw.Write(res.label)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", mw.FormDataContentType())
	w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
	w.Header().Set("Cache-Control", "no-store")
	_, err = w.Write(buf.Bytes())
	return err
}

// resultFormat is the label file an infer request asks for with MONAI
// Label's params result_extension (".nii.gz" by default, ".nii", or ".nrrd"
// as OHIF asks) and result_compress (gzip encoding inside an NRRD).
type resultFormat struct {
	ext      string
	compress bool
}

func parseResultFormat(params map[string]any) (resultFormat, error) {
	f := resultFormat{ext: ".nii.gz"}
	if e, ok := params["result_extension"]; ok && e != nil {
		s, _ := e.(string)
		switch s {
		case ".nii.gz", ".nii", ".nrrd":
			f.ext = s
		default:
			return f, httpErrorf(http.StatusBadRequest, "result_extension %v: segsam writes .nii.gz, .nii or .nrrd", e)
		}
	}
	if c, ok := params["result_compress"].(bool); ok {
		f.compress = c
	}
	return f, nil
}

// encodeLabels encodes a label map on a volume's grid in the asked format.
func encodeLabels(vol *medimg.Volume, labels []uint16, f resultFormat) ([]byte, error) {
	switch f.ext {
	case ".nrrd":
		return labelNRRD(vol, labels, f.compress)
	case ".nii":
		return writeNIfTIBytes("label.nii", func(path string) error { return medimg.WriteLabelNIfTI(path, vol, labels) })
	}
	return labelVolumeNIfTI(vol, labels)
}

// labelVolumeNIfTI encodes a label map on a volume's grid.
func labelVolumeNIfTI(vol *medimg.Volume, labels []uint16) ([]byte, error) {
	return writeNIfTIBytes("label.nii.gz", func(path string) error { return medimg.WriteLabelNIfTI(path, vol, labels) })
}

// label2DNIfTI encodes a 2-D label map (row-major h x w) as a W x H x 1
// NIfTI whose voxel (x, y, 0) is pixel (x, y), with the geometry 3D Slicer
// gives a PNG (1 mm pixels, origin 0, LPS axes).
func label2DNIfTI(labels []uint8, h, w int) ([]byte, error) {
	img, err := nifti.New([]int{w, h, 1}, labels)
	if err != nil {
		return nil, err
	}
	img.Header.SetAffine([4][4]float64{{-1, 0, 0, 0}, {0, -1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}, nifti.XformScannerAnat)
	img.Header.IntentCode = nifti.IntentLabel
	return writeNIfTIBytes("label.nii.gz", func(path string) error { return nifti.Write(path, img) })
}

// voxelIndex parses one click [i, j, k] (or [x, y] on a 2-D image).
func voxelIndex(kind string, n int, p []float64) ([3]int, error) {
	var v [3]int
	if len(p) != 3 && len(p) != 2 {
		return v, httpErrorf(http.StatusBadRequest, "%s point %d is %v: want [i, j, k] voxel indices", kind, n, p)
	}
	for a, x := range p {
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > 1<<30 {
			return v, httpErrorf(http.StatusBadRequest, "%s point %d is %v: not a voxel index", kind, n, p)
		}
		v[a] = int(math.Round(x))
	}
	if len(p) == 2 {
		v[2] = -1 // no slice given
	}
	return v, nil
}

// inferInteractive answers the deepgrow-type model.
func (s *Server) inferInteractive(r *http.Request, im mlImage, raw map[string]any, format resultFormat) (*mlResult, error) {
	var p mlInferParams
	data, _ := json.Marshal(raw)
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, httpErrorf(http.StatusBadRequest, "params: %v (want foreground/background [[i, j, k], ...], roi [i0, i1, j0, j1, k0, k1], slice k)", err)
	}
	if len(p.Foreground)+len(p.Background) > s.cfg.MaxPoints {
		return nil, httpErrorf(http.StatusBadRequest, "%d points: at most %d per request", len(p.Foreground)+len(p.Background), s.cfg.MaxPoints)
	}
	type click struct {
		v     [3]int
		label int
	}
	var clicks []click
	for _, set := range []struct {
		kind  string
		pts   [][]float64
		label int
	}{{"foreground", p.Foreground, sam.LabelPositive}, {"background", p.Background, sam.LabelNegative}} {
		for n, pt := range set.pts {
			v, err := voxelIndex(set.kind, n, pt)
			if err != nil {
				return nil, err
			}
			clicks = append(clicks, click{v, set.label})
		}
	}
	var roi []int
	if len(p.ROI) > 0 {
		if len(p.ROI) != 6 && len(p.ROI) != 4 {
			return nil, httpErrorf(http.StatusBadRequest, "roi %v: want [i0, i1, j0, j1, k0, k1]", p.ROI)
		}
		for _, x := range p.ROI {
			if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > 1<<30 {
				return nil, httpErrorf(http.StatusBadRequest, "roi %v: not voxel indices", p.ROI)
			}
			roi = append(roi, int(math.Round(x)))
		}
		for a := 0; a+1 < len(roi); a += 2 {
			if roi[a] > roi[a+1] { // RAS-to-IJK may reverse an axis
				roi[a], roi[a+1] = roi[a+1], roi[a]
			}
		}
	}
	img := im.img
	var dim [3]int
	if img.Kind == kindVolume {
		dim = img.Volume.Dim
	} else {
		dim = [3]int{img.Image.W, img.Image.H, 1}
	}
	// Slice k: the request's, else the first click's, else the ROI's middle.
	k := -1
	if p.Slice != nil && *p.Slice >= 0 {
		k = int(math.Round(*p.Slice))
	}
	if k < 0 {
		for _, c := range clicks {
			if c.v[2] >= 0 {
				k = c.v[2]
				break
			}
		}
	}
	if k < 0 && len(roi) == 6 {
		k = roi[4] + (roi[5]-roi[4])/2
	}
	if k < 0 {
		if dim[2] != 1 {
			return nil, httpErrorf(http.StatusBadRequest, "no slice: give \"slice\", foreground/background points [i, j, k] or an roi")
		}
		k = 0
	}
	if k >= dim[2] {
		return nil, httpErrorf(http.StatusBadRequest, "slice %d is outside the volume: it has %d slices along k (0..%d)", k, dim[2], dim[2]-1)
	}
	for _, c := range clicks {
		for a := 0; a < 2; a++ {
			if c.v[a] < 0 || c.v[a] >= dim[a] {
				return nil, httpErrorf(http.StatusBadRequest, "point %v is outside the volume of %v voxels", c.v, dim)
			}
		}
		if c.v[2] >= dim[2] {
			return nil, httpErrorf(http.StatusBadRequest, "point %v is outside the volume of %v voxels", c.v, dim)
		}
	}
	if len(roi) > 0 && (roi[1] < 0 || roi[0] >= dim[0] || roi[3] < 0 || roi[2] >= dim[1]) {
		return nil, httpErrorf(http.StatusBadRequest, "roi %v does not meet the volume of %v voxels", p.ROI, dim)
	}

	// The view the model sees, and the voxel each of its pixels samples.
	var v view
	var pixVoxel []int // slice pixel → in-plane voxel i + dim0*j
	if img.Kind == kindVolume {
		spec, err := img.Volume.FileSlice(2, k)
		if err != nil {
			return nil, httpErrorf(http.StatusBadRequest, "%v", err)
		}
		if v, err = s.resolveView(img, spec.String(), p.Window); err != nil {
			return nil, err
		}
		idx, _, err := img.Volume.SliceVoxels(spec)
		if err != nil {
			return nil, err
		}
		base := k * dim[0] * dim[1]
		for i := range idx {
			idx[i] -= base
		}
		pixVoxel = idx
	} else {
		var err error
		if v, err = s.resolveView(img, "", ""); err != nil {
			return nil, err
		}
		pixVoxel = make([]int, v.h*v.w)
		for i := range pixVoxel {
			pixVoxel[i] = i
		}
	}
	plane := dim[0] * dim[1]
	// Each voxel's pixels: their count and the sums of their x and y.
	type acc struct{ n, sx, sy int }
	want := map[int]*acc{}
	var pr sam.Prompt
	ignored := 0
	var used []click
	for _, c := range clicks {
		if c.v[2] >= 0 && c.v[2] != k {
			ignored++
			continue
		}
		want[c.v[0]+dim[0]*c.v[1]] = &acc{}
		used = append(used, c)
	}
	box := [4]int{math.MaxInt, math.MaxInt, -1, -1}
	for p, vox := range pixVoxel {
		x, y := p%v.w, p/v.w
		if a := want[vox]; a != nil {
			a.n, a.sx, a.sy = a.n+1, a.sx+x, a.sy+y
		}
		if len(roi) > 0 {
			i, j := vox%dim[0], vox/dim[0]
			if i >= roi[0] && i <= roi[1] && j >= roi[2] && j <= roi[3] {
				box = [4]int{min(box[0], x), min(box[1], y), max(box[2], x), max(box[3], y)}
			}
		}
	}
	for _, c := range used {
		a := want[c.v[0]+dim[0]*c.v[1]]
		if a.n == 0 {
			return nil, httpErrorf(http.StatusBadRequest, "point %v has no pixel on slice %d", c.v, k)
		}
		pr.Points = append(pr.Points, sam.Point{X: float64(a.sx) / float64(a.n), Y: float64(a.sy) / float64(a.n), Label: c.label})
	}
	if len(roi) > 0 {
		if box[2] < 0 {
			return nil, httpErrorf(http.StatusBadRequest, "roi %v has no voxel on slice %d", p.ROI, k)
		}
		pr.Boxes = []sam.Box{{float64(box[0]), float64(box[1]), float64(box[2]), float64(box[3])}}
	}
	if len(pr.Points) == 0 && len(pr.Boxes) == 0 {
		return nil, httpErrorf(http.StatusBadRequest, "no prompt on slice %d: give foreground points [i, j, %d] and/or an roi (%d point(s) on other slices were ignored)", k, k, ignored)
	}
	pr.Multimask = len(pr.Points) == 1 && len(pr.Boxes) == 0
	if p.Multimask != nil {
		pr.Multimask = *p.Multimask
	}
	if err := s.model.SAM.Model.ValidatePrompt(pr, v.h, v.w); err != nil {
		return nil, httpErrorf(http.StatusBadRequest, "%v", err)
	}

	waitStart := time.Now()
	emb, outcome, err := s.embedding(r.Context(), v)
	if err != nil {
		return nil, err
	}
	wait := time.Since(waitStart)
	pred0 := s.newPredictor()
	if err := pred0.SAM.SetEmbedding(emb.tensor, emb.h, emb.w); err != nil {
		return nil, err
	}
	pred, err := pred0.Predict(pr)
	if err != nil {
		return nil, fmt.Errorf("predict: %w", err)
	}
	s.metrics.predict.Observe(pred.Decode.Seconds())
	outStart := time.Now()
	best := pred.Best(0)
	mask := pred.Mask(0, best) // [h*w] on the view
	// A voxel is inside when at least half of its pixels are.
	on := make([]int32, plane)
	tot := make([]int32, plane)
	for p, vox := range pixVoxel {
		tot[vox]++
		if mask[p] {
			on[vox]++
		}
	}
	name := ""
	if l, ok := p.Label.(string); ok {
		name = l
	}
	params := map[string]any{}
	if len(pred.Class) > 0 {
		probs := map[string]float32{}
		for c, pb := range pred.ClassProbs[0] {
			if classes := s.model.Classes(); c < len(classes) {
				probs[classes[c]] = pb
			}
		}
		params["class"], params["class_index"], params["confidence"], params["class_probs"] = pred.Class[0], pred.ClassIndex[0], pred.Confidence[0], probs
		if name == "" {
			name = pred.Class[0]
		}
	}
	if name == "" {
		name = "segsam"
	}
	area := 0
	var label []byte
	if img.Kind == kindVolume {
		labels := make([]uint16, len(img.Volume.Data))
		base := k * plane
		for vox := range on {
			if tot[vox] > 0 && 2*on[vox] >= tot[vox] {
				labels[base+vox] = 1
				area++
			}
		}
		label, err = encodeLabels(img.Volume, labels, format)
	} else {
		format = resultFormat{ext: ".nii.gz"} // a 2-D image's label is a W x H x 1 NIfTI
		labels := make([]uint8, plane)
		for vox := range on {
			if on[vox] > 0 {
				labels[vox] = 1
				area++
			}
		}
		label, err = label2DNIfTI(labels, v.h, v.w)
	}
	if err != nil {
		return nil, fmt.Errorf("encode label: %w", err)
	}
	t := &Timings{Embedding: outcome.String(), Wait: ms(wait), Decode: ms(pred.Decode), Post: ms(pred.Post)}
	if outcome == outcomeHit {
		t.Embedding = "cached"
	} else {
		t.Encode = ms(emb.encode)
	}
	t.Output = ms(time.Since(outStart))
	params["label_names"] = map[string]int{name: 1}
	params["iou"] = pred.IoU[best]
	params["slice"] = k
	params["multimask"] = pr.Multimask
	if img.Kind == kindVolume {
		params["view"], params["window"] = v.slice.String(), v.window.String()
	} else {
		params["view"] = "2d"
	}
	params["voxels"] = area
	params["prompt"] = map[string]any{"points": len(pr.Points), "box": len(pr.Boxes) > 0, "ignored_points": ignored}
	params["timings_ms"] = t
	params["latencies"] = map[string]float64{"infer": (t.Encode + t.Decode) / 1000, "post": (t.Post + t.Output) / 1000}
	return &mlResult{label: label, filename: safeFilename(im.name+"_"+name) + format.ext, params: params}, nil
}

// inferAuto answers the automatic model with the segmenter's label map.
func (s *Server) inferAuto(r *http.Request, im mlImage, format resultFormat) (*mlResult, error) {
	if im.img.Kind != kindVolume {
		return nil, httpErrorf(http.StatusBadRequest, "model %q labels volumes; this image is 2-D", mlAutoModel)
	}
	start := time.Now()
	vol := im.img.Volume
	labels, names, err := s.cfg.Segmenter.SegmentVolume(r.Context(), vol)
	if err != nil {
		return nil, autoError(err)
	}
	if len(labels) != len(vol.Data) {
		return nil, fmt.Errorf("segment volume: %d labels for %d voxels", len(labels), len(vol.Data))
	}
	seg := time.Since(start)
	label, err := encodeLabels(vol, labels, format)
	if err != nil {
		return nil, fmt.Errorf("encode label: %w", err)
	}
	if names == nil {
		names = map[string]int{}
	}
	counts := map[string]int{}
	byValue := map[uint16]string{}
	for n, v := range names {
		byValue[uint16(v)] = n
	}
	for _, l := range labels {
		if l != 0 {
			n := byValue[l]
			if n == "" {
				n = fmt.Sprintf("label_%d", l)
			}
			counts[n]++
		}
	}
	params := map[string]any{
		"label_names": names,
		"voxels":      counts,
		"timings_ms":  &Timings{Embedding: "n/a", Decode: ms(seg)},
		"latencies":   map[string]float64{"infer": seg.Seconds()},
	}
	return &mlResult{label: label, filename: safeFilename(im.name+"_"+mlAutoModel) + format.ext, params: params}, nil
}
