package checkpoint

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"

	"github.com/nlpodyssey/gopickle/types"
)

// Limits that keep a corrupt file from requesting absurd allocations.
const (
	maxPickleBytes = 1 << 30 // data.pkl of a zip checkpoint
	maxDims        = 64
	maxElements    = 1 << 31 // per tensor
	maxDeflate     = 1032    // deflate's largest expansion ratio
)

// legacyProtocol is the protocol version a legacy torch.save stream records.
const legacyProtocol = 1001

// storageReader returns the bytes of the root storage of ref: at least
// ref.rootNumel elements.
type storageReader func(ref *storageRef) ([]byte, error)

// loadZip reads torch.save's zip format: <stem>/data.pkl and the storages
// <stem>/data/<key>. The folder is the file's stem when it was saved (not
// always "archive").
func loadZip(f *os.File, size int64) (*StateDict, error) {
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return nil, fmt.Errorf("%w: zip archive: %v", ErrCorrupt, err)
	}
	entries := make(map[string]*zip.File, len(zr.File))
	var pickles []string
	for _, zf := range zr.File {
		entries[zf.Name] = zf
		if zf.Name == "data.pkl" || (strings.HasSuffix(zf.Name, "/data.pkl") && strings.Count(zf.Name, "/") == 1) {
			pickles = append(pickles, zf.Name)
		}
	}
	switch len(pickles) {
	case 0:
		return nil, fmt.Errorf("%w: a zip archive without data.pkl, not a torch.save file", ErrNotCheckpoint)
	case 1:
	default:
		return nil, fmt.Errorf("%w: a zip archive with several data.pkl (%s)", ErrNotCheckpoint, strings.Join(pickles, ", "))
	}
	prefix := strings.TrimSuffix(pickles[0], "data.pkl")
	if _, ok := entries[prefix+"constants.pkl"]; ok {
		return nil, fmt.Errorf("%w: a TorchScript archive (torch.jit.save); save model.state_dict() with torch.save instead", ErrNotCheckpoint)
	}
	if zf, ok := entries[prefix+"byteorder"]; ok {
		b, err := readZipEntry(zf, 16, size)
		if err != nil {
			return nil, fmt.Errorf("%sbyteorder: %w", prefix, err)
		}
		if order := strings.TrimSpace(string(b)); order != "little" {
			return nil, fmt.Errorf("unsupported byte order %q (only little-endian files are supported)", order)
		}
	}

	data, err := readZipEntry(entries[pickles[0]], maxPickleBytes, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pickles[0], err)
	}
	pkl, err := readPickle(bufio.NewReader(bytes.NewReader(data)), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pickles[0], err)
	}
	refs := make(map[string]*storageRef)
	top, err := unpickle(pkl, func(pid any) (any, error) { return storageFromPID(pid, refs) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pickles[0], err)
	}

	read := func(ref *storageRef) ([]byte, error) {
		name := prefix + "data/" + ref.key
		zf, ok := entries[name]
		if !ok {
			return nil, fmt.Errorf("%w: storage %s is missing from the archive", ErrCorrupt, name)
		}
		need := uint64(ref.rootNumel) * uint64(ref.class.size)
		if need > zf.UncompressedSize64 {
			return nil, fmt.Errorf("%w: storage %s holds %d bytes, smaller than the %d elements of %s (%d bytes) the pickle declares",
				ErrCorrupt, name, zf.UncompressedSize64, ref.rootNumel, ref.class.name, need)
		}
		b, err := readZipPrefix(zf, need, size)
		if err != nil {
			return nil, fmt.Errorf("storage %s: %w", name, err)
		}
		return b, nil
	}
	return buildStateDict(top, FormatPTHZip, read)
}

// readZipEntry reads a whole zip entry of at most limit bytes.
func readZipEntry(zf *zip.File, limit uint64, fileSize int64) ([]byte, error) {
	if zf.UncompressedSize64 > limit {
		return nil, fmt.Errorf("%w: entry of %d bytes, more than the %d expected", ErrCorrupt, zf.UncompressedSize64, limit)
	}
	return readZipPrefix(zf, zf.UncompressedSize64, fileSize)
}

// readZipPrefix reads the first n bytes of a zip entry; when they are the
// whole entry, its CRC is checked too.
func readZipPrefix(zf *zip.File, n uint64, fileSize int64) ([]byte, error) {
	if zf.CompressedSize64 > uint64(fileSize) ||
		(zf.Method == zip.Store && n > zf.CompressedSize64) ||
		(zf.Method != zip.Store && n > maxDeflate*(zf.CompressedSize64+1)) {
		return nil, fmt.Errorf("%w: zip entry %s: sizes (%d stored, %d wanted) do not fit the file", ErrCorrupt, zf.Name, zf.CompressedSize64, n)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: zip entry %s: %v", ErrCorrupt, zf.Name, err)
	}
	defer rc.Close()
	buf := make([]byte, n)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("%w: zip entry %s: %v", ErrCorrupt, zf.Name, err)
	}
	if n == zf.UncompressedSize64 {
		var one [1]byte
		if m, err := rc.Read(one[:]); m != 0 || err != io.EOF {
			if err == nil || err == io.EOF {
				err = errors.New("longer than its declared size")
			}
			return nil, fmt.Errorf("%w: zip entry %s: %v", ErrCorrupt, zf.Name, err)
		}
	}
	return buf, nil
}

// loadLegacy reads torch.save's legacy stream: pickles of the magic number,
// the protocol version, sys_info and the object (storages as persistent
// ids), a pickled list of storage keys, then each storage in that order as
// an int64 element count followed by its raw bytes.
func loadLegacy(f *os.File, size int64) (*StateDict, error) {
	var pos int64
	next := func(what string, persistentLoad func(any) (any, error)) (any, error) {
		r := bufio.NewReader(io.NewSectionReader(f, pos, size-pos))
		data, err := readPickle(r, size-pos)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		v, err := unpickle(data, persistentLoad)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		pos += int64(len(data))
		return v, nil
	}

	magic, err := next("magic number", nil)
	if err != nil {
		return nil, err
	}
	if m, ok := magic.(*big.Int); !ok || m.Text(16) != "1950a86a20f9469cfc6c" {
		return nil, fmt.Errorf("%w: wrong legacy magic number", ErrNotCheckpoint)
	}
	proto, err := next("protocol version", nil)
	if err != nil {
		return nil, err
	}
	if p, ok := proto.(int); !ok || p != legacyProtocol {
		return nil, fmt.Errorf("unsupported legacy protocol version %v (want %d)", proto, legacyProtocol)
	}
	sysInfo, err := next("sys_info", nil)
	if err != nil {
		return nil, err
	}
	if d, ok := sysInfo.(*types.Dict); ok {
		if le, ok := d.Get("little_endian"); ok && le != true {
			return nil, errors.New("unsupported big-endian legacy file")
		}
	}
	refs := make(map[string]*storageRef)
	top, err := next("pickle", func(pid any) (any, error) { return storageFromPID(pid, refs) })
	if err != nil {
		return nil, err
	}
	keysObj, err := next("storage keys", nil)
	if err != nil {
		return nil, err
	}
	keys, ok := keysObj.(*types.List)
	if !ok {
		return nil, fmt.Errorf("%w: storage key list is %s, want a list", ErrCorrupt, pyType(keysObj))
	}

	// Index the storages that follow; read only the ones a tensor needs.
	offsets := make(map[string]int64, keys.Len())
	for i := range keys.Len() {
		key, ok := keys.Get(i).(string)
		if !ok {
			return nil, fmt.Errorf("%w: storage key %d is %s, want a str", ErrCorrupt, i, pyType(keys.Get(i)))
		}
		ref, ok := refs[key]
		if !ok {
			return nil, fmt.Errorf("%w: storage %q is listed but never referenced", ErrCorrupt, key)
		}
		if ref.class.size == 0 {
			return nil, fmt.Errorf("storage %q has unsupported type %s", key, ref.class.name)
		}
		var hdr [8]byte
		if _, err := f.ReadAt(hdr[:], pos); err != nil {
			return nil, fmt.Errorf("%w: storage %q (%d of %d) is cut short: %v", ErrCorrupt, key, i+1, keys.Len(), err)
		}
		numel := int64(binary.LittleEndian.Uint64(hdr[:]))
		left := size - pos - 8
		if numel != int64(ref.rootNumel) {
			return nil, fmt.Errorf("%w: storage %q records %d elements, the pickle declares %d", ErrCorrupt, key, numel, ref.rootNumel)
		}
		if numel > left/int64(ref.class.size) {
			return nil, fmt.Errorf("%w: storage %q (%d of %d) needs %d bytes, only %d left", ErrCorrupt, key, i+1, keys.Len(), numel*int64(ref.class.size), left)
		}
		offsets[key] = pos + 8
		pos += 8 + numel*int64(ref.class.size)
	}

	read := func(ref *storageRef) ([]byte, error) {
		off, ok := offsets[ref.key]
		if !ok {
			return nil, fmt.Errorf("%w: storage %q is not in the file's storage list", ErrCorrupt, ref.key)
		}
		b := make([]byte, int64(ref.rootNumel)*int64(ref.class.size))
		if _, err := f.ReadAt(b, off); err != nil {
			return nil, fmt.Errorf("%w: storage %q: %v", ErrCorrupt, ref.key, err)
		}
		return b, nil
	}
	return buildStateDict(top, FormatPTHLegacy, read)
}

type namedRef struct {
	name string
	ref  *tensorRef
}

// buildStateDict picks the state dict out of the unpickled object and
// materialises its tensors, reading each storage once.
func buildStateDict(top any, format string, read storageReader) (*StateDict, error) {
	entries, err := stateDictEntries(top)
	if err != nil {
		return nil, err
	}
	var order []string
	users := make(map[string][]int)
	for i, e := range entries {
		s := e.ref.storage
		if s.class.dt == nil {
			return nil, fmt.Errorf("tensor %q: unsupported storage type %s", e.name, s.class.name)
		}
		if _, err := checkView(e.ref); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrCorrupt, e.name, err)
		}
		if _, ok := users[s.key]; !ok {
			order = append(order, s.key)
		}
		users[s.key] = append(users[s.key], i)
	}
	sd := &StateDict{Tensors: make([]*Tensor, len(entries)), Format: format}
	for _, key := range order {
		idx := users[key]
		raw, err := read(entries[idx[0]].ref.storage)
		if err != nil {
			return nil, err
		}
		for _, i := range idx {
			t, err := materialise(entries[i].name, entries[i].ref, raw)
			if err != nil {
				return nil, err
			}
			sd.Tensors[i] = t
		}
	}
	return sd, nil
}

// stateDictEntries returns the tensors of the state dict: the top-level
// dict, or the dict under its 'model' (or 'state_dict') key.
func stateDictEntries(top any) ([]namedRef, error) {
	items, ok := dictItems(top)
	if !ok {
		return nil, fmt.Errorf("%w: the file holds a %s, not a dict of tensors (save model.state_dict())", ErrNoTensors, pyType(top))
	}
	items = nestedStateDict(items)
	var out []namedRef
	pos := make(map[string]int)
	var keys []string
	for _, it := range items {
		name, ok := it.Key.(string)
		if !ok {
			return nil, fmt.Errorf("state dict key %v is %s, want a str", it.Key, pyType(it.Key))
		}
		keys = append(keys, name)
		ref, ok := it.Value.(*tensorRef)
		if !ok {
			continue
		}
		if i, dup := pos[name]; dup { // a later value replaces an earlier one, as in Python
			out[i].ref = ref
			continue
		}
		pos[name] = len(out)
		out = append(out, namedRef{name, ref})
	}
	if len(out) == 0 {
		if len(keys) > 8 {
			keys = append(keys[:8], "...")
		}
		return nil, fmt.Errorf("%w (the dict has keys [%s])", ErrNoTensors, strings.Join(keys, ", "))
	}
	return out, nil
}

// nestedStateDict returns the items of the dict under the 'model' (or else
// 'state_dict') key, or items itself when there is no such dict.
func nestedStateDict(items []types.DictEntry) []types.DictEntry {
	for _, key := range []string{"model", "state_dict"} {
		for _, it := range items {
			if k, ok := it.Key.(string); ok && k == key {
				if inner, ok := dictItems(it.Value); ok {
					return inner
				}
			}
		}
	}
	return items
}

// dictItems returns the items of a pickled dict or OrderedDict in order.
func dictItems(v any) ([]types.DictEntry, bool) {
	switch d := v.(type) {
	case *types.Dict:
		return *d, true
	case *types.OrderedDict:
		out := make([]types.DictEntry, 0, d.Len())
		for e := d.List.Front(); e != nil; e = e.Next() {
			oe := e.Value.(*types.OrderedDictEntry)
			out = append(out, types.DictEntry{Key: oe.Key, Value: oe.Value})
		}
		return out, true
	}
	return nil, false
}

// checkView validates a tensor's shape, strides and offset against its
// storage and returns its element count.
func checkView(r *tensorRef) (int, error) {
	if len(r.shape) > maxDims {
		return 0, fmt.Errorf("%d dimensions, more than %d", len(r.shape), maxDims)
	}
	n := 1
	for _, d := range r.shape {
		if d < 0 {
			return 0, fmt.Errorf("negative size in shape %v", r.shape)
		}
		if d != 0 && n > maxElements/d {
			return 0, fmt.Errorf("absurd shape %v (more than %d elements)", r.shape, maxElements)
		}
		n *= d
	}
	if n == 0 {
		return 0, nil
	}
	for _, s := range r.stride {
		if s < 0 {
			return 0, fmt.Errorf("negative stride in %v", r.stride)
		}
	}
	avail := r.storage.numel
	if r.offset < 0 || r.offset >= avail {
		return 0, fmt.Errorf("storage offset %d outside storage %q of %d elements", r.offset, r.storage.key, avail)
	}
	left := avail - 1 - r.offset // furthest element reachable from the offset
	for i, d := range r.shape {
		s := r.stride[i]
		if s != 0 && d-1 > left/s {
			return 0, fmt.Errorf("view (offset %d, shape %v, stride %v) reaches past the %d elements of storage %q",
				r.offset, r.shape, r.stride, avail, r.storage.key)
		}
		left -= (d - 1) * s
	}
	return n, nil
}

// materialise converts a (checked) tensor view of the root storage bytes raw
// to a float32 Tensor in C order.
func materialise(name string, r *tensorRef, raw []byte) (*Tensor, error) {
	s := r.storage
	dt := s.class.dt
	n, err := checkView(r)
	if err != nil {
		return nil, fmt.Errorf("%w: tensor %q: %v", ErrCorrupt, name, err)
	}
	es := dt.size
	if int64(len(raw)) < int64(s.offset+s.numel)*int64(es) {
		return nil, fmt.Errorf("%w: tensor %q: storage %q has %d bytes, want %d", ErrCorrupt, name, s.key, len(raw), (s.offset+s.numel)*es)
	}
	base := raw[s.offset*es : (s.offset+s.numel)*es]
	t := &Tensor{Name: name, Shape: append([]int{}, r.shape...), DType: dt.name, Data: make([]float32, n)}
	if n == 0 {
		return t, nil
	}
	nd := len(r.shape)
	if nd == 0 || isContiguous(r.shape, r.stride) {
		dt.decode(t.Data, base[r.offset*es:])
		return t, nil
	}
	inner, innerStride := r.shape[nd-1], r.stride[nd-1]
	idx := make([]int, nd-1)
	pos := r.offset // storage index of the current row's first element
	for out := 0; out < n; out += inner {
		row := t.Data[out : out+inner]
		if innerStride == 1 {
			dt.decode(row, base[pos*es:])
		} else {
			for j := range row {
				dt.decode(row[j:j+1], base[(pos+j*innerStride)*es:])
			}
		}
		for d := nd - 2; d >= 0; d-- {
			idx[d]++
			pos += r.stride[d]
			if idx[d] < r.shape[d] {
				break
			}
			pos -= r.shape[d] * r.stride[d]
			idx[d] = 0
		}
	}
	return t, nil
}

// isContiguous reports C-order strides (dimensions of size 1 may have any
// stride).
func isContiguous(shape, stride []int) bool {
	want := 1
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && stride[i] != want {
			return false
		}
		want *= shape[i]
	}
	return true
}
