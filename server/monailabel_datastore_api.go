package server

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strings"
)

// uploadLimit bounds a multipart request holding one image or label file.
func (s *Server) uploadLimit() int64 {
	return max(s.cfg.MaxImageBytes, s.cfg.MaxVolumeBytes) + 2*maxFormValue + 64<<10
}

func (s *Server) handleMLDatastore(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	switch out := r.URL.Query().Get("output"); out {
	case "", "stats":
		writeJSON(w, http.StatusOK, ds.Stats())
	case "all":
		data, err := ds.JSON()
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, data)
	case "train":
		writeJSON(w, http.StatusOK, ds.Datalist())
	default:
		return httpErrorf(http.StatusBadRequest, "output %q: want stats, all or train", out)
	}
	return nil
}

// handleMLAddImage is PUT /datastore/?image=ID (and /datastore/image):
// multipart "file" and "params" (JSON, kept as the image's info).
func (s *Server) handleMLAddImage(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	form, err := readForm(w, r, s.uploadLimit())
	if err != nil {
		return err
	}
	file := form.file("file")
	if file == nil {
		return httpErrorf(http.StatusBadRequest, "no \"file\" part: send the image as multipart field \"file\"")
	}
	info, err := jsonObject("params", form.values["params"])
	if err != nil {
		return err
	}
	ext, err := sniffExt(file.filename, file.data, imageExts)
	if err != nil {
		return err
	}
	id := r.URL.Query().Get("image")
	if id == "" {
		base := file.filename[strings.LastIndexAny(file.filename, `/\`)+1:]
		if id, _, _ = splitExt(base, imageExts); id == "" {
			id = base
		}
	}
	if err := checkID("image id", id); err != nil {
		return err
	}
	if _, err := s.decodeUploadedImage(file.data, ext); err != nil {
		return err
	}
	if err := ds.AddImage(id, ext, file.data, info); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"image": id})
	return nil
}

func (s *Server) handleMLRemoveImage(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "id")
	if err != nil {
		return err
	}
	if err := ds.RemoveImage(id); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{})
	return nil
}

// serveStudyFile answers with a stored image (a DICOM series converted to
// NIfTI) or label file.
// load decodes the DICOM series.
func (s *Server) serveStudyFile(w http.ResponseWriter, r *http.Request, id string, f studyFile, load func() (*storedImage, error)) error {
	name := id + f.ext
	var data []byte
	var err error
	if f.dicom {
		img, err := load()
		if err != nil {
			return err
		}
		if data, err = volumeNIfTI(img.Volume); err != nil {
			return fmt.Errorf("convert DICOM series %s to NIfTI: %w", id, err)
		}
		name = id + ".nii.gz"
	} else if data, err = os.ReadFile(f.path); err != nil {
		return httpErrorf(http.StatusNotFound, "%s is gone from the studies folder: %v", name, err)
	}
	w.Header().Set("Content-Type", mediaType(f.ext))
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=\"%s\"", safeFilename(name)))
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, err = w.Write(data)
	}
	return err
}

func (s *Server) handleMLDownloadImage(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "image")
	if err != nil {
		return err
	}
	f, err := ds.Image(id)
	if err != nil {
		return err
	}
	return s.serveStudyFile(w, r, id, f, func() (*storedImage, error) { return s.studyImage(id) })
}

// handleMLCheckImage is HEAD /datastore/image?image=ID[&check_sum=ALGO:HEX]:
// 200 when the image exists (with that digest), else 404.
func (s *Server) handleMLCheckImage(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "image")
	if err != nil {
		return err
	}
	f, err := ds.Image(id)
	if err != nil {
		return err
	}
	if sum := r.URL.Query().Get("check_sum"); sum != "" && !f.dicom {
		algo, digest, ok := strings.Cut(sum, ":")
		if !ok {
			algo, digest = "SHA256", sum
		}
		var h hash.Hash
		switch strings.ToUpper(algo) {
		case "SHA256":
			h = sha256.New()
		case "SHA512":
			h = sha512.New()
		default:
			return httpErrorf(http.StatusBadRequest, "check_sum algorithm %q: want SHA256 or SHA512", algo)
		}
		fh, err := os.Open(f.path)
		if err != nil {
			return httpErrorf(http.StatusNotFound, "image %q: %v", id, err)
		}
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("checksum of %s: %w", id, err)
		}
		if !strings.EqualFold(hex.EncodeToString(h.Sum(nil)), digest) {
			return httpErrorf(http.StatusNotFound, "image %q has another %s checksum", id, algo)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{})
	return nil
}

func (s *Server) handleMLImageInfo(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "image")
	if err != nil {
		return err
	}
	info, err := ds.ImageInfo(id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) handleMLUpdateImageInfo(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "image")
	if err != nil {
		return err
	}
	form, err := readForm(w, r, 4*maxFormValue)
	if err != nil {
		return err
	}
	info, err := jsonObject("info", form.values["info"])
	if err != nil {
		return err
	}
	if err := ds.UpdateImageInfo(id, info); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{})
	return nil
}

// labelTag returns the tag query parameter (final when absent).
func labelTag(r *http.Request) (string, error) {
	tag := r.URL.Query().Get("tag")
	if tag == "" {
		tag = tagFinal
	}
	return tag, checkID("label tag", tag)
}

// handleMLSaveLabel is PUT /datastore/label?image=ID&tag=T: multipart
// "label" (a NIfTI label map on the image's grid) and "params".
func (s *Server) handleMLSaveLabel(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "image")
	if err != nil {
		return err
	}
	tag, err := labelTag(r)
	if err != nil {
		return err
	}
	if _, err := ds.Image(id); err != nil {
		return err
	}
	form, err := readForm(w, r, s.uploadLimit())
	if err != nil {
		return err
	}
	file := form.file("label")
	if file == nil {
		return httpErrorf(http.StatusBadRequest, "no \"label\" part: send the label map as multipart field \"label\"")
	}
	info, err := jsonObject("params", form.values["params"])
	if err != nil {
		return err
	}
	img, err := s.studyImage(id)
	if err != nil {
		return err
	}
	data, ext := file.data, ""
	if strings.HasSuffix(strings.ToLower(file.filename), ".bin") {
		// OHIF sends its label map's voxel buffer ("label.bin").
		if data, err = binaryLabel(img, file.data); err != nil {
			return err
		}
		ext = ".nii.gz"
	} else if ext, err = sniffExt(file.filename, file.data, labelExts); err != nil {
		return err
	}
	if err := s.checkLabelFile(img, data, ext); err != nil {
		return err
	}
	file.data = data
	if err := ds.SaveLabel(id, tag, ext, file.data, info); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"image": id, "label": id})
	return nil
}

func (s *Server) handleMLDownloadLabel(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "label")
	if err != nil {
		return err
	}
	tag, err := labelTag(r)
	if err != nil {
		return err
	}
	f, err := ds.Label(id, tag)
	if err != nil {
		return err
	}
	return s.serveStudyFile(w, r, id, f, nil)
}

func (s *Server) handleMLCheckLabel(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "image")
	if err != nil {
		return err
	}
	tag, err := labelTag(r)
	if err != nil {
		return err
	}
	if _, err := ds.Label(id, tag); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{})
	return nil
}

func (s *Server) handleMLRemoveLabel(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "id")
	if err != nil {
		return err
	}
	tag, err := requireQuery(r, "tag")
	if err != nil {
		return err
	}
	if err := ds.RemoveLabel(id, tag); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{})
	return nil
}

func (s *Server) handleMLLabelInfo(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "label")
	if err != nil {
		return err
	}
	tag, err := requireQuery(r, "tag")
	if err != nil {
		return err
	}
	info, err := ds.LabelInfo(id, tag)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) handleMLUpdateLabelInfo(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	id, err := requireQuery(r, "label")
	if err != nil {
		return err
	}
	tag, err := requireQuery(r, "tag")
	if err != nil {
		return err
	}
	form, err := readForm(w, r, 4*maxFormValue)
	if err != nil {
		return err
	}
	info, err := jsonObject("info", form.values["info"])
	if err != nil {
		return err
	}
	if err := ds.UpdateLabelInfo(id, tag, info); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{})
	return nil
}

// binaryLabel turns a raw label buffer (OHIF's "label.bin": one uint8, or
// little-endian uint16, per voxel in the volume's order) into a NIfTI label
// map with the image's geometry.
func binaryLabel(img *storedImage, data []byte) ([]byte, error) {
	if img.Kind != kindVolume {
		return nil, httpErrorf(http.StatusUnsupportedMediaType, "a raw .bin label is for a volume; send a PNG or NIfTI label for a 2-D image")
	}
	n := len(img.Volume.Data)
	labels := make([]uint16, n)
	switch len(data) {
	case n:
		for i, b := range data {
			labels[i] = uint16(b)
		}
	case 2 * n:
		for i := range labels {
			labels[i] = uint16(data[2*i]) | uint16(data[2*i+1])<<8
		}
	default:
		return nil, httpErrorf(http.StatusBadRequest, "raw .bin label of %d bytes: the image has %d voxels (want %d bytes of uint8 or %d of uint16)", len(data), n, n, 2*n)
	}
	return labelVolumeNIfTI(img.Volume, labels)
}
