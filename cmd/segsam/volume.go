package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/transform"
)

// readInputImage reads a 2D image, or one slice of a volume (NIfTI file or
// DICOM series) windowed to 8 bits, as an RGB image.
func readInputImage(path, slice, window string) (transform.Image, error) {
	isVolume := medimg.IsNIfTIPath(path)
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		isVolume = true
	}
	if !isVolume && slice == "" {
		img, err := transform.ReadImage(path)
		if err == nil {
			return img, nil
		}
		if _, verr := medimg.ReadVolume(path); verr != nil {
			// Not a volume either: the image error says why.
			if errors.Is(err, transform.ErrUnknownFormat) {
				return transform.Image{}, fmt.Errorf("read image %s: unknown format (want PNG, JPEG or .npy, or a volume: NIfTI .nii/.nii.gz or DICOM, with --slice)", path)
			}
			return transform.Image{}, err
		}
		return transform.Image{}, usageErrorf("%s is a volume: give the slice to segment with --slice AXIS:INDEX (e.g. axial:40)", path)
	}
	var vol *medimg.Volume
	if !isVolume {
		// --slice with a file that may be a DICOM file or a 2-D image.
		var verr error
		if vol, verr = medimg.ReadVolume(path); verr != nil {
			if _, ierr := transform.ReadImage(path); ierr == nil {
				return transform.Image{}, usageErrorf("--slice is for volumes (NIfTI, DICOM); %s is a 2-D image: drop --slice", path)
			}
			return transform.Image{}, fmt.Errorf("read %s: not an image segsam reads (PNG, JPEG or .npy; with --slice a NIfTI or DICOM volume): %v", path, verr)
		}
	}
	if slice == "" {
		return transform.Image{}, usageErrorf("%s is a volume: give the slice to segment with --slice AXIS:INDEX (e.g. axial:40)", path)
	}
	spec, err := medimg.ParseSlice(slice)
	if err != nil {
		return transform.Image{}, usageErrorf("--slice: %v", err)
	}
	win, err := medimg.ParseWindow(window)
	if err != nil {
		return transform.Image{}, usageErrorf("--window: %v", err)
	}
	if vol == nil {
		if vol, err = medimg.ReadVolume(path); err != nil {
			return transform.Image{}, err
		}
	}
	gray, _, err := vol.Slice8(spec, win)
	if err != nil {
		return transform.Image{}, usageErrorf("%v", err)
	}
	b := gray.Bounds()
	img, err := transform.NewImage(b.Dy(), b.Dx())
	if err != nil {
		return transform.Image{}, err
	}
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			v := gray.Pix[y*gray.Stride+x]
			i := (y*img.W + x) * 3
			img.Pix[i], img.Pix[i+1], img.Pix[i+2] = v, v, v
		}
	}
	return img, nil
}
