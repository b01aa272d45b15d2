//go:build ignore

// gen writes the synthetic labelled volume of testdata/segment: run it from
// the repository root with `go run testdata/segment/gen.go`.
package main

import (
	"log"

	"github.com/segsam/segsam/medimg/nifti"
)

func main() {
	const nx, ny, nz = 40, 36, 4
	// Voxels of 1.5 x 1.5 x 3 mm, the first two axes flipped (LPS-like
	// storage), an offset origin: the label map must keep all of it.
	aff := [4][4]float64{{-1.5, 0, 0, 30}, {0, -1.5, 0, 20}, {0, 0, 3, -50}, {0, 0, 0, 1}}
	ct := make([]int16, nx*ny*nz)
	lab := make([]uint8, nx*ny*nz)
	in := func(x, y, cx, cy, rx, ry float64) bool {
		dx, dy := (x-cx)/rx, (y-cy)/ry
		return dx*dx+dy*dy <= 1
	}
	for k := 0; k < nz; k++ {
		for j := 0; j < ny; j++ {
			for i := 0; i < nx; i++ {
				p := i + nx*(j+ny*k)
				x, y := float64(i), float64(j)
				v := int16(-1000) // air
				if in(x, y, 20, 18, 18, 15) {
					v = 0 // body
				}
				if in(x, y, 13, 16, 6, 7) {
					v, lab[p] = 300, 1 // "liver"
				}
				if in(x, y, 28, 20, 4, 4) && k >= 1 {
					v, lab[p] = 150, 2 // "spleen", absent from the first slice
				}
				ct[p] = v + int16((i*7+j*13+k*5)%11) // a little texture
			}
		}
	}
	write := func(path string, img *nifti.Image, label bool) {
		img.Header.SetAffine(aff, nifti.XformScannerAnat)
		if label {
			img.Header.IntentCode = nifti.IntentLabel
		}
		if err := nifti.Write(path, img); err != nil {
			log.Fatal(err)
		}
	}
	img, err := nifti.New([]int{nx, ny, nz}, ct)
	if err != nil {
		log.Fatal(err)
	}
	write("testdata/segment/phantom.nii.gz", img, false)
	limg, err := nifti.New([]int{nx, ny, nz}, lab)
	if err != nil {
		log.Fatal(err)
	}
	write("testdata/segment/phantom_label.nii.gz", limg, true)
}
