package server

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/medimg/nifti"
	"github.com/segsam/segsam/transform"
)

// ImageInfo describes a stored image (GET /v1/images/{id}).
type ImageInfo struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	Kind    string    `json:"kind"`   // "image" or "volume"
	Format  string    `json:"format"` // png, jpeg, npy, nifti
	Created time.Time `json:"created"`
	// Width and Height are the size of a 2-D image.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// Volume is set for volumes.
	Volume *VolumeInfo `json:"volume,omitempty"`
	// Embeddings lists the cached embeddings ("" for a 2-D image, else
	// "axial:12@soft").
	Embeddings []string `json:"cached_embeddings"`
}

// VolumeInfo describes a volume: its voxel grid and the slices along each
// axis, with the size of the 2-D image each axis's slices become.
type VolumeInfo struct {
	Dim         [3]int                `json:"dim"`
	Spacing     [3]float64            `json:"spacing_mm"`
	Orientation string                `json:"orientation"`
	Modality    string                `json:"modality,omitempty"`
	Window      string                `json:"window"`
	Windows     []string              `json:"window_presets"`
	Slices      map[string]SliceCount `json:"slices"`
}

// SliceCount is the number of slices along an axis and their 2-D size.
type SliceCount struct {
	Count  int `json:"count"`
	Width  int `json:"width"`
	Height int `json:"height"`
}

func (s *Server) info(img *storedImage) (ImageInfo, error) {
	info := ImageInfo{ID: img.ID, Name: img.Name, Kind: string(img.Kind), Format: img.Format, Created: img.Created, Embeddings: []string{}}
	for _, k := range s.cache.Keys(img.ID) {
		e := k.slice
		if k.window != "" {
			e += "@" + k.window
		}
		info.Embeddings = append(info.Embeddings, e)
	}
	if img.Kind == kind2D {
		info.Width, info.Height = img.Image.W, img.Image.H
		return info, nil
	}
	v := img.Volume
	vi := &VolumeInfo{Dim: v.Dim, Spacing: v.Spacing(), Orientation: v.Orientation(), Modality: v.Modality,
		Window: img.Window.String(), Windows: medimg.WindowNames, Slices: map[string]SliceCount{}}
	for _, a := range medimg.Axes {
		n := v.NumSlices(a)
		si, err := v.SliceInfo(medimg.SliceSpec{Axis: a, Index: n / 2})
		if err != nil {
			return info, fmt.Errorf("volume %s: %w", img.ID, err)
		}
		vi.Slices[a.String()] = SliceCount{Count: n, Width: si.Width, Height: si.Height}
	}
	info.Volume = vi
	return info, nil
}

func (s *Server) image(r *http.Request) (*storedImage, error) {
	id := r.PathValue("id")
	img, ok := s.store.Get(id)
	if !ok {
		return nil, httpErrorf(http.StatusNotFound, "unknown image id %q (uploaded images are kept while the server runs, up to %d; see GET /v1/images)", id, s.cfg.MaxImages)
	}
	return img, nil
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) error {
	img, err := s.image(r)
	if err != nil {
		return err
	}
	info, err := s.info(img)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// ImageList is the answer of GET /v1/images.
type ImageList struct {
	Images []ImageInfo `json:"images"`
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) error {
	out := ImageList{Images: []ImageInfo{}}
	for _, img := range s.store.List() {
		info, err := s.info(img)
		if err != nil {
			return err
		}
		out.Images = append(out.Images, info)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if !s.store.Delete(id) {
		return httpErrorf(http.StatusNotFound, "unknown image id %q", id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// uploadBody returns the uploaded file: the request body, or the first file
// part of a multipart/form-data body. The body is read up to limit bytes.
func uploadBody(w http.ResponseWriter, r *http.Request, limit int64) (data []byte, filename string, err error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		data, err = io.ReadAll(body)
		return data, "", err
	}
	if params["boundary"] == "" {
		return nil, "", httpErrorf(http.StatusBadRequest, "malformed multipart upload: the Content-Type has no boundary parameter")
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, "", httpErrorf(http.StatusBadRequest, "multipart upload without a file part (or cut before one ended its headers)")
		}
		if err != nil {
			return nil, "", malformedMultipart(err, "")
		}
		if part.FileName() == "" {
			continue
		}
		data, err = io.ReadAll(part)
		if err != nil {
			return nil, "", malformedMultipart(err, part.FileName())
		}
		return data, part.FileName(), nil
	}
}

// malformedMultipart turns an error reading a multipart body into a 400
// naming the problem; the body-size limit keeps its own answer (413).
func malformedMultipart(err error, filename string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	where := "malformed multipart upload"
	if filename != "" {
		where = fmt.Sprintf("malformed multipart upload: file part %q", filename)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return httpErrorf(http.StatusBadRequest, "%s: the body ends before the closing boundary (truncated upload?)", where)
	}
	return httpErrorf(http.StatusBadRequest, "%s: %v", where, err)
}

// isNIfTI reports whether data start like an uncompressed NIfTI-1 or -2
// header (sizeof_hdr 348 or 540, in either byte order).
func isNIfTI(data []byte) bool {
	if len(data) < 4 {
		return false
	}
	le, be := binary.LittleEndian.Uint32(data), binary.BigEndian.Uint32(data)
	return le == 348 || le == 540 || be == 348 || be == 540
}

// decodeVolume reads a NIfTI volume (gzipped or not), decompressing at most
// limit bytes.
func decodeVolume(data []byte, limit int64) (*medimg.Volume, error) {
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, httpErrorf(http.StatusBadRequest, "gzip upload: %v", err)
		}
		raw, err := io.ReadAll(io.LimitReader(zr, limit+1))
		if err != nil {
			return nil, httpErrorf(http.StatusBadRequest, "gzip upload: %v", err)
		}
		if int64(len(raw)) > limit {
			return nil, httpErrorf(http.StatusRequestEntityTooLarge, "gzip upload decompresses to more than %d bytes", limit)
		}
		if !isNIfTI(raw) {
			return nil, httpErrorf(http.StatusUnsupportedMediaType, "gzip upload is not a NIfTI volume (.nii.gz)")
		}
		data = raw
	}
	img, err := nifti.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, httpErrorf(http.StatusBadRequest, "NIfTI upload: %v", err)
	}
	v, err := medimg.FromNIfTI(img)
	if err != nil {
		return nil, httpErrorf(http.StatusBadRequest, "NIfTI upload: %v", err)
	}
	return v, nil
}

// UploadResponse is the answer of POST /v1/images.
type UploadResponse struct {
	ImageInfo
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	win := medimg.DefaultWindow
	if ws := q.Get("window"); ws != "" {
		var err error
		if win, err = medimg.ParseWindow(ws); err != nil {
			return httpErrorf(http.StatusBadRequest, "%v", err)
		}
	}
	precompute := !s.cfg.DisablePrecompute
	if p := q.Get("precompute"); p != "" {
		b, err := strconv.ParseBool(p)
		if err != nil {
			return httpErrorf(http.StatusBadRequest, "precompute %q: want true or false", p)
		}
		precompute = b
	}
	limit := max(s.cfg.MaxImageBytes, s.cfg.MaxVolumeBytes)
	data, filename, err := uploadBody(w, r, limit)
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return httpErrorf(http.StatusBadRequest, "empty upload: send the image file as the request body")
	}
	name := q.Get("name")
	if name == "" {
		name = filename
	}
	if len(name) > 256 {
		name = name[:256]
	}
	img := &storedImage{Name: name, Created: time.Now().UTC()}
	gz := len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
	if gz || isNIfTI(data) {
		if int64(len(data)) > s.cfg.MaxVolumeBytes {
			return httpErrorf(http.StatusRequestEntityTooLarge, "volume of %d bytes is over the %d-byte limit", len(data), s.cfg.MaxVolumeBytes)
		}
		v, err := decodeVolume(data, s.cfg.MaxDecompressedBytes)
		if err != nil {
			return err
		}
		for _, a := range medimg.Axes {
			if _, err := v.SliceInfo(medimg.SliceSpec{Axis: a}); err != nil {
				return httpErrorf(http.StatusBadRequest, "NIfTI upload: %v", err)
			}
		}
		if _, _, err := win.Range(v); err != nil {
			return httpErrorf(http.StatusBadRequest, "window %v: %v", win, err)
		}
		img.Kind, img.Format, img.Volume, img.Window = kindVolume, "nifti", v, win
		img.Bytes = int64(len(v.Data)) * 4
	} else {
		if int64(len(data)) > s.cfg.MaxImageBytes {
			return httpErrorf(http.StatusRequestEntityTooLarge, "image of %d bytes is over the %d-byte limit", len(data), s.cfg.MaxImageBytes)
		}
		im, err := transform.DecodeImage(data)
		if err != nil {
			if errors.Is(err, transform.ErrImageTooLarge) {
				return httpErrorf(http.StatusRequestEntityTooLarge, "%v", err)
			}
			return httpErrorf(http.StatusUnsupportedMediaType, "not an image segsam reads (PNG, JPEG, .npy or NIfTI): %v", err)
		}
		img.Kind, img.Image, img.Format = kind2D, im, sniffFormat(data)
		img.Bytes = int64(len(im.Pix))
	}
	if !s.store.Add(img) {
		return httpErrorf(http.StatusRequestEntityTooLarge, "decoded image of %d bytes is over the store's %d-byte bound", img.Bytes, s.cfg.MaxStoreBytes)
	}
	if precompute {
		s.precompute(img)
	}
	info, err := s.info(img)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/images/"+img.ID)
	writeJSON(w, http.StatusCreated, UploadResponse{info})
	return nil
}

func sniffFormat(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG")):
		return "png"
	case bytes.HasPrefix(data, []byte("\xff\xd8")):
		return "jpeg"
	case bytes.HasPrefix(data, []byte("\x93NUMPY")):
		return "npy"
	}
	return "unknown"
}

// view is the 2-D image the model sees: a stored 2-D image, or a volume
// slice under a window.
type view struct {
	img    *storedImage
	slice  *medimg.SliceSpec // nil for 2-D images
	window medimg.Window
	h, w   int
}

func (v view) key() embeddingKey {
	k := embeddingKey{image: v.img.ID}
	if v.slice != nil {
		k.slice, k.window = v.slice.String(), v.window.String()
	}
	return k
}

// resolveView checks a slice and window request against an image: volumes
// need a slice within range; 2-D images take neither.
func (s *Server) resolveView(img *storedImage, slice, window string) (view, error) {
	v := view{img: img}
	if img.Kind == kind2D {
		if slice != "" {
			return v, httpErrorf(http.StatusBadRequest, "image %s is a 2-D image: it has no slice %q", img.ID, slice)
		}
		if window != "" {
			return v, httpErrorf(http.StatusBadRequest, "image %s is a 2-D image: a window applies to volumes only", img.ID)
		}
		v.h, v.w = img.Image.H, img.Image.W
		return v, nil
	}
	if slice == "" {
		return v, httpErrorf(http.StatusBadRequest, "image %s is a volume: give a slice, e.g. \"axial:%d\"", img.ID, img.Volume.NumSlices(medimg.Axial)/2)
	}
	spec, err := medimg.ParseSlice(slice)
	if err != nil {
		return v, httpErrorf(http.StatusBadRequest, "%v", err)
	}
	if n := img.Volume.NumSlices(spec.Axis); spec.Index >= n {
		return v, httpErrorf(http.StatusBadRequest, "slice %s is out of range: the volume has %d %s slices (0..%d)", spec, n, spec.Axis, n-1)
	}
	v.slice = &spec
	v.window = img.Window
	if window != "" {
		if v.window, err = medimg.ParseWindow(window); err != nil {
			return v, httpErrorf(http.StatusBadRequest, "%v", err)
		}
	}
	si, err := img.Volume.SliceInfo(spec)
	if err != nil {
		return v, httpErrorf(http.StatusBadRequest, "%v", err)
	}
	v.h, v.w = si.Height, si.Width
	return v, nil
}

// gray returns a volume view's 8-bit slice.
func (v view) gray() (*image.Gray, error) {
	g, _, err := v.img.Volume.Slice8(*v.slice, v.window)
	if err != nil {
		return nil, fmt.Errorf("slice %s: %w", v.slice, err)
	}
	return g, nil
}

// rgb returns the view as the model's RGB input.
func (v view) rgb() (transform.Image, error) {
	if v.slice == nil {
		return v.img.Image, nil
	}
	g, err := v.gray()
	if err != nil {
		return transform.Image{}, err
	}
	out, err := transform.NewImage(v.h, v.w)
	if err != nil {
		return transform.Image{}, err
	}
	for i, p := range g.Pix {
		out.Pix[3*i], out.Pix[3*i+1], out.Pix[3*i+2] = p, p, p
	}
	return out, nil
}

func (s *Server) handleRender(w http.ResponseWriter, r *http.Request) error {
	img, err := s.image(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	v, err := s.resolveView(img, q.Get("slice"), q.Get("window"))
	if err != nil {
		return err
	}
	var out image.Image
	if v.slice != nil {
		if out, err = v.gray(); err != nil {
			return err
		}
	} else {
		m := image.NewRGBA(image.Rect(0, 0, v.w, v.h))
		for i := 0; i < v.w*v.h; i++ {
			copy(m.Pix[4*i:4*i+3], img.Image.Pix[3*i:3*i+3])
			m.Pix[4*i+3] = 255
		}
		out = m
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, out); err != nil {
		return fmt.Errorf("encode PNG: %w", err)
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "private, max-age=3600")
	_, err = w.Write(buf.Bytes())
	return err
}

// ModelInfo describes the served model (GET /v1/model).
type ModelInfo struct {
	Description string   `json:"description"`
	Arch        string   `json:"arch"`
	Family      string   `json:"family"`
	ImageSize   int      `json:"image_size"`
	LowResSize  int      `json:"low_res_size"`
	Classes     []string `json:"classes"`
	// Semantic says whether predictions carry a semantic mask.
	Semantic bool `json:"semantic"`
	// EmbeddingBytes is the size of one cached embedding; CacheBytes the
	// bound on all of them.
	EmbeddingBytes int64 `json:"embedding_bytes"`
	CacheBytes     int64 `json:"cache_bytes"`
	// MaskOnlyPrompts says whether a prompt may be a mask input alone.
	MaskOnlyPrompts bool `json:"mask_only_prompts"`
}

func (s *Server) modelInfo() ModelInfo {
	mc := s.model.SAM.Model.Config
	info := ModelInfo{
		Description: "SAM " + mc.Name, Arch: mc.Name, Family: string(mc.Family),
		ImageSize: mc.ImageEncoder.ImgSize, LowResSize: mc.LowResSize(),
		Classes: []string{}, EmbeddingBytes: s.cache.entrySize, CacheBytes: s.cfg.CacheBytes,
		MaskOnlyPrompts: s.model.Model == nil,
	}
	if m := s.model.Model; m != nil {
		info.Description = m.Describe()
		info.Semantic = m.Config.Parts.SemanticDecoder
	}
	if c := s.model.Classes(); c != nil {
		info.Classes = c
	}
	return info
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.modelInfo())
	return nil
}
