package server

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/segsam/segsam/medimg"
)

// labelNRRD encodes a label map on vol's voxel grid (labels in file order,
// i fastest) as an NRRD file, the format OHIF's MONAI Label extension asks
// for (result_extension ".nrrd"): uint8 when every label fits, else uint16,
// little-endian, raw or gzip-encoded, with the grid's geometry in LPS
// (NRRD's "left-posterior-superior" space; the volume's affine is RAS+).
func labelNRRD(vol *medimg.Volume, labels []uint16, gz bool) ([]byte, error) {
	if len(labels) != len(vol.Data) {
		return nil, fmt.Errorf("nrrd: %d labels for %d voxels", len(labels), len(vol.Data))
	}
	maxLabel := uint16(0)
	for _, l := range labels {
		maxLabel = max(maxLabel, l)
	}
	var data bytes.Buffer
	typ := "uint8"
	if maxLabel > 255 {
		typ = "uint16"
		if err := binary.Write(&data, binary.LittleEndian, labels); err != nil {
			return nil, err
		}
	} else {
		b := make([]byte, len(labels))
		for i, l := range labels {
			b[i] = byte(l)
		}
		data.Write(b)
	}
	// x+0 writes -0 as 0.
	num := func(x float64) string { return strconv.FormatFloat(x+0, 'g', -1, 64) }
	lps := [3]float64{-1, -1, 1} // RAS+ to LPS
	var dirs []string
	for c := 0; c < 3; c++ {
		dirs = append(dirs, fmt.Sprintf("(%s,%s,%s)", num(lps[0]*vol.Affine[0][c]), num(lps[1]*vol.Affine[1][c]), num(lps[2]*vol.Affine[2][c])))
	}
	encoding := "raw"
	if gz {
		encoding = "gzip"
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "NRRD0004\n# segsam label map\ntype: %s\ndimension: 3\nspace: left-posterior-superior\n", typ)
	fmt.Fprintf(&out, "sizes: %d %d %d\nspace directions: %s\nkinds: domain domain domain\nendian: little\nencoding: %s\n",
		vol.Dim[0], vol.Dim[1], vol.Dim[2], strings.Join(dirs, " "), encoding)
	fmt.Fprintf(&out, "space origin: (%s,%s,%s)\n\n", num(lps[0]*vol.Affine[0][3]), num(lps[1]*vol.Affine[1][3]), num(lps[2]*vol.Affine[2][3]))
	if !gz {
		out.Write(data.Bytes())
		return out.Bytes(), nil
	}
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(data.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
