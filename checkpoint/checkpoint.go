// Package checkpoint loads and saves model weights.
//
// Load reads the files PyTorch's torch.save writes (the zip format of
// torch >= 1.6 and the older "legacy" pickle stream) and safetensors files,
// telling them apart by content, not by file extension. A checkpoint may be a
// bare state_dict or a dict holding it under 'model' (as SAM-Med2D saves it,
// possibly next to a whole pickled optimizer, which is ignored). Every tensor
// is converted to float32; its original dtype is kept in Tensor.DType.
//
// SaveSafetensors writes float32 tensors in the safetensors format, which
// Load reads back.
package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Format names reported in StateDict.Format.
const (
	// FormatPTHZip is torch.save's zip format (torch >= 1.6).
	FormatPTHZip = "pth-zip"
	// FormatPTHLegacy is torch.save's older non-zip pickle stream
	// (torch.save(..., _use_new_zipfile_serialization=False)).
	FormatPTHLegacy = "pth-legacy"
	// FormatSafetensors is the safetensors format.
	FormatSafetensors = "safetensors"
)

var (
	// ErrNotCheckpoint reports a file that is none of the supported formats.
	ErrNotCheckpoint = errors.New("not a checkpoint")
	// ErrCorrupt reports a file of a supported format that is damaged or
	// truncated.
	ErrCorrupt = errors.New("damaged or truncated checkpoint")
	// ErrNoTensors reports a readable checkpoint that holds no tensors.
	ErrNoTensors = errors.New("no tensors found")
)

// Tensor is one named tensor of a checkpoint, converted to float32.
type Tensor struct {
	// Name is the state_dict key, e.g. "image_encoder.pos_embed".
	Name string
	// Shape is the tensor's shape; empty for a 0-d (scalar) tensor.
	Shape []int
	// DType is the dtype the tensor had in the file: "float32", "float64",
	// "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
	// "uint16", "uint32", "uint64" or "bool" (true = 1). Integers beyond
	// 2^24 in magnitude lose precision in Data.
	DType string
	// Data holds the values in C (row-major) order.
	Data []float32
}

// StateDict is the set of tensors of one checkpoint.
type StateDict struct {
	// Tensors in file order: state_dict order for PyTorch files, header
	// order for safetensors files.
	Tensors []*Tensor
	// Metadata is the safetensors "__metadata__" map; nil for PyTorch files.
	Metadata map[string]string
	// Format is FormatPTHZip, FormatPTHLegacy or FormatSafetensors.
	Format string
}

// Get returns the tensor called name.
func (sd *StateDict) Get(name string) (*Tensor, bool) {
	for _, t := range sd.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return nil, false
}

// Names returns the tensor names in file order.
func (sd *StateDict) Names() []string {
	names := make([]string, len(sd.Tensors))
	for i, t := range sd.Tensors {
		names[i] = t.Name
	}
	return names
}

// maxListedProblems bounds how many problems Match spells out.
const maxListedProblems = 8

// Match checks the state dict against the expected tensor names and shapes.
// It returns nil when both agree, otherwise one error listing every missing,
// unexpected and mis-shaped tensor by name (the first few spelled out, then
// counts), e.g.
//
//	checkpoint: 2 problems: missing "mask_decoder.iou_token.weight" [1 256]; shape of "image_encoder.pos_embed" is [1 64 64 768], want [1 16 16 768]
func (sd *StateDict) Match(expected map[string][]int) error {
	var missing, misShaped, unexpected []string
	seen := make(map[string]bool, len(sd.Tensors))
	for _, t := range sd.Tensors {
		seen[t.Name] = true
		want, ok := expected[t.Name]
		switch {
		case !ok:
			unexpected = append(unexpected, fmt.Sprintf("unexpected %q %v", t.Name, shapeString(t.Shape)))
		case !equalShape(t.Shape, want):
			misShaped = append(misShaped, fmt.Sprintf("shape of %q is %v, want %v", t.Name, shapeString(t.Shape), shapeString(want)))
		}
	}
	names := make([]string, 0, len(expected))
	for name := range expected {
		if !seen[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		missing = append(missing, fmt.Sprintf("missing %q %v", name, shapeString(expected[name])))
	}

	n := len(missing) + len(misShaped) + len(unexpected)
	if n == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "checkpoint: %d problem", n)
	if n > 1 {
		b.WriteString("s")
	}
	if n > maxListedProblems {
		fmt.Fprintf(&b, " (%d missing, %d mis-shaped, %d unexpected)", len(missing), len(misShaped), len(unexpected))
	}
	b.WriteString(": ")
	b.WriteString(strings.Join(pickProblems(maxListedProblems, missing, misShaped, unexpected), "; "))
	if n > maxListedProblems {
		fmt.Fprintf(&b, "; and %d more", n-maxListedProblems)
	}
	return errors.New(b.String())
}

// pickProblems returns at most limit problems, sharing the slots fairly
// between the kinds, each kind in its own order.
func pickProblems(limit int, kinds ...[]string) []string {
	take := make([]int, len(kinds))
	for total, progress := 0, true; total < limit && progress; {
		progress = false
		for k := range kinds {
			if total < limit && take[k] < len(kinds[k]) {
				take[k]++
				total++
				progress = true
			}
		}
	}
	var out []string
	for k, list := range kinds {
		out = append(out, list[:take[k]]...)
	}
	return out
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// shapeString formats a shape as "[1 256]" ("[]" for a scalar).
func shapeString(shape []int) string {
	return fmt.Sprint(append([]int{}, shape...))
}

// Load reads the checkpoint at path. The format is detected from the
// content: torch.save zip, torch.save legacy pickle stream, or safetensors.
// For PyTorch files, the state dict is the top-level dict, or the dict under
// its 'model' key (or 'state_dict' key) when there is one; entries that are
// not tensors are skipped, and only the storages of the state dict's tensors
// are read.
func Load(path string) (*StateDict, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("checkpoint: load %s: is a directory", path)
	}
	size := st.Size()
	head := make([]byte, 16)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("checkpoint: read %s: %w", path, err)
	}
	head = head[:n]

	var sd *StateDict
	switch {
	case size == 0:
		err = fmt.Errorf("%w: the file is empty", ErrNotCheckpoint)
	case isZip(head):
		sd, err = loadZip(f, size)
	case isLegacy(head):
		sd, err = loadLegacy(f, size)
	case isSafetensors(head):
		sd, err = loadSafetensors(f, size)
	default:
		err = fmt.Errorf("%w: neither a torch.save file nor safetensors (starts with %q)", ErrNotCheckpoint, head)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: load %s: %w", path, err)
	}
	return sd, nil
}

// isZip reports a local file header or an empty archive's end record.
func isZip(head []byte) bool {
	return len(head) >= 4 && head[0] == 'P' && head[1] == 'K' &&
		((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6))
}

// legacyMagic is the pickled magic number that starts a legacy torch.save
// stream: PROTO n, LONG1 10 bytes 0x1950a86a20f9469cfc6c little-endian.
var legacyMagic = []byte{0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

func isLegacy(head []byte) bool {
	return len(head) >= 2+len(legacyMagic) && head[0] == 0x80 &&
		string(head[2:2+len(legacyMagic)]) == string(legacyMagic)
}
