package server

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/segsam/segsam/medimg"
)

// SliceLabel paints one slice's mask into a label map.
type SliceLabel struct {
	// Slice is the slice the mask was predicted on ("axial:12").
	Slice string `json:"slice"`
	// Label is the value written inside the mask (1..65535); the web page
	// uses the class index + 1.
	Label int `json:"label"`
	// RLE is the mask on the slice's 2-D grid (as predict returns it).
	RLE RLE `json:"rle"`
}

// LabelMapRequest is the body of POST /v1/images/{id}/labelmap: masks are
// painted in order (a later one overwrites an earlier one where they
// overlap) into a label volume on the image's voxel grid.
type LabelMapRequest struct {
	Masks []SliceLabel `json:"masks"`
}

func (s *Server) handleLabelMap(w http.ResponseWriter, r *http.Request) error {
	img, err := s.image(r)
	if err != nil {
		return err
	}
	if img.Kind != kindVolume {
		return httpErrorf(http.StatusBadRequest, "image %s is a 2-D image: a label map is for volumes (download the mask PNG instead)", img.ID)
	}
	var req LabelMapRequest
	if err := decodeJSON(w, r, s.cfg.MaxVolumeBytes, &req); err != nil {
		return err
	}
	vol := img.Volume
	labels := make([]uint16, len(vol.Data))
	for i, m := range req.Masks {
		if m.Label < 1 || m.Label > 65535 {
			return httpErrorf(http.StatusBadRequest, "mask %d: label %d: want 1..65535", i, m.Label)
		}
		v, err := s.resolveView(img, m.Slice, "")
		if err != nil {
			return httpErrorf(http.StatusBadRequest, "mask %d: %v", i, err)
		}
		if m.RLE.Size != [2]int{v.h, v.w} {
			return httpErrorf(http.StatusBadRequest, "mask %d: rle size %v, but slice %s is %dx%d (height, width)", i, m.RLE.Size, v.slice, v.h, v.w)
		}
		mask, err := m.RLE.Decode()
		if err != nil {
			return httpErrorf(http.StatusBadRequest, "mask %d: %v", i, err)
		}
		idx, _, err := vol.SliceVoxels(*v.slice)
		if err != nil {
			return httpErrorf(http.StatusBadRequest, "mask %d: %v", i, err)
		}
		for p, on := range mask {
			if on {
				labels[idx[p]] = uint16(m.Label)
			}
		}
	}
	dir, err := os.MkdirTemp("", "segsam-labelmap-")
	if err != nil {
		return fmt.Errorf("label map: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "labels.nii.gz")
	if err := medimg.WriteLabelNIfTI(path, vol, labels); err != nil {
		return fmt.Errorf("label map: %w", err)
	}
	name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(img.Name), ".gz"), ".nii")
	if name == "" || name == "." {
		name = img.ID
	}
	name = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < ' ' || r > '~' {
			return '_'
		}
		return r
	}, name)
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=\"%s_labels.nii.gz\"", name))
	http.ServeFile(w, r, path)
	return nil
}
