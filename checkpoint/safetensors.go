package checkpoint

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// maxSafetensorsHeader is the header size limit of the reference
// safetensors implementation (100 MB).
const maxSafetensorsHeader = 100 << 20

// metadataKey is the reserved header entry for free-form string metadata.
const metadataKey = "__metadata__"

// isSafetensors reports a plausible safetensors start: an 8-byte header
// length within the format's limit followed by '{'.
func isSafetensors(head []byte) bool {
	if len(head) < 9 || head[8] != '{' {
		return false
	}
	n := binary.LittleEndian.Uint64(head)
	return n >= 2 && n <= maxSafetensorsHeader
}

// safetensorsEntry is one tensor's header entry.
type safetensorsEntry struct {
	DType       string `json:"dtype"`
	Shape       []int  `json:"shape"`
	DataOffsets []int  `json:"data_offsets"`
}

// loadSafetensors reads a safetensors file: u64 little-endian header length
// N, N bytes of JSON header {name: {dtype, shape, data_offsets}, optional
// "__metadata__": {str: str}}, then the data; offsets are relative to the
// end of the header.
func loadSafetensors(f io.ReaderAt, size int64) (*StateDict, error) {
	var lenBuf [8]byte
	if _, err := f.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("%w: safetensors header length: %v", ErrCorrupt, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > uint64(size-8) {
		return nil, fmt.Errorf("%w: safetensors header length %d exceeds the %d bytes after it", ErrCorrupt, n, size-8)
	}
	header := make([]byte, n)
	if _, err := f.ReadAt(header, 8); err != nil {
		return nil, fmt.Errorf("%w: safetensors header: %v", ErrCorrupt, err)
	}
	names, entries, meta, err := parseSafetensorsHeader(header)
	if err != nil {
		return nil, fmt.Errorf("%w: safetensors header: %v", ErrCorrupt, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w in the safetensors header", ErrNoTensors)
	}
	dataStart := 8 + int64(n)
	dataLen := size - dataStart
	sd := &StateDict{Metadata: meta, Format: FormatSafetensors}
	for _, name := range names {
		e := entries[name]
		dt, ok := safetensorsDTypes[e.DType]
		if !ok {
			return nil, fmt.Errorf("tensor %q: unsupported safetensors dtype %q", name, e.DType)
		}
		count := 1
		for _, d := range e.Shape {
			if d < 0 {
				return nil, fmt.Errorf("%w: tensor %q: negative size in shape %v", ErrCorrupt, name, e.Shape)
			}
			if d != 0 && count > maxElements/d {
				return nil, fmt.Errorf("%w: tensor %q: absurd shape %v (more than %d elements)", ErrCorrupt, name, e.Shape, maxElements)
			}
			count *= d
		}
		if len(e.DataOffsets) != 2 {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets %v, want [begin, end]", ErrCorrupt, name, e.DataOffsets)
		}
		begin, end := int64(e.DataOffsets[0]), int64(e.DataOffsets[1])
		if begin < 0 || end < begin || end > dataLen {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets [%d, %d] outside the %d data bytes", ErrCorrupt, name, begin, end, dataLen)
		}
		if want := int64(count) * int64(dt.size); end-begin != want {
			return nil, fmt.Errorf("%w: tensor %q: %d data bytes for shape %v of %s, want %d", ErrCorrupt, name, end-begin, e.Shape, e.DType, want)
		}
		raw := make([]byte, end-begin)
		if _, err := f.ReadAt(raw, dataStart+begin); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrCorrupt, name, err)
		}
		t := &Tensor{Name: name, Shape: append([]int{}, e.Shape...), DType: dt.name, Data: make([]float32, count)}
		dt.decode(t.Data, raw)
		sd.Tensors = append(sd.Tensors, t)
	}
	return sd, nil
}

// ParseSafetensors decodes a safetensors file held in memory (e.g. a model
// embedded in the binary).
func ParseSafetensors(data []byte) (*StateDict, error) {
	if !isSafetensors(data) {
		return nil, fmt.Errorf("%w: not a safetensors file", ErrNotCheckpoint)
	}
	return loadSafetensors(bytes.NewReader(data), int64(len(data)))
}

// parseSafetensorsHeader decodes the JSON header, keeping the tensors in
// header order.
func parseSafetensorsHeader(header []byte) (names []string, entries map[string]safetensorsEntry, meta map[string]string, err error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, nil, fmt.Errorf("not a JSON object (%v)", err)
	}
	entries = make(map[string]safetensorsEntry)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, nil, err
		}
		name, _ := tok.(string)
		if name == metadataKey {
			if err := dec.Decode(&meta); err != nil {
				return nil, nil, nil, fmt.Errorf("%s: %v", metadataKey, err)
			}
			continue
		}
		if _, dup := entries[name]; dup {
			return nil, nil, nil, fmt.Errorf("tensor %q appears twice", name)
		}
		var e safetensorsEntry
		if err := dec.Decode(&e); err != nil {
			return nil, nil, nil, fmt.Errorf("tensor %q: %v", name, err)
		}
		entries[name] = e
		names = append(names, name)
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, nil, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, nil, errors.New("trailing data after the JSON object")
	}
	return names, entries, meta, nil
}

// SaveSafetensors writes the tensors (as float32, "F32", whatever their
// DType says) and the string metadata to a safetensors file at path, in the
// given order. It writes a temporary file in the same folder and renames it,
// so a failed save leaves any existing file untouched.
func SaveSafetensors(path string, tensors []*Tensor, metadata map[string]string) (err error) {
	header, err := safetensorsHeader(tensors, metadata)
	if err != nil {
		return fmt.Errorf("checkpoint: save %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("checkpoint: save %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("checkpoint: save %s: %w", path, err)
		}
	}()
	w := bufio.NewWriterSize(tmp, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := w.Write(header); err != nil {
		return err
	}
	chunk := make([]byte, 0, 1<<16)
	for _, t := range tensors {
		for _, v := range t.Data {
			chunk = binary.LittleEndian.AppendUint32(chunk, math.Float32bits(v))
			if len(chunk) == cap(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return err
				}
				chunk = chunk[:0]
			}
		}
	}
	if _, err := w.Write(chunk); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// safetensorsHeader builds the JSON header (tensors in order, metadata
// first, padded with spaces to a multiple of 8 bytes so the data is aligned).
func safetensorsHeader(tensors []*Tensor, metadata map[string]string) ([]byte, error) {
	if len(tensors) == 0 {
		return nil, errors.New("no tensors to save")
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteString(`"` + metadataKey + `":{`)
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSON(&buf, k)
			buf.WriteByte(':')
			writeJSON(&buf, metadata[k])
		}
		buf.WriteByte('}')
	}
	seen := make(map[string]bool, len(tensors))
	offset := 0
	for i, t := range tensors {
		if t == nil {
			return nil, fmt.Errorf("tensor %d is nil", i)
		}
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("tensor %d has no name", i)
		case t.Name == metadataKey:
			return nil, fmt.Errorf("tensor name %q is reserved", t.Name)
		case seen[t.Name]:
			return nil, fmt.Errorf("tensor %q appears twice", t.Name)
		}
		seen[t.Name] = true
		count := 1
		for _, d := range t.Shape {
			if d < 0 {
				return nil, fmt.Errorf("tensor %q: negative size in shape %v", t.Name, t.Shape)
			}
			if d != 0 && count > math.MaxInt/(4*d) {
				return nil, fmt.Errorf("tensor %q: absurd shape %v", t.Name, t.Shape)
			}
			count *= d
		}
		if count != len(t.Data) {
			return nil, fmt.Errorf("tensor %q: shape %v has %d elements, data has %d", t.Name, t.Shape, count, len(t.Data))
		}
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		writeJSON(&buf, t.Name)
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		buf.WriteString(`:{"dtype":"F32","shape":`)
		writeJSON(&buf, shape)
		fmt.Fprintf(&buf, `,"data_offsets":[%d,%d]}`, offset, offset+4*count)
		offset += 4 * count
	}
	buf.WriteByte('}')
	for (8+buf.Len())%8 != 0 {
		buf.WriteByte(' ')
	}
	return buf.Bytes(), nil
}

// writeJSON appends the JSON encoding of a string or []int (which cannot
// fail).
func writeJSON(buf *bytes.Buffer, v any) {
	b, _ := json.Marshal(v)
	buf.Write(b)
}
