package server

// MONAI Label's REST API, so that 3D Slicer's MONAI Label module and OHIF's
// MONAI Label plugin use segsam as their server (see the README section
// "3D Slicer / OHIF (MONAI Label)"). The request and response shapes follow
// MONAI Label's own endpoints (monailabel/endpoints/*.py) and client
// (monailabel/client/client.py):
//
//	GET    /info/                              app: name, version, labels, models, strategies, datastore stats
//	GET    /datastore/?output=stats|all|train  the datastore
//	PUT    /datastore/?image=ID, /datastore/image?image=ID   upload an image (multipart file + params)
//	GET    /datastore/image?image=ID           download it; HEAD checks it exists (check_sum=SHA256:...)
//	DELETE /datastore/image?id=ID              remove it and its labels
//	GET|PUT /datastore/image/info?image=ID     its info
//	PUT    /datastore/label?image=ID&tag=T     save a label (multipart label + params); tag final by default
//	GET    /datastore/label?label=ID&tag=T     download it; HEAD /datastore/label?image=ID&tag=T; DELETE ?id=ID&tag=T
//	GET|PUT /datastore/label/info?label=ID&tag=T
//	POST   /infer/{model}?image=ID[&session_id=S][&output=image|json|all]   multipart params (+ file, label)
//	PUT    /session/?expiry=S                  upload a volume for a session (multipart files)
//	GET    /session/{id}[?image=true], DELETE /session/{id}
//	POST   /activelearning/{strategy}          next study without a final label (random, first)

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/segsam/segsam/medimg"
)

// VolumeSegmenter labels every structure of a volume that it recognises
// (the "label everything" mode), for MONAI Label's automatic model.
type VolumeSegmenter interface {
	// SegmentVolume returns one label value per voxel of vol, in vol's file
	// order (i fastest, as medimg.Volume.Data), and the name of each label
	// value used (background, 0, needs no name).
	SegmentVolume(ctx context.Context, vol *medimg.Volume) (labels []uint16, names map[string]int, err error)
}

// MONAI Label names of segsam's two models.
const (
	// mlInteractiveModel answers clicks and/or an ROI on one slice.
	mlInteractiveModel = "segsam"
	// mlAutoModel labels the whole volume (Config.Segmenter).
	mlAutoModel = "segsam_auto"
)

// mlVersion is the MONAI Label API version the endpoints follow; Slicer's
// module only shows it.
const mlVersion = "0.8.5"

func (s *Server) monaiRoutes() []route {
	return []route{
		{"GET", "/info/{$}", s.handleMLInfo},
		{"GET", "/info", s.handleMLInfo},
		{"GET", "/datastore/{$}", s.handleMLDatastore},
		{"PUT", "/datastore/{$}", s.handleMLAddImage},
		{"DELETE", "/datastore/{$}", s.handleMLRemoveImage},
		{"PUT", "/datastore/image", s.handleMLAddImage},
		{"GET", "/datastore/image", s.handleMLDownloadImage},
		{"HEAD", "/datastore/image", s.handleMLCheckImage},
		{"DELETE", "/datastore/image", s.handleMLRemoveImage},
		{"GET", "/datastore/image/info", s.handleMLImageInfo},
		{"PUT", "/datastore/image/info", s.handleMLUpdateImageInfo},
		{"PUT", "/datastore/label", s.handleMLSaveLabel},
		{"GET", "/datastore/label", s.handleMLDownloadLabel},
		{"HEAD", "/datastore/label", s.handleMLCheckLabel},
		{"DELETE", "/datastore/label", s.handleMLRemoveLabel},
		{"GET", "/datastore/label/info", s.handleMLLabelInfo},
		{"PUT", "/datastore/label/info", s.handleMLUpdateLabelInfo},
		{"POST", "/infer/{model}", s.handleMLInfer},
		{"PUT", "/session/{$}", s.handleMLCreateSession},
		{"GET", "/session/{id}", s.handleMLGetSession},
		{"DELETE", "/session/{id}", s.handleMLRemoveSession},
		{"POST", "/activelearning/{strategy}", s.handleMLNextSample},
	}
}

// MLModelInfo is one model of GET /info/ (MONAI Label's InferTask.info()).
type MLModelInfo struct {
	Type        string         `json:"type"`
	Labels      map[string]int `json:"labels"`
	Dimension   int            `json:"dimension"`
	Description string         `json:"description"`
	Config      map[string]any `json:"config"`
}

// MLInfo is the answer of GET /info/ (MONAI Label's MONAILabelApp.info()).
type MLInfo struct {
	Name        string                    `json:"name"`
	Description string                    `json:"description"`
	Version     string                    `json:"version"`
	Labels      []string                  `json:"labels"`
	Models      map[string]MLModelInfo    `json:"models"`
	Trainers    map[string]any            `json:"trainers"`
	Strategies  map[string]map[string]any `json:"strategies"`
	Scoring     map[string]any            `json:"scoring"`
	TrainStats  map[string]any            `json:"train_stats"`
	Datastore   MLDatastoreStats          `json:"datastore"`
}

// mlLabels returns the model's class names as MONAI Label's label map
// (name → class index + 1); a plain SAM has none.
func (s *Server) mlLabels() ([]string, map[string]int) {
	names := s.model.Classes()
	m := make(map[string]int, len(names))
	for i, n := range names {
		m[n] = i + 1
	}
	if names == nil {
		names = []string{}
	}
	return names, m
}

func (s *Server) mlInfo() MLInfo {
	names, labels := s.mlLabels()
	desc := s.modelInfo().Description
	info := MLInfo{
		Name:        "segsam",
		Description: "SEG-SAM (segsam serve): " + desc,
		Version:     mlVersion,
		Labels:      names,
		Models: map[string]MLModelInfo{
			mlInteractiveModel: {
				Type: "deepgrow", Labels: labels, Dimension: 2, Config: map[string]any{},
				Description: "Clicks (foreground/background) and/or an ROI on one slice k: the object's mask on that slice, its class and confidence (" + desc + ")",
			},
		},
		Trainers:   map[string]any{},
		Scoring:    map[string]any{},
		TrainStats: map[string]any{},
		Strategies: map[string]map[string]any{
			"random": {"description": "a random study without a final label"},
			"first":  {"description": "the first study (by id) without a final label"},
		},
	}
	if s.cfg.Segmenter != nil {
		info.Models[mlAutoModel] = MLModelInfo{
			Type: "segmentation", Labels: labels, Dimension: 3, Config: map[string]any{},
			Description: "Every structure segsam recognises in the whole volume (label-everything mode)",
		}
	}
	if s.studies != nil {
		info.Datastore = s.studies.Stats()
	} else {
		info.Datastore = MLDatastoreStats{LabelTags: map[string]int{}}
	}
	return info
}

func (s *Server) handleMLInfo(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.mlInfo())
	return nil
}

// datastore returns the studies datastore, or a 503 when serve runs without
// --studies.
func (s *Server) datastore() (*mlDatastore, error) {
	if s.studies == nil {
		return nil, httpErrorf(http.StatusServiceUnavailable, "no datastore: start `segsam serve --studies DIR` to keep studies and labels (sessions and /infer with an uploaded file work without it)")
	}
	return s.studies, nil
}

// formFile is one file part of a multipart request.
type formFile struct {
	field, filename string
	data            []byte
}

// requestForm is a parsed request body: form values and file parts.
type requestForm struct {
	values map[string]string
	files  []formFile
}

// file returns the first file part of a field.
func (f *requestForm) file(field string) *formFile {
	for i := range f.files {
		if f.files[i].field == field {
			return &f.files[i]
		}
	}
	return nil
}

// filesOf returns every file part of a field.
func (f *requestForm) filesOf(field string) []formFile {
	var out []formFile
	for _, ff := range f.files {
		if ff.field == field {
			out = append(out, ff)
		}
	}
	return out
}

// maxFormValue bounds one non-file form value (params, info).
const maxFormValue = 1 << 20

// readForm reads a request body as MONAI Label's client sends it: a
// multipart/form-data body (fields and files), an urlencoded form, or a
// JSON body taken as the "params" field. The body is read up to limit
// bytes (413 beyond); a malformed body is a 400 naming the problem.
func readForm(w http.ResponseWriter, r *http.Request, limit int64) (*requestForm, error) {
	f := &requestForm{values: map[string]string{}}
	body := http.MaxBytesReader(w, r.Body, limit)
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" {
		mt, err = "", nil
	}
	if err != nil {
		return nil, httpErrorf(http.StatusBadRequest, "malformed Content-Type %q: %v", ct, err)
	}
	switch mt {
	case "multipart/form-data":
		if params["boundary"] == "" {
			return nil, httpErrorf(http.StatusBadRequest, "malformed multipart request: the Content-Type has no boundary parameter")
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				return f, nil
			}
			if err != nil {
				return nil, malformedMultipart(err, "")
			}
			name, filename := part.FormName(), part.FileName()
			if filename == "" && name != "file" && name != "label" && name != "files" {
				data, err := io.ReadAll(io.LimitReader(part, maxFormValue+1))
				if err != nil {
					return nil, malformedMultipart(err, "")
				}
				if len(data) > maxFormValue {
					return nil, httpErrorf(http.StatusRequestEntityTooLarge, "form field %q is over %d bytes", name, maxFormValue)
				}
				f.values[name] = string(data)
				continue
			}
			data, err := io.ReadAll(part)
			if err != nil {
				return nil, malformedMultipart(err, filename)
			}
			f.files = append(f.files, formFile{field: name, filename: filename, data: data})
		}
	case "application/x-www-form-urlencoded":
		data, err := io.ReadAll(io.LimitReader(body, maxFormValue+1))
		if err != nil {
			return nil, readBodyError(err)
		}
		q, err := url.ParseQuery(string(data))
		if err != nil {
			return nil, httpErrorf(http.StatusBadRequest, "malformed form body: %v", err)
		}
		for k := range q {
			f.values[k] = q.Get(k)
		}
		return f, nil
	case "application/json", "text/plain", "":
		data, err := io.ReadAll(io.LimitReader(body, maxFormValue+1))
		if err != nil {
			return nil, readBodyError(err)
		}
		if len(data) > maxFormValue {
			return nil, httpErrorf(http.StatusRequestEntityTooLarge, "JSON body is over %d bytes", maxFormValue)
		}
		if len(strings.TrimSpace(string(data))) > 0 {
			f.values["params"] = string(data)
		}
		return f, nil
	default:
		return nil, httpErrorf(http.StatusUnsupportedMediaType, "Content-Type %q: send multipart/form-data (as MONAI Label's client does)", mt)
	}
}

func readBodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return httpErrorf(http.StatusBadRequest, "reading the request body: %v", err)
}

// jsonObject parses a form value holding a JSON object ("" is {}).
func jsonObject(name, v string) (map[string]any, error) {
	out := map[string]any{}
	if strings.TrimSpace(v) == "" {
		return out, nil
	}
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, httpErrorf(http.StatusBadRequest, "%s is not a JSON object: %v", name, err)
	}
	if out == nil { // "null"
		out = map[string]any{}
	}
	return out, nil
}

// requireQuery returns a query parameter that must be present.
func requireQuery(r *http.Request, name string) (string, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return "", httpErrorf(http.StatusBadRequest, "missing query parameter %q", name)
	}
	return v, nil
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// describeModels lists the model names for an error message.
func (s *Server) describeModels() string {
	return strings.Join(sortedKeys(s.mlInfo().Models), ", ")
}
