package server

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/png" // PNG labels' DecodeConfig
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/medimg/nifti"
	"github.com/segsam/segsam/transform"
)

// studyCache keeps the few most recently used studies decoded (a CT is
// hundreds of MB as float32), keyed by id and datastore version, bounded by
// a count and by their decoded bytes (the most recent is always kept).
type studyCache struct {
	max      int
	maxBytes int64
	onDrop   func(id string) // drops the embeddings of a storedImage id

	mu    sync.Mutex
	items []*cachedStudy // most recent first
}

type cachedStudy struct {
	id      string
	version int
	img     *storedImage
}

func newStudyCache(max int, maxBytes int64, onDrop func(string)) *studyCache {
	return &studyCache{max: max, maxBytes: maxBytes, onDrop: onDrop}
}

// bytes is the decoded size of the cached studies. c.mu is held.
func (c *studyCache) bytes() int64 {
	var n int64
	for _, it := range c.items {
		n += it.img.Bytes
	}
	return n
}

// get returns a cached study of that version, dropping older versions.
func (c *studyCache) get(id string, version int) *storedImage {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, it := range c.items {
		if it.id != id {
			continue
		}
		if it.version != version {
			c.items = append(c.items[:i], c.items[i+1:]...)
			go c.onDrop(it.img.ID)
			return nil
		}
		copy(c.items[1:i+1], c.items[:i])
		c.items[0] = it
		return it.img
	}
	return nil
}

func (c *studyCache) put(id string, version int, img *storedImage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items = append([]*cachedStudy{{id: id, version: version, img: img}}, c.items...)
	for len(c.items) > 1 && (len(c.items) > c.max || c.bytes() > c.maxBytes) {
		old := c.items[len(c.items)-1]
		c.items = c.items[:len(c.items)-1]
		go c.onDrop(old.img.ID)
	}
}

// studyImage returns a datastore image decoded, from the cache or read.
func (s *Server) studyImage(id string) (*storedImage, error) {
	ds, err := s.datastore()
	if err != nil {
		return nil, err
	}
	f, err := ds.Image(id)
	if err != nil {
		return nil, err
	}
	id = f.id
	if img := s.loaded.get(id, f.version); img != nil {
		return img, nil
	}
	img, err := readStudyFile(f.path, f.ext)
	if err != nil {
		return nil, httpErrorf(http.StatusUnprocessableEntity, "image %q of the datastore cannot be read: %v", id, err)
	}
	img.ID = fmt.Sprintf("study:%s#%d", id, f.version)
	img.Name = id
	s.loaded.put(id, f.version, img)
	return img, nil
}

// readStudyFile decodes an image of the studies folder or of a session: a
// NIfTI file, a DICOM series folder or a PNG.
func readStudyFile(path, ext string) (*storedImage, error) {
	img := &storedImage{Created: time.Now().UTC()}
	if ext == ".png" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		im, err := transform.DecodeImage(data)
		if err != nil {
			return nil, err
		}
		img.Kind, img.Format, img.Image, img.Bytes = kind2D, "png", im, int64(len(im.Pix))
		return img, nil
	}
	v, err := medimg.ReadVolume(path)
	if err != nil {
		return nil, err
	}
	if err := checkVolume(v); err != nil {
		return nil, err
	}
	img.Kind, img.Format, img.Volume, img.Window = kindVolume, "nifti", v, medimg.DefaultWindow
	if ext == "" {
		img.Format = "dicom"
	}
	img.Bytes = int64(len(v.Data)) * 4
	return img, nil
}

// checkVolume checks that every axis can be sliced and the default window
// computed.
func checkVolume(v *medimg.Volume) error {
	for _, a := range medimg.Axes {
		if _, err := v.SliceInfo(medimg.SliceSpec{Axis: a}); err != nil {
			return err
		}
	}
	_, _, err := medimg.DefaultWindow.Range(v)
	return err
}

// decodeUploadedImage decodes an uploaded image file of a known extension
// within the server's limits.
func (s *Server) decodeUploadedImage(data []byte, ext string) (*storedImage, error) {
	if len(data) == 0 {
		return nil, httpErrorf(http.StatusBadRequest, "empty image file")
	}
	img := &storedImage{Created: time.Now().UTC()}
	if ext == ".png" {
		if int64(len(data)) > s.cfg.MaxImageBytes {
			return nil, httpErrorf(http.StatusRequestEntityTooLarge, "image of %d bytes is over the %d-byte limit", len(data), s.cfg.MaxImageBytes)
		}
		im, err := transform.DecodeImage(data)
		if err != nil {
			if errors.Is(err, transform.ErrImageTooLarge) {
				return nil, httpErrorf(http.StatusRequestEntityTooLarge, "%v", err)
			}
			return nil, httpErrorf(http.StatusUnsupportedMediaType, "not a PNG segsam reads: %v", err)
		}
		img.Kind, img.Format, img.Image, img.Bytes = kind2D, "png", im, int64(len(im.Pix))
		return img, nil
	}
	if int64(len(data)) > s.cfg.MaxVolumeBytes {
		return nil, httpErrorf(http.StatusRequestEntityTooLarge, "volume of %d bytes is over the %d-byte limit", len(data), s.cfg.MaxVolumeBytes)
	}
	gz := len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
	if ext == ".nii.gz" && !gz || ext == ".nii" && !isNIfTI(data) {
		return nil, httpErrorf(http.StatusUnsupportedMediaType, "the %s file is not a NIfTI volume", ext)
	}
	v, err := decodeVolume(data, s.cfg.MaxDecompressedBytes)
	if err != nil {
		return nil, err
	}
	if err := checkVolume(v); err != nil {
		return nil, httpErrorf(http.StatusBadRequest, "NIfTI upload: %v", err)
	}
	img.Kind, img.Format, img.Volume, img.Window = kindVolume, "nifti", v, medimg.DefaultWindow
	img.Bytes = int64(len(v.Data)) * 4
	return img, nil
}

// checkLabelFile checks an uploaded label against its image: a NIfTI label
// map of the volume's shape, or for a 2-D image a PNG (or a W x H x 1
// NIfTI) of its size.
func (s *Server) checkLabelFile(img *storedImage, data []byte, ext string) error {
	if len(data) == 0 {
		return httpErrorf(http.StatusBadRequest, "empty label file")
	}
	if int64(len(data)) > s.cfg.MaxVolumeBytes {
		return httpErrorf(http.StatusRequestEntityTooLarge, "label of %d bytes is over the %d-byte limit", len(data), s.cfg.MaxVolumeBytes)
	}
	want := [3]int{}
	if img.Kind == kindVolume {
		want = img.Volume.Dim
	} else {
		want = [3]int{img.Image.W, img.Image.H, 1}
	}
	if ext == ".png" {
		if img.Kind == kindVolume {
			return httpErrorf(http.StatusUnsupportedMediaType, "a PNG label is for a 2-D image; image %s is a volume: send a NIfTI label map (.nii.gz)", img.Name)
		}
		cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			return httpErrorf(http.StatusUnsupportedMediaType, "label is not a PNG: %v", err)
		}
		if cfg.Width != want[0] || cfg.Height != want[1] {
			return httpErrorf(http.StatusBadRequest, "label PNG is %dx%d, the image %dx%d", cfg.Width, cfg.Height, want[0], want[1])
		}
		return nil
	}
	gz := len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
	if !gz && !isNIfTI(data) {
		return httpErrorf(http.StatusUnsupportedMediaType, "label is not a NIfTI file (.nii.gz or .nii)")
	}
	v, err := decodeVolume(data, s.cfg.MaxDecompressedBytes)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return httpErrorf(he.status, "label: %s", he.msg)
		}
		return err
	}
	if v.Dim != want {
		return httpErrorf(http.StatusBadRequest, "label map has shape %v, the image %v: a label must be on the image's voxel grid", v.Dim, want)
	}
	return nil
}

// volumeNIfTI encodes a volume (a DICOM series) as a gzipped NIfTI file.
func volumeNIfTI(v *medimg.Volume) ([]byte, error) {
	img, err := nifti.New([]int{v.Dim[0], v.Dim[1], v.Dim[2]}, v.Data)
	if err != nil {
		return nil, err
	}
	img.Header.SetAffine(v.Affine, nifti.XformScannerAnat)
	return writeNIfTIBytes("image.nii.gz", func(path string) error { return nifti.Write(path, img) })
}

// writeNIfTIBytes runs a writer of a NIfTI file on a temporary path and
// returns the file's bytes.
func writeNIfTIBytes(name string, write func(path string) error) ([]byte, error) {
	dir, err := os.MkdirTemp("", "segsam-nifti-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, name)
	if err := write(path); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// safeFilename makes a name usable in a Content-Disposition header and as
// a client's file name.
func safeFilename(name string) string {
	out := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, name)
	out = strings.TrimLeft(out, ".")
	if out == "" {
		out = "image"
	}
	return out
}

// mediaType is the Content-Type of a stored file.
func mediaType(ext string) string {
	if ext == ".png" {
		return "image/png"
	}
	return "application/octet-stream"
}
