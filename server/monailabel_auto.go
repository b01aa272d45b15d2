package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/segsam"
)

// autoSegmenter is MONAI Label's automatic model backed by the server's own
// "label everything" (segsam.Automatic with the server's automatic
// defaults, SetAutomaticDefaults): the volume is segmented slice by slice
// along the axial direction with the default window and merged into one
// label map on its grid. Config.AutomaticModel installs it.
type autoSegmenter struct{ s *Server }

// SegmentVolume implements VolumeSegmenter. Label values are the model's
// class indices + 1; names cover the classes found.
func (g autoSegmenter) SegmentVolume(ctx context.Context, vol *medimg.Volume) ([]uint16, map[string]int, error) {
	a, err := segsam.NewAutomatic(g.s.model, g.s.autoDefaults())
	if err != nil {
		return nil, nil, err
	}
	// One encoder slot for the whole volume, as segment-all.
	select {
	case g.s.encodes <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	vl, err := a.SegmentVolume(ctx, vol, segsam.VolumeOptions{})
	<-g.s.encodes
	if err != nil {
		return nil, nil, err
	}
	names := make(map[string]int, len(vl.Classes))
	for _, c := range vl.Classes {
		names[c.Name] = c.ID
	}
	return vl.Labels, names, nil
}

// installAutoSegmenter gives the server its own automatic model when the
// configuration asks for it and the model names classes (SEG-SAM).
func (s *Server) installAutoSegmenter() {
	if s.cfg.Segmenter != nil || !s.cfg.AutomaticModel || s.model.Model == nil {
		return // a plain SAM has no class names: segsam_auto stays unlisted
	}
	s.cfg.Segmenter = autoSegmenter{s}
}

// autoError maps the automatic segmenter's failures to HTTP statuses.
func autoError(err error) error {
	if errors.Is(err, segsam.ErrVolumeTooLarge) {
		return httpErrorf(http.StatusRequestEntityTooLarge, "%v", err)
	}
	return fmt.Errorf("segment volume: %w", err)
}
