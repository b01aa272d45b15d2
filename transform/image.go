// Package transform holds SAM's and SAM-Med2D's image and prompt
// pre-processing and their mask post-processing, ported bit for bit from the
// official Python predictors (segment-anything's SamPredictor with
// ResizeLongestSide, SAM-Med2D's SammedPredictor):
//
//   - image loading to 8-bit RGB (ReadImage);
//   - PIL's antialiased bilinear resize on uint8 RGB (ResizeBilinearPIL) and
//     OpenCV's INTER_NEAREST rule (ResizeNearestCV2);
//   - the model inputs (PreprocessSAM, PreprocessSAMMed2D);
//   - prompt coordinates to the model input frame (CoordScale);
//   - low-resolution mask logits back to the original image, emulating the
//     arithmetic of torch 1.13's CPU bilinear upsampling
//     (PostprocessMasksSAM, PostprocessMasksSAMMed2D).
//
// Everything is pure Go and deterministic.
package transform

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/segsam/segsam/npy"
)

// Image is an 8-bit RGB image, HWC row-major: the value of channel c
// (0 R, 1 G, 2 B) at column x, row y is Pix[(y*W+x)*3+c].
type Image struct {
	H, W int
	Pix  []uint8
}

// Limits on what ReadImage accepts, so that a corrupt or hostile header
// cannot request an absurd allocation.
const (
	// MaxImageSide is the largest accepted width or height in pixels.
	MaxImageSide = 16384
	// MaxImagePixels is the largest accepted W*H.
	MaxImagePixels = 100_000_000
)

// ErrImageTooLarge is returned (wrapped) for images beyond MaxImageSide or
// MaxImagePixels.
var ErrImageTooLarge = errors.New("image too large")

// NewImage returns a black image of the given size.
func NewImage(h, w int) (Image, error) {
	if err := checkSize(h, w); err != nil {
		return Image{}, err
	}
	return Image{H: h, W: w, Pix: make([]uint8, h*w*3)}, nil
}

// Validate reports whether the image's dimensions and pixel buffer agree.
func (m Image) Validate() error {
	if err := checkSize(m.H, m.W); err != nil {
		return err
	}
	if len(m.Pix) != m.H*m.W*3 {
		return fmt.Errorf("image %dx%d needs %d bytes of RGB data, has %d", m.H, m.W, m.H*m.W*3, len(m.Pix))
	}
	return nil
}

func checkSize(h, w int) error {
	if h <= 0 || w <= 0 {
		return fmt.Errorf("invalid image size %dx%d (HxW)", h, w)
	}
	if h > MaxImageSide || w > MaxImageSide || h*w > MaxImagePixels {
		return fmt.Errorf("%w: %dx%d (HxW) exceeds %d px per side or %d pixels", ErrImageTooLarge, h, w, MaxImageSide, MaxImagePixels)
	}
	return nil
}

var (
	magicPNG  = []byte("\x89PNG\r\n\x1a\n")
	magicJPEG = []byte{0xFF, 0xD8, 0xFF}
	magicNPY  = []byte("\x93NUMPY")
)

// ReadImage loads a PNG, JPEG or .npy file (recognised by content, not by
// extension) as 8-bit RGB, as PIL's Image.convert("RGB") would:
//
//   - 8-bit grey is replicated into the three channels;
//   - 16-bit grey and 16-bit RGB(A) keep the high byte of each sample
//     (v >> 8), which is what OpenCV's cv2.imread (used by SAM's and
//     SAM-Med2D's scripts) and PIL's RGB;16B unpacker do. PIL opens a 16-bit
//     grey PNG in mode "I" and its convert("RGB") clamps to 0..255 instead
//     (almost every pixel white), which is not reproduced;
//   - alpha is dropped without compositing (RGBA, grey+alpha, palettes with
//     transparency), as PIL's convert("RGB") does;
//   - palette images are expanded through their palette.
//
// JPEG is decoded by Go's image/jpeg, whose IDCT and chroma upsampling are
// not bit-identical to libjpeg's: pixels may differ from PIL's by a level or
// two. A .npy file must hold a uint8 array of shape HxWx3 (RGB) or HxW
// (grey, replicated).
func ReadImage(path string) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return Image{}, fmt.Errorf("read image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Image{}, fmt.Errorf("read image %s: %w", path, err)
	}
	if st.IsDir() {
		return Image{}, fmt.Errorf("read image %s: is a directory", path)
	}
	// The largest legitimate input is an uncompressed .npy of the maximal
	// size; anything bigger is refused before reading it.
	if st.Size() > int64(MaxImagePixels)*3+1<<20 {
		return Image{}, fmt.Errorf("read image %s: %w: file of %d bytes", path, ErrImageTooLarge, st.Size())
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return Image{}, fmt.Errorf("read image %s: %w", path, err)
	}
	img, err := DecodeImage(data)
	if err != nil {
		return Image{}, fmt.Errorf("read image %s: %w", path, err)
	}
	return img, nil
}

// ErrUnknownFormat is DecodeImage's error for bytes that are neither PNG,
// JPEG nor .npy.
var ErrUnknownFormat = errors.New("unknown image format (want PNG, JPEG or .npy)")

// DecodeImage decodes PNG, JPEG or .npy bytes as ReadImage does.
func DecodeImage(data []byte) (Image, error) {
	switch {
	case len(data) == 0:
		return Image{}, errors.New("empty file")
	case bytes.HasPrefix(data, magicPNG):
		return decodeStd(data, "PNG", png.DecodeConfig, png.Decode)
	case bytes.HasPrefix(data, magicJPEG):
		return decodeStd(data, "JPEG", jpeg.DecodeConfig, jpeg.Decode)
	case bytes.HasPrefix(data, magicNPY):
		return decodeNPY(data)
	default:
		return Image{}, ErrUnknownFormat
	}
}

func decodeStd(data []byte, format string,
	config func(io.Reader) (image.Config, error),
	decode func(io.Reader) (image.Image, error)) (Image, error) {
	cfg, err := config(bytes.NewReader(data))
	if err != nil {
		return Image{}, fmt.Errorf("decode %s header: %w", format, err)
	}
	if err := checkSize(cfg.Height, cfg.Width); err != nil {
		return Image{}, fmt.Errorf("%s: %w", format, err)
	}
	src, err := decode(bytes.NewReader(data))
	if err != nil {
		return Image{}, fmt.Errorf("decode %s: %w", format, err)
	}
	return toRGB(src)
}

// toRGB converts a decoded image to 8-bit RGB (see ReadImage for the rules).
func toRGB(src image.Image) (Image, error) {
	b := src.Bounds()
	out, err := NewImage(b.Dy(), b.Dx())
	if err != nil {
		return Image{}, err
	}
	p := out.Pix
	i := 0
	switch s := src.(type) {
	case *image.Gray:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := s.Pix[s.PixOffset(b.Min.X, y):]
			for x := 0; x < out.W; x++ {
				v := row[x]
				p[i], p[i+1], p[i+2] = v, v, v
				i += 3
			}
		}
	case *image.Gray16:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := s.Pix[s.PixOffset(b.Min.X, y):]
			for x := 0; x < out.W; x++ {
				v := row[2*x] // big-endian: the high byte
				p[i], p[i+1], p[i+2] = v, v, v
				i += 3
			}
		}
	case *image.NRGBA:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := s.Pix[s.PixOffset(b.Min.X, y):]
			for x := 0; x < out.W; x++ {
				copy(p[i:i+3], row[4*x:4*x+3])
				i += 3
			}
		}
	case *image.NRGBA64:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := s.Pix[s.PixOffset(b.Min.X, y):]
			for x := 0; x < out.W; x++ {
				p[i], p[i+1], p[i+2] = row[8*x], row[8*x+2], row[8*x+4]
				i += 3
			}
		}
	case *image.Paletted:
		pal := make([][3]uint8, len(s.Palette))
		for k, c := range s.Palette {
			n := color.NRGBAModel.Convert(c).(color.NRGBA)
			pal[k] = [3]uint8{n.R, n.G, n.B}
		}
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := s.Pix[s.PixOffset(b.Min.X, y):]
			for x := 0; x < out.W; x++ {
				idx := int(row[x])
				if idx >= len(pal) {
					return Image{}, fmt.Errorf("palette index %d out of range (%d colours)", idx, len(pal))
				}
				c := pal[idx]
				p[i], p[i+1], p[i+2] = c[0], c[1], c[2]
				i += 3
			}
		}
	default:
		// RGBA, RGBA64 (opaque PNGs), YCbCr and CMYK (JPEG), ...: through
		// the non-premultiplied model, high byte of each 16-bit channel.
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				n := color.NRGBA64Model.Convert(src.At(x, y)).(color.NRGBA64)
				p[i], p[i+1], p[i+2] = uint8(n.R>>8), uint8(n.G>>8), uint8(n.B>>8)
				i += 3
			}
		}
	}
	return out, nil
}

var (
	reNPYShape = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
	reNPYUint8 = regexp.MustCompile(`'descr'\s*:\s*'[|<>=]?u1'`)
)

// checkNPYHeader rejects, before anything is allocated, a .npy whose header
// is not uint8 or announces more elements than the file holds.
func checkNPYHeader(data []byte) error {
	if len(data) < 10 {
		return errors.New("truncated .npy header")
	}
	var start, hlen int
	switch data[6] {
	case 1:
		start, hlen = 10, int(binary.LittleEndian.Uint16(data[8:10]))
	case 2, 3:
		if len(data) < 12 {
			return errors.New("truncated .npy header")
		}
		start, hlen = 12, int(binary.LittleEndian.Uint32(data[8:12]))
	default:
		return fmt.Errorf("unsupported .npy format version %d.%d", data[6], data[7])
	}
	if hlen > len(data)-start {
		return errors.New("truncated .npy header")
	}
	header := string(data[start : start+hlen])
	if !reNPYUint8.MatchString(header) {
		return fmt.Errorf(".npy image is not uint8 (header %q)", strings.TrimSpace(header))
	}
	m := reNPYShape.FindStringSubmatch(header)
	if m == nil {
		return errors.New(".npy header has no shape")
	}
	avail := len(data) - start - hlen
	n := 1
	for _, f := range strings.Split(m[1], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := strconv.Atoi(f)
		if err != nil || d < 0 {
			return fmt.Errorf("bad dimension %q in .npy shape", f)
		}
		if d > 0 && n > avail/d {
			return fmt.Errorf(".npy shape (%s) needs more data than the file's %d bytes", m[1], avail)
		}
		n *= d
	}
	return nil
}

func decodeNPY(data []byte) (Image, error) {
	if err := checkNPYHeader(data); err != nil {
		return Image{}, err
	}
	a, err := npy.Decode(bytes.NewReader(data))
	if err != nil {
		return Image{}, fmt.Errorf("decode .npy: %w", err)
	}
	if a.DType != "u1" {
		return Image{}, fmt.Errorf(".npy image has dtype %s, want uint8 (u1)", a.DType)
	}
	var h, w int
	switch {
	case len(a.Shape) == 3 && a.Shape[2] == 3:
		h, w = a.Shape[0], a.Shape[1]
	case len(a.Shape) == 2:
		h, w = a.Shape[0], a.Shape[1]
	default:
		return Image{}, fmt.Errorf(".npy image has shape %v, want HxWx3 (RGB) or HxW (grey)", a.Shape)
	}
	if err := checkSize(h, w); err != nil {
		return Image{}, fmt.Errorf(".npy: %w", err)
	}
	v, err := a.Uint8()
	if err != nil {
		return Image{}, fmt.Errorf("decode .npy: %w", err)
	}
	if len(a.Shape) == 3 {
		return Image{H: h, W: w, Pix: v}, nil
	}
	out := Image{H: h, W: w, Pix: make([]uint8, h*w*3)}
	for i, g := range v {
		out.Pix[3*i], out.Pix[3*i+1], out.Pix[3*i+2] = g, g, g
	}
	return out, nil
}
