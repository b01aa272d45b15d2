package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/segsam"
)

// "Label everything": POST /v1/images/{id}/segment-all runs segsam's
// automatic segmentation (segsam.Automatic: a point-grid prompt, IoU and
// stability filtering, NMS, Dec_saw class names) on an image, a volume
// slice, or a whole volume.

// autoState holds the server's automatic-segmentation defaults.
type autoState struct {
	opts segsam.AMGOptions
	set  bool
}

// SetAutomaticDefaults sets the automatic-mask options that segment-all
// requests start from (default: segsam.DefaultAMGOptions, SAM's).
func (s *Server) SetAutomaticDefaults(o segsam.AMGOptions) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("server: automatic segmentation: %w", err)
	}
	s.auto = autoState{opts: o, set: true}
	return nil
}

func (s *Server) autoDefaults() segsam.AMGOptions {
	if s.auto.set {
		return s.auto.opts
	}
	return segsam.DefaultAMGOptions()
}

// SegmentAllRequest is the body of POST /v1/images/{id}/segment-all. Every
// field is optional; an unset threshold takes the server's default.
type SegmentAllRequest struct {
	// Slice ("axial:12") labels one slice of a volume; Volume labels the
	// whole volume along Axes (default ["axial"]) and answers with a NIfTI
	// label map. A 2-D image takes neither.
	Slice  string   `json:"slice,omitempty"`
	Volume bool     `json:"volume,omitempty"`
	Axes   []string `json:"axes,omitempty"`
	Window string   `json:"window,omitempty"`
	// Format of a 2-D answer: "png" (default: label_map_png, the IDs as
	// an 8- or 16-bit grey PNG) or "rle" (one COCO RLE per class).
	Format string `json:"format,omitempty"`
	// The automatic mask generator's settings (see segsam segment -h).
	PointsPerSide   int      `json:"points_per_side,omitempty"`
	PredIoUThresh   *float64 `json:"pred_iou_thresh,omitempty"`
	StabilityThresh *float64 `json:"stability_thresh,omitempty"`
	BoxNMSThresh    *float64 `json:"box_nms_thresh,omitempty"`
	Presence        bool     `json:"presence,omitempty"`
	Classes         []string `json:"classes,omitempty"`
	MinRegion       int      `json:"min_region,omitempty"`
}

// AutoClass is one row of the class table of a segment-all answer.
type AutoClass struct {
	segsam.ClassEntry
	// RLE (format "rle") is the class's mask.
	RLE *RLE `json:"rle,omitempty"`
}

// SegmentAllResponse is the answer for an image or a slice.
type SegmentAllResponse struct {
	ImageID string `json:"image_id"`
	Slice   string `json:"slice,omitempty"`
	Window  string `json:"window,omitempty"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Format  string `json:"format"`
	// LabelMapPNG (format "png") is the label map: each pixel's class ID
	// (class index + 1; 0 background), base64 PNG.
	LabelMapPNG string      `json:"label_map_png,omitempty"`
	Classes     []AutoClass `json:"classes"`
	// Objects and Candidates count the masks kept and generated.
	Objects    int                `json:"objects"`
	Candidates int                `json:"candidates"`
	Presence   map[string]float32 `json:"presence_scores,omitempty"`
	TimingsMS  map[string]float64 `json:"timings_ms"`
}

// automatic builds the automatic segmenter of a request.
func (s *Server) automatic(req *SegmentAllRequest) (*segsam.Automatic, segsam.MergeOptions, error) {
	o := s.autoDefaults()
	if req.PointsPerSide != 0 {
		o.PointsPerSide = req.PointsPerSide
	}
	if req.PredIoUThresh != nil {
		o.PredIoUThresh = *req.PredIoUThresh
	}
	if req.StabilityThresh != nil {
		o.StabilityScoreThresh = *req.StabilityThresh
	}
	if req.BoxNMSThresh != nil {
		o.BoxNMSThresh = *req.BoxNMSThresh
	}
	o.Presence = o.Presence || req.Presence
	o.Classes = req.Classes
	if o.PointsPerSide > 64 {
		return nil, segsam.MergeOptions{}, httpErrorf(http.StatusBadRequest, "points_per_side %d: at most 64 on this server", o.PointsPerSide)
	}
	if req.MinRegion < 0 {
		return nil, segsam.MergeOptions{}, httpErrorf(http.StatusBadRequest, "min_region %d: want >= 0", req.MinRegion)
	}
	a, err := segsam.NewAutomatic(s.model, o)
	if err != nil {
		return nil, segsam.MergeOptions{}, httpErrorf(http.StatusBadRequest, "%v", err)
	}
	return a, segsam.MergeOptions{MinRegionArea: req.MinRegion}, nil
}

func (s *Server) handleSegmentAll(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	img, err := s.image(r)
	if err != nil {
		return err
	}
	var req SegmentAllRequest
	if err := decodeJSON(w, r, s.cfg.MaxJSONBytes, &req); err != nil {
		return err
	}
	if req.Format, err = maskFormat(req.Format); err != nil {
		return err
	}
	a, merge, err := s.automatic(&req)
	if err != nil {
		return err
	}
	if req.Volume {
		return s.segmentAllVolume(w, r, img, a, merge, &req)
	}
	// An image or a slice: the usual time limit.
	r, cancel := s.requestDeadline(r)
	defer cancel()
	err = s.segmentAllImage(w, r, img, a, merge, &req, start)
	if errors.Is(err, context.DeadlineExceeded) {
		return httpErrorf(http.StatusServiceUnavailable, "request timed out after %v: %v", s.cfg.RequestTimeout, err)
	}
	return err
}

// segmentAllImage labels an image or one slice of a volume.
func (s *Server) segmentAllImage(w http.ResponseWriter, r *http.Request, img *storedImage, a *segsam.Automatic, merge segsam.MergeOptions, req *SegmentAllRequest, start time.Time) error {
	if len(req.Axes) > 0 {
		return httpErrorf(http.StatusBadRequest, "axes apply to \"volume\": true only")
	}
	v, err := s.resolveView(img, req.Slice, req.Window)
	if err != nil {
		return err
	}
	emb, _, err := s.embedding(r.Context(), v)
	if err != nil {
		return err
	}
	rgb, err := v.rgb()
	if err != nil {
		return err
	}
	p := s.newPredictor()
	if err := p.SAM.SetEmbedding(emb.tensor, emb.h, emb.w); err != nil {
		return err
	}
	genStart := time.Now()
	gen, err := a.GenerateEmbedded(r.Context(), p, rgb)
	if err != nil {
		return fmt.Errorf("segment-all: %w", err)
	}
	lm := segsam.MergeObjects(gen.H, gen.W, gen.Objects, a.Classes(), merge)
	if len(lm.Classes) == 0 {
		return httpErrorf(http.StatusUnprocessableEntity, "nothing found (%d candidate masks, none kept): lower pred_iou_thresh or stability_thresh, or widen classes", gen.Candidates)
	}
	resp := SegmentAllResponse{
		ImageID: img.ID, Width: gen.W, Height: gen.H, Format: req.Format,
		Objects: len(gen.Objects), Candidates: gen.Candidates,
		TimingsMS: map[string]float64{"generate": ms(time.Since(genStart))},
	}
	if v.slice != nil {
		resp.Slice, resp.Window = v.slice.String(), v.window.String()
	}
	if gen.Presence != nil {
		resp.Presence = map[string]float32{}
		for i, c := range a.Classes() {
			resp.Presence[c] = gen.Presence[i]
		}
	}
	for _, c := range lm.Classes {
		ac := AutoClass{ClassEntry: c}
		if req.Format == "rle" {
			rle := EncodeRLE(lm.Mask(c.ID), lm.H, lm.W)
			ac.RLE = &rle
		}
		resp.Classes = append(resp.Classes, ac)
	}
	if req.Format == "png" {
		data, err := labelPNG(lm.Labels, lm.H, lm.W)
		if err != nil {
			return err
		}
		resp.LabelMapPNG = base64.StdEncoding.EncodeToString(data)
	}
	resp.TimingsMS["total"] = ms(time.Since(start))
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// segmentAllVolume labels a whole volume and answers with its NIfTI label
// map; the class table (IDs, names, voxels, mL) is in the
// X-Segsam-Classes header as JSON.
func (s *Server) segmentAllVolume(w http.ResponseWriter, r *http.Request, img *storedImage, a *segsam.Automatic, merge segsam.MergeOptions, req *SegmentAllRequest) error {
	if img.Kind != kindVolume {
		return httpErrorf(http.StatusBadRequest, "image %s is a 2-D image: \"volume\": true is for volumes", img.ID)
	}
	if req.Slice != "" {
		return httpErrorf(http.StatusBadRequest, "give \"slice\" or \"volume\": true, not both")
	}
	opts := segsam.VolumeOptions{Window: img.Window, Merge: merge}
	if req.Window != "" {
		win, err := medimg.ParseWindow(req.Window)
		if err != nil {
			return httpErrorf(http.StatusBadRequest, "%v", err)
		}
		opts.Window = win
	}
	for _, name := range req.Axes {
		ax, err := medimg.ParseAxis(name)
		if err != nil {
			return httpErrorf(http.StatusBadRequest, "axes: %v", err)
		}
		opts.Axes = append(opts.Axes, ax)
	}
	// One encoder slot for the whole run.
	select {
	case s.encodes <- struct{}{}:
	case <-r.Context().Done():
		return r.Context().Err()
	}
	vl, err := a.SegmentVolume(r.Context(), img.Volume, opts)
	<-s.encodes
	if err != nil {
		if errors.Is(err, segsam.ErrVolumeTooLarge) {
			return httpErrorf(http.StatusRequestEntityTooLarge, "%v", err)
		}
		return fmt.Errorf("segment-all: %w", err)
	}
	if len(vl.Classes) == 0 {
		return httpErrorf(http.StatusUnprocessableEntity, "nothing found in %d slices: lower pred_iou_thresh or stability_thresh, or widen classes", vl.Slices)
	}
	dir, err := os.MkdirTemp("", "segsam-segment-all-")
	if err != nil {
		return fmt.Errorf("segment-all: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "labels.nii.gz")
	if err := vl.WriteNIfTI(path); err != nil {
		return fmt.Errorf("segment-all: %w", err)
	}
	table, err := json.Marshal(vl.Classes)
	if err != nil {
		return err
	}
	w.Header().Set("X-Segsam-Classes", string(table))
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", "attachment; filename=\""+img.ID+"_auto_labels.nii.gz\"")
	http.ServeFile(w, r, path)
	return nil
}

// labelPNG encodes label IDs as an 8-bit grey PNG, or 16-bit when an ID
// exceeds 255.
func labelPNG(labels []uint16, h, w int) ([]byte, error) {
	img := segsam.LabelImage(labels, h, w)
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode label map PNG: %w", err)
	}
	return buf.Bytes(), nil
}
