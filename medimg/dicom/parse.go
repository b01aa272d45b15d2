// Package dicom reads single-frame DICOM image series with uncompressed
// pixel data (implicit and explicit VR little endian, explicit VR big
// endian and deflated explicit VR little endian) into a 3-D volume: slices
// ordered by position, rescale slope/intercept applied, voxel spacing and
// orientation taken from the headers. Compressed or multi-frame series are
// converted with dcm2niix when it is installed, and otherwise rejected with
// an error that says how to convert them.
package dicom

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Transfer syntax UIDs.
const (
	ImplicitVRLittleEndian         = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian         = "1.2.840.10008.1.2.1"
	DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
	ExplicitVRBigEndian            = "1.2.840.10008.1.2.2"
)

// transferSyntaxNames names common compressed transfer syntaxes for error
// messages.
var transferSyntaxNames = map[string]string{
	"1.2.840.10008.1.2.4.50":  "JPEG Baseline",
	"1.2.840.10008.1.2.4.51":  "JPEG Extended",
	"1.2.840.10008.1.2.4.57":  "JPEG Lossless",
	"1.2.840.10008.1.2.4.70":  "JPEG Lossless SV1",
	"1.2.840.10008.1.2.4.80":  "JPEG-LS Lossless",
	"1.2.840.10008.1.2.4.81":  "JPEG-LS Near-Lossless",
	"1.2.840.10008.1.2.4.90":  "JPEG 2000 Lossless",
	"1.2.840.10008.1.2.4.91":  "JPEG 2000",
	"1.2.840.10008.1.2.4.201": "HTJ2K Lossless",
	"1.2.840.10008.1.2.4.203": "HTJ2K",
	"1.2.840.10008.1.2.5":     "RLE Lossless",
}

// ErrNotDICOM is returned (wrapped) for input that is not a DICOM file.
var ErrNotDICOM = errors.New("not a DICOM file")

// ErrUnsupported is returned (wrapped) for DICOM files this package cannot
// decode itself: compressed pixel data, multi-frame or colour images.
var ErrUnsupported = errors.New("unsupported DICOM encoding")

// Tag is a DICOM attribute tag, group<<16 | element.
type Tag uint32

// Tags this package reads.
const (
	TagTransferSyntaxUID         Tag = 0x00020010
	TagSOPInstanceUID            Tag = 0x00080018
	TagModality                  Tag = 0x00080060
	TagSeriesDescription         Tag = 0x0008103E
	TagSliceThickness            Tag = 0x00180050
	TagSpacingBetweenSlices      Tag = 0x00180088
	TagSeriesInstanceUID         Tag = 0x0020000E
	TagInstanceNumber            Tag = 0x00200013
	TagImagePositionPatient      Tag = 0x00200032
	TagImageOrientationPatient   Tag = 0x00200037
	TagSamplesPerPixel           Tag = 0x00280002
	TagPhotometricInterpretation Tag = 0x00280004
	TagNumberOfFrames            Tag = 0x00280008
	TagRows                      Tag = 0x00280010
	TagColumns                   Tag = 0x00280011
	TagPixelSpacing              Tag = 0x00280030
	TagBitsAllocated             Tag = 0x00280100
	TagBitsStored                Tag = 0x00280101
	TagHighBit                   Tag = 0x00280102
	TagPixelRepresentation       Tag = 0x00280103
	TagRescaleIntercept          Tag = 0x00281052
	TagRescaleSlope              Tag = 0x00281053
	TagPixelData                 Tag = 0x7FE00010

	tagItem          Tag = 0xFFFEE000
	tagItemDelim     Tag = 0xFFFEE00D
	tagSequenceDelim Tag = 0xFFFEE0DD
)

const undefinedLength = 0xFFFFFFFF

// maxDepth bounds sequence nesting, so that crafted input cannot exhaust
// the stack.
const maxDepth = 32

// element is one top-level attribute's raw value.
type element struct {
	vr    string
	value []byte
}

// DataSet holds the top-level attributes of a DICOM file (sequences are
// skipped) and the byte order of its values.
type DataSet struct {
	// TransferSyntax is the transfer syntax UID from the file meta group
	// (implicit VR little endian when the file has no meta group).
	TransferSyntax string
	// Encapsulated reports pixel data stored as compressed fragments.
	Encapsulated bool
	elems        map[Tag]element
	order        binary.ByteOrder
}

// Has reports whether the attribute is present.
func (d *DataSet) Has(t Tag) bool { _, ok := d.elems[t]; return ok }

// String returns a text attribute with padding removed.
func (d *DataSet) String(t Tag) string {
	e, ok := d.elems[t]
	if !ok {
		return ""
	}
	return strings.TrimRight(string(e.value), " \x00")
}

// Strings returns a multi-valued text attribute split at backslashes.
func (d *DataSet) Strings(t Tag) []string {
	s := d.String(t)
	if s == "" {
		return nil
	}
	parts := strings.Split(s, `\`)
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// Floats returns a decimal-string (DS/IS) attribute's values.
func (d *DataSet) Floats(t Tag) ([]float64, error) {
	parts := d.Strings(t)
	out := make([]float64, len(parts))
	for i, p := range parts {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("attribute %s: %q is not a number", t, p)
		}
		out[i] = f
	}
	return out, nil
}

// Float returns a single-valued decimal-string attribute, or def when it is
// absent.
func (d *DataSet) Float(t Tag, def float64) (float64, error) {
	if d.String(t) == "" {
		return def, nil
	}
	v, err := d.Floats(t)
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// Uint returns an unsigned short (US) attribute, or an IS string one,
// with ok false when absent or malformed.
func (d *DataSet) Uint(t Tag) (v int, ok bool) {
	e, found := d.elems[t]
	if !found {
		return 0, false
	}
	switch {
	case e.vr == "IS" || e.vr == "DS":
		f, err := strconv.Atoi(strings.TrimSpace(strings.TrimRight(string(e.value), " \x00")))
		return f, err == nil
	case len(e.value) == 2:
		return int(d.order.Uint16(e.value)), true
	case len(e.value) == 4:
		return int(d.order.Uint32(e.value)), true
	}
	// IS attributes read with implicit VR carry no VR: try text.
	f, err := strconv.Atoi(strings.TrimSpace(strings.TrimRight(string(e.value), " \x00")))
	return f, err == nil
}

// Bytes returns an attribute's raw value bytes.
func (d *DataSet) Bytes(t Tag) []byte { return d.elems[t].value }

// String formats a tag as (gggg,eeee).
func (t Tag) String() string { return fmt.Sprintf("(%04X,%04X)", uint32(t)>>16, uint32(t)&0xFFFF) }

// Parse decodes a DICOM file: a Part-10 file (128-byte preamble, "DICM",
// file meta group) or a bare data set in implicit VR little endian. It
// reads every top-level attribute and skips sequences; it does not decode
// the pixel data.
func Parse(data []byte) (*DataSet, error) {
	ds := &DataSet{elems: map[Tag]element{}, TransferSyntax: ImplicitVRLittleEndian, order: binary.LittleEndian}
	body := data
	if len(data) >= 132 && string(data[128:132]) == "DICM" {
		p := &parser{buf: data[132:], explicit: true, order: binary.LittleEndian}
		// File meta group: explicit VR little endian, group 0002 only.
		for p.off < len(p.buf) {
			if len(p.buf)-p.off < 4 {
				return nil, fmt.Errorf("truncated file meta group")
			}
			if binary.LittleEndian.Uint16(p.buf[p.off:]) != 0x0002 {
				break
			}
			tag, e, err := p.next(0)
			if err != nil {
				return nil, fmt.Errorf("file meta group: %w", err)
			}
			ds.elems[tag] = e
		}
		if ts := ds.String(TagTransferSyntaxUID); ts != "" {
			ds.TransferSyntax = ts
		}
		body = p.buf[p.off:]
	} else if !looksLikeDataSet(data) {
		return nil, fmt.Errorf("%w: no DICM marker at byte 128 and no recognisable data set", ErrNotDICOM)
	}
	p := &parser{buf: body, explicit: true, order: binary.LittleEndian}
	switch ds.TransferSyntax {
	case ImplicitVRLittleEndian:
		p.explicit = false
	case ExplicitVRLittleEndian:
	case ExplicitVRBigEndian:
		p.order = binary.BigEndian
	case DeflatedExplicitVRLittleEndian:
		inflated, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(body)), 1<<31))
		if err != nil {
			return nil, fmt.Errorf("inflate deflated data set: %w", err)
		}
		p.buf = inflated
	default:
		// Compressed pixel data: the data set itself is explicit VR LE.
	}
	ds.order = p.order
	defer func() { ds.Encapsulated = p.encapsulated }()
	for p.off < len(p.buf) {
		tag, e, err := p.next(0)
		if err != nil {
			return nil, err
		}
		if tag>>16 == 0x0002 {
			continue // stray meta attributes in the body
		}
		ds.elems[tag] = e
		if tag == TagPixelData {
			break // nothing after the pixel data matters here
		}
	}
	return ds, nil
}

// looksLikeDataSet accepts a bare (preamble-less) implicit VR data set
// whose first tag is in group 0008 with a plausible length.
func looksLikeDataSet(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	g := binary.LittleEndian.Uint16(b)
	l := binary.LittleEndian.Uint32(b[4:])
	return (g == 0x0008 || g == 0x0002) && int64(l) <= int64(len(b))
}

// parser walks a data set.
type parser struct {
	buf          []byte
	off          int
	explicit     bool
	order        binary.ByteOrder
	encapsulated bool
}

var longVR = map[string]bool{
	"OB": true, "OD": true, "OF": true, "OL": true, "OV": true, "OW": true,
	"SQ": true, "SV": true, "UC": true, "UN": true, "UR": true, "UT": true, "UV": true,
}

func (p *parser) need(n int) error {
	if n < 0 || len(p.buf)-p.off < n {
		return fmt.Errorf("truncated data set at byte %d (need %d more bytes, %d left)", p.off, n, len(p.buf)-p.off)
	}
	return nil
}

// next reads one element. Sequences (and undefined-length values) are
// skipped and returned with a nil value.
func (p *parser) next(depth int) (Tag, element, error) {
	if err := p.need(4); err != nil {
		return 0, element{}, err
	}
	tag := Tag(uint32(p.order.Uint16(p.buf[p.off:]))<<16 | uint32(p.order.Uint16(p.buf[p.off+2:])))
	p.off += 4
	var vr string
	var length uint32
	if tag>>16 == 0xFFFE {
		// Item and delimiter tags have no VR, whatever the syntax.
		if err := p.need(4); err != nil {
			return 0, element{}, err
		}
		length = p.order.Uint32(p.buf[p.off:])
		p.off += 4
	} else if p.explicit {
		if err := p.need(4); err != nil {
			return 0, element{}, err
		}
		vr = string(p.buf[p.off : p.off+2])
		if vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
			return 0, element{}, fmt.Errorf("element %s at byte %d: invalid VR %q (wrong transfer syntax or corrupt file)", tag, p.off-4, vr)
		}
		if longVR[vr] {
			if err := p.need(8); err != nil {
				return 0, element{}, err
			}
			length = p.order.Uint32(p.buf[p.off+4:])
			p.off += 8
		} else {
			length = uint32(p.order.Uint16(p.buf[p.off+2:]))
			p.off += 4
		}
	} else {
		if err := p.need(4); err != nil {
			return 0, element{}, err
		}
		length = p.order.Uint32(p.buf[p.off:])
		p.off += 4
	}
	if length == undefinedLength {
		if tag == TagPixelData && depth == 0 {
			p.encapsulated = true
			return tag, element{vr: vr}, p.skipItems(depth+1, true)
		}
		// A sequence (SQ, UN, or any tag under implicit VR).
		return tag, element{vr: vr}, p.skipItems(depth+1, p.explicit && vr != "UN")
	}
	if err := p.need(int(length)); err != nil || int(length) < 0 {
		return 0, element{}, fmt.Errorf("truncated file: element %s: value of %d bytes runs past the end of the data", tag, length)
	}
	val := p.buf[p.off : p.off+int(length)]
	p.off += int(length)
	if vr == "SQ" {
		return tag, element{vr: vr}, nil
	}
	return tag, element{vr: vr, value: val}, nil
}

// skipItems skips the items of an undefined-length sequence (or the
// fragments of encapsulated pixel data) up to the sequence delimiter.
func (p *parser) skipItems(depth int, explicit bool) error {
	if depth > maxDepth {
		return fmt.Errorf("sequences nested deeper than %d levels", maxDepth)
	}
	for {
		if err := p.need(8); err != nil {
			return fmt.Errorf("unterminated sequence: %w", err)
		}
		tag := Tag(uint32(p.order.Uint16(p.buf[p.off:]))<<16 | uint32(p.order.Uint16(p.buf[p.off+2:])))
		length := p.order.Uint32(p.buf[p.off+4:])
		p.off += 8
		switch tag {
		case tagSequenceDelim:
			return nil
		case tagItem:
			if length != undefinedLength {
				if err := p.need(int(length)); err != nil || int(length) < 0 {
					return fmt.Errorf("truncated file: sequence item of %d bytes runs past the end of the data", length)
				}
				p.off += int(length)
				continue
			}
			// Undefined-length item: a nested data set up to the item
			// delimiter.
			saved := p.explicit
			p.explicit = explicit
			for {
				if err := p.need(8); err != nil {
					p.explicit = saved
					return fmt.Errorf("unterminated sequence item: %w", err)
				}
				t := Tag(uint32(p.order.Uint16(p.buf[p.off:]))<<16 | uint32(p.order.Uint16(p.buf[p.off+2:])))
				if t == tagItemDelim {
					p.off += 8
					break
				}
				if _, _, err := p.next(depth); err != nil {
					p.explicit = saved
					return err
				}
			}
			p.explicit = saved
		default:
			return fmt.Errorf("unexpected element %s inside a sequence at byte %d", tag, p.off-8)
		}
	}
}
