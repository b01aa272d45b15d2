package segsam

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/segsam/segsam/transform"
)

// EnableAuto makes the Segmenter label whole images without a prompt
// (eval's AutoSegmenter, eval --auto) with these options.
func (s *Segmenter) EnableAuto(opts AMGOptions, merge MergeOptions) error {
	a, err := NewAutomatic(s.P, opts)
	if err != nil {
		return err
	}
	s.auto, s.merge = a, merge
	return nil
}

// SegmentAuto implements eval.AutoSegmenter: the automatic label map of an
// image (IDs = class index + 1) and the names of its IDs. The image
// embedding comes from the cache when there is one.
func (s *Segmenter) SegmentAuto(ctx context.Context, imagePath string, h, w int) ([]uint16, map[int]string, error) {
	if s.auto == nil {
		return nil, nil, errors.New("automatic segmentation is not enabled (EnableAuto)")
	}
	data, err := os.ReadFile(imagePath)
	if err != nil {
		return nil, nil, err
	}
	img, err := transform.DecodeImage(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", imagePath, err)
	}
	if img.H != h || img.W != w {
		return nil, nil, fmt.Errorf("%s is %dx%d, expected %dx%d", imagePath, img.W, img.H, w, h)
	}
	if err := s.setImage(img, data); err != nil {
		return nil, nil, err
	}
	gen, err := s.auto.GenerateEmbedded(ctx, s.P, img)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", imagePath, err)
	}
	lm := MergeObjects(h, w, gen.Objects, s.auto.Classes(), s.merge)
	names := map[int]string{}
	for _, c := range lm.Classes {
		names[c.ID] = c.Name
	}
	return lm.Labels, names, nil
}
