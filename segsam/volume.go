package segsam

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"sort"

	"github.com/segsam/segsam/internal/progress"
	"github.com/segsam/segsam/internal/render"
	"github.com/segsam/segsam/medimg"
	"github.com/segsam/segsam/transform"
)

// DefaultMaxVoxels is the default memory bound of SegmentVolume: 32M
// voxels (e.g. 512×512×128); the work memory is about 6 bytes per voxel per
// axis, next to the volume itself.
const DefaultMaxVoxels = 32 << 20

// VolumeOptions configures SegmentVolume.
type VolumeOptions struct {
	// Axes are the slicing directions (default: axial). With several, each
	// voxel takes the label most axes give it (background counts), ties
	// going to the higher score.
	Axes []medimg.Axis
	// Window maps intensities to 8 bits (zero value: medimg.DefaultWindow).
	Window medimg.Window
	// Merge configures each slice's label map.
	Merge MergeOptions
	// MaxVoxels bounds the volume's size (0: DefaultMaxVoxels).
	MaxVoxels int
	// Progress receives a progress bar (nil: none).
	Progress io.Writer
}

// VolumeLabels is a volume's automatic label map on the input's voxel grid.
type VolumeLabels struct {
	// Ref is the input volume: Labels are on its grid (dimensions, affine,
	// and for NIfTI input its qform/sform), in its file order (i fastest).
	Ref    *medimg.Volume
	Labels []uint16
	// Classes are the labels present, by ID (the model's class index + 1),
	// with voxel counts and volumes in mL.
	Classes []ClassEntry
	// Names maps each ID of the model's vocabulary to its class name (all
	// classes, present or not), for label-map viewers.
	Names map[int]string
	// Axes and Slices: the directions segmented and the slices run.
	Axes   []medimg.Axis
	Slices int
}

// ErrVolumeTooLarge is returned when a volume exceeds VolumeOptions.MaxVoxels.
var ErrVolumeTooLarge = fmt.Errorf("volume too large")

// SegmentVolume labels every object of a volume slice by slice along
// opts.Axes and merges the slices into a 3-D label map on the input's grid.
// Each slice is windowed to 8 bits (square pixels, as predict's --slice),
// segmented by SegmentImage, and its labels painted back into the voxels the
// slice's pixels sample; uniform slices are skipped.
func (a *Automatic) SegmentVolume(ctx context.Context, vol *medimg.Volume, opts VolumeOptions) (*VolumeLabels, error) {
	if vol == nil {
		return nil, fmt.Errorf("segment volume: no volume")
	}
	maxVox := opts.MaxVoxels
	if maxVox <= 0 {
		maxVox = DefaultMaxVoxels
	}
	n := vol.Dim[0] * vol.Dim[1] * vol.Dim[2]
	if n > maxVox {
		return nil, fmt.Errorf("%w: %v = %d voxels, more than the bound of %d voxels (crop or downsample the volume, or raise the bound)", ErrVolumeTooLarge, vol.Dim, n, maxVox)
	}
	axes := opts.Axes
	if len(axes) == 0 {
		axes = []medimg.Axis{medimg.Axial}
	}
	win := opts.Window
	if win.Name == "" {
		win = medimg.DefaultWindow
	}
	total := 0
	for _, ax := range axes {
		total += vol.NumSlices(ax)
	}
	var bar *progress.Bar
	if opts.Progress != nil {
		bar = progress.New(opts.Progress, total, "label volume")
	}
	// Per axis: each voxel's label and the score of the object that gave it.
	labels := make([][]uint16, len(axes))
	scores := make([][]float32, len(axes))
	out := &VolumeLabels{Ref: vol, Axes: axes, Names: map[int]string{}}
	best := map[int]ClassEntry{}
	for ai, ax := range axes {
		labels[ai] = make([]uint16, n)
		scores[ai] = make([]float32, n)
		for i := 0; i < vol.NumSlices(ax); i++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			spec := medimg.SliceSpec{Axis: ax, Index: i}
			img, uniform, err := sliceImage(vol, spec, win)
			if err != nil {
				return nil, err
			}
			bar.Add(1)
			if uniform {
				continue
			}
			lm, err := a.SegmentImage(ctx, img, opts.Merge)
			if err != nil {
				return nil, fmt.Errorf("slice %s: %w", spec, err)
			}
			out.Slices++
			idx, _, err := vol.SliceVoxels(spec)
			if err != nil {
				return nil, err
			}
			for p, id := range lm.Labels {
				if id != 0 && lm.Score[p] >= scores[ai][idx[p]] {
					labels[ai][idx[p]], scores[ai][idx[p]] = id, lm.Score[p]
				}
			}
			for _, c := range lm.Classes {
				b := best[c.ID]
				b.ID, b.Name = c.ID, c.Name
				b.Objects += c.Objects
				b.Score, b.Confidence = max(b.Score, c.Score), max(b.Confidence, c.Confidence)
				best[c.ID] = b
			}
		}
	}
	bar.Done()
	out.Labels = voteAxes(labels, scores)
	counts := map[int]int{}
	for _, id := range out.Labels {
		if id != 0 {
			counts[int(id)]++
		}
	}
	voxelML := voxelVolumeML(vol)
	for id, c := range counts {
		e := best[id]
		e.Pixels = c
		e.VolumeML = float64(c) * voxelML
		out.Classes = append(out.Classes, e)
	}
	sort.Slice(out.Classes, func(i, j int) bool { return out.Classes[i].ID < out.Classes[j].ID })
	for i, name := range a.Classes() {
		out.Names[i+1] = name
	}
	for _, c := range out.Classes {
		if _, ok := out.Names[c.ID]; !ok {
			out.Names[c.ID] = c.Name
		}
	}
	return out, nil
}

// voteAxes merges per-axis label volumes: each voxel takes the label given
// by most axes (background included), ties to the highest score.
func voteAxes(labels [][]uint16, scores [][]float32) []uint16 {
	if len(labels) == 1 {
		return labels[0]
	}
	out := make([]uint16, len(labels[0]))
	for v := range out {
		bestID, bestVotes, bestScore := uint16(0), 0, float32(-1)
		for a := range labels {
			id := labels[a][v]
			votes, score := 0, float32(0)
			for b := range labels {
				if labels[b][v] == id {
					votes++
					score = max(score, scores[b][v])
				}
			}
			if votes > bestVotes || (votes == bestVotes && score > bestScore) {
				bestID, bestVotes, bestScore = id, votes, score
			}
		}
		out[v] = bestID
	}
	return out
}

// voxelVolumeML is the volume of one voxel in mL (|det| of the affine's
// 3×3 part, mm³, / 1000).
func voxelVolumeML(vol *medimg.Volume) float64 {
	m := vol.Affine
	d := m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) - m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) + m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
	return math.Abs(d) / 1000
}

// sliceImage returns a slice of a volume as an RGB image, windowed, and
// whether it is uniform (nothing to segment).
func sliceImage(vol *medimg.Volume, spec medimg.SliceSpec, win medimg.Window) (transform.Image, bool, error) {
	gray, _, err := vol.Slice8(spec, win)
	if err != nil {
		return transform.Image{}, false, err
	}
	b := gray.Bounds()
	img, err := transform.NewImage(b.Dy(), b.Dx())
	if err != nil {
		return img, false, err
	}
	uniform := true
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			v := gray.Pix[y*gray.Stride+x]
			if v != gray.Pix[0] {
				uniform = false
			}
			i := (y*img.W + x) * 3
			img.Pix[i], img.Pix[i+1], img.Pix[i+2] = v, v, v
		}
	}
	return img, uniform, nil
}

// WriteNIfTI writes the label map as NIfTI (.nii or .nii.gz) on the input
// volume's grid.
func (v *VolumeLabels) WriteNIfTI(path string) error {
	return medimg.WriteLabelNIfTI(path, v.Ref, v.Labels)
}

// LabelVolume returns the label map as a medimg.Volume on the input's grid
// (float32 values, the input's affine).
func (v *VolumeLabels) LabelVolume() (*medimg.Volume, error) {
	data := make([]float32, len(v.Labels))
	for i, l := range v.Labels {
		data[i] = float32(l)
	}
	return medimg.NewVolume(v.Ref.Dim, data, v.Ref.Affine)
}

// ClassColor is the colour of a label ID in overlays and montages.
func ClassColor(id int) color.RGBA {
	return render.Palette[(id-1+len(render.Palette))%len(render.Palette)]
}

// Montage draws up to n axial slices of the volume (evenly spaced among
// those holding labels, or among all when none does) with the labels over
// them, cols per row; small slices are enlarged to about 160 pixels.
func (v *VolumeLabels) Montage(win medimg.Window, n, cols int) (*image.RGBA, error) {
	if win.Name == "" {
		win = medimg.DefaultWindow
	}
	vol := v.Ref
	ns := vol.NumSlices(medimg.Axial)
	var withLabels []int
	for i := 0; i < ns; i++ {
		idx, _, err := vol.SliceVoxels(medimg.SliceSpec{Axis: medimg.Axial, Index: i})
		if err != nil {
			return nil, err
		}
		for _, j := range idx {
			if v.Labels[j] != 0 {
				withLabels = append(withLabels, i)
				break
			}
		}
	}
	pool := withLabels
	if len(pool) == 0 {
		for i := 0; i < ns; i++ {
			pool = append(pool, i)
		}
	}
	n = max(1, min(n, len(pool)))
	cols = max(1, min(cols, n))
	var tiles []*image.RGBA
	for t := 0; t < n; t++ {
		i := pool[t*len(pool)/n]
		spec := medimg.SliceSpec{Axis: medimg.Axial, Index: i}
		img, _, err := sliceImage(vol, spec, win)
		if err != nil {
			return nil, err
		}
		idx, _, err := vol.SliceVoxels(spec)
		if err != nil {
			return nil, err
		}
		lm := make([]uint16, len(idx))
		for p, j := range idx {
			lm[p] = v.Labels[j]
		}
		tile := render.Scale(Overlay(img, lm), max(1, 160/max(img.W, img.H)))
		render.Label(tile, 2, 12, spec.String(), color.RGBA{255, 255, 255, 255})
		tiles = append(tiles, tile)
	}
	tw, th := 0, 0
	for _, t := range tiles {
		tw, th = max(tw, t.Bounds().Dx()), max(th, t.Bounds().Dy())
	}
	rows := (len(tiles) + cols - 1) / cols
	out := image.NewRGBA(image.Rect(0, 0, cols*tw, rows*th))
	for i, t := range tiles {
		ox, oy := (i%cols)*tw, (i/cols)*th
		b := t.Bounds()
		for y := 0; y < b.Dy(); y++ {
			copy(out.Pix[(oy+y)*out.Stride+ox*4:(oy+y)*out.Stride+(ox+b.Dx())*4], t.Pix[y*t.Stride:y*t.Stride+b.Dx()*4])
		}
	}
	return out, nil
}

// Overlay draws a label map (row-major, the image's size) over an image,
// each ID in its ClassColor at half opacity.
func Overlay(img transform.Image, labels []uint16) *image.RGBA {
	out := render.ToRGBA(img)
	for p, id := range labels {
		if id == 0 {
			continue
		}
		c := ClassColor(int(id))
		px := out.Pix[4*p : 4*p+3]
		px[0] = uint8((int(px[0]) + int(c.R)) / 2)
		px[1] = uint8((int(px[1]) + int(c.G)) / 2)
		px[2] = uint8((int(px[2]) + int(c.B)) / 2)
	}
	return out
}
