package checkpoint

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// Pickle opcode argument kinds, as in Python's pickletools.
const (
	argNone     = iota
	argFixed    // n bytes
	argLine     // up to '\n'
	argTwoLines // module '\n' name '\n'
	argLen      // n-byte little-endian length, then that many bytes
	argFrame    // 8-byte frame length; the frame's opcodes follow inline
)

type opArg struct {
	kind int
	n    int
}

// pickleOps lists every opcode of pickle protocols 0-5 with its argument.
var pickleOps = map[byte]opArg{
	'(': {argNone, 0}, '.': {argNone, 0}, '0': {argNone, 0}, '1': {argNone, 0},
	'2': {argNone, 0}, 'N': {argNone, 0}, 'Q': {argNone, 0}, 'R': {argNone, 0},
	'a': {argNone, 0}, 'b': {argNone, 0}, 'd': {argNone, 0}, '}': {argNone, 0},
	'e': {argNone, 0}, 'l': {argNone, 0}, ']': {argNone, 0}, 'o': {argNone, 0},
	's': {argNone, 0}, 't': {argNone, 0}, ')': {argNone, 0}, 'u': {argNone, 0},
	0x81: {argNone, 0}, 0x85: {argNone, 0}, 0x86: {argNone, 0}, 0x87: {argNone, 0},
	0x88: {argNone, 0}, 0x89: {argNone, 0}, 0x8f: {argNone, 0}, 0x90: {argNone, 0},
	0x91: {argNone, 0}, 0x92: {argNone, 0}, 0x93: {argNone, 0}, 0x94: {argNone, 0},
	0x97: {argNone, 0}, 0x98: {argNone, 0},

	'J': {argFixed, 4}, 'K': {argFixed, 1}, 'M': {argFixed, 2}, 'h': {argFixed, 1},
	'j': {argFixed, 4}, 'q': {argFixed, 1}, 'r': {argFixed, 4}, 'G': {argFixed, 8},
	0x80: {argFixed, 1}, 0x82: {argFixed, 1}, 0x83: {argFixed, 2}, 0x84: {argFixed, 4},

	'F': {argLine, 0}, 'I': {argLine, 0}, 'L': {argLine, 0}, 'P': {argLine, 0},
	'S': {argLine, 0}, 'V': {argLine, 0}, 'g': {argLine, 0}, 'p': {argLine, 0},

	'c': {argTwoLines, 0}, 'i': {argTwoLines, 0},

	'T': {argLen, 4}, 'U': {argLen, 1}, 'X': {argLen, 4}, 'B': {argLen, 4},
	'C': {argLen, 1}, 0x8a: {argLen, 1}, 0x8b: {argLen, 4}, 0x8c: {argLen, 1},
	0x8d: {argLen, 8}, 0x8e: {argLen, 8}, 0x96: {argLen, 8},

	0x95: {argFrame, 8},
}

// readPickle reads one pickle, up to and including its STOP opcode, and
// returns its bytes. It walks the opcodes without building objects and
// checks every length field against limit, the bytes left in the input, so
// that a corrupt length cannot make the unpickler allocate absurd amounts.
func readPickle(r *bufio.Reader, limit int64) ([]byte, error) {
	var buf []byte
	remaining := limit
	take := func(n int64) ([]byte, error) {
		if n < 0 || n > remaining {
			return nil, fmt.Errorf("%w: pickle needs %d more bytes at offset %d, only %d left", ErrCorrupt, n, len(buf), remaining)
		}
		start := len(buf)
		buf = slices.Grow(buf, int(n))[:start+int(n)]
		if _, err := io.ReadFull(r, buf[start:]); err != nil {
			return nil, fmt.Errorf("%w: pickle cut short at offset %d: %v", ErrCorrupt, start, err)
		}
		remaining -= n
		return buf[start:], nil
	}
	line := func() error {
		for {
			b, err := take(1)
			if err != nil {
				return err
			}
			if b[0] == '\n' {
				return nil
			}
		}
	}
	for {
		pos := len(buf)
		b, err := take(1)
		if err != nil {
			return nil, err
		}
		op := b[0]
		if op == '.' {
			return buf, nil
		}
		arg, ok := pickleOps[op]
		if !ok {
			return nil, fmt.Errorf("%w: unknown pickle opcode 0x%02x at offset %d", ErrCorrupt, op, pos)
		}
		switch arg.kind {
		case argFixed:
			_, err = take(int64(arg.n))
		case argLine:
			err = line()
		case argTwoLines:
			if err = line(); err == nil {
				err = line()
			}
		case argLen, argFrame:
			var lb []byte
			if lb, err = take(int64(arg.n)); err != nil {
				break
			}
			var n uint64
			switch arg.n {
			case 1:
				n = uint64(lb[0])
			case 4:
				n = uint64(binary.LittleEndian.Uint32(lb))
				if (op == 'T' || op == 0x8b) && int32(n) < 0 {
					return nil, fmt.Errorf("%w: negative pickle length at offset %d", ErrCorrupt, pos)
				}
			case 8:
				n = binary.LittleEndian.Uint64(lb)
			}
			if n > uint64(remaining) {
				return nil, fmt.Errorf("%w: pickle opcode 0x%02x at offset %d declares %d bytes, only %d left", ErrCorrupt, op, pos, n, remaining)
			}
			if arg.kind == argLen {
				_, err = take(int64(n))
			}
		}
		if err != nil {
			return nil, err
		}
	}
}

// unpickle decodes pickle bytes with the stand-in classes of this package;
// persistentLoad resolves persistent ids (torch storages). A panic inside
// the unpickler is turned into an error.
func unpickle(data []byte, persistentLoad func(any) (any, error)) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			result, err = nil, fmt.Errorf("%w: unpickling failed: %v", ErrCorrupt, r)
		}
	}()
	u := pickle.NewUnpickler(bytes.NewReader(data))
	u.FindClass = findClass
	u.PersistentLoad = persistentLoad
	if persistentLoad == nil {
		u.PersistentLoad = func(any) (any, error) {
			return nil, errors.New("unexpected persistent id")
		}
	}
	result, err = u.Load()
	if err != nil {
		return nil, fmt.Errorf("%w: unpickling failed: %v", ErrCorrupt, err)
	}
	return result, nil
}

// findClass resolves the pickle's GLOBAL references. Torch's tensor
// rebuild functions and storage classes get real stand-ins; dict-like
// classes build dicts; anything else (e.g. torch.optim.adam.Adam) becomes
// a genericClass whose instances just record what they were given.
func findClass(module, name string) (any, error) {
	switch module {
	case "torch._utils":
		switch name {
		case "_rebuild_tensor_v2", "_rebuild_tensor":
			return rebuildTensor{}, nil
		case "_rebuild_parameter", "_rebuild_parameter_with_state":
			return rebuildParameter{}, nil
		}
	case "torch":
		if dt, ok := torchStorages[name]; ok {
			return &storageClass{name: "torch." + name, dt: dt, size: dt.size}, nil
		}
		if size, ok := unsupportedStorages[name]; ok {
			return &storageClass{name: "torch." + name, size: size}, nil
		}
	case "collections":
		if name == "defaultdict" {
			return dictClass{}, nil
		}
	case "__builtin__", "builtins":
		if name == "dict" {
			return dictClass{}, nil
		}
	}
	return &genericClass{module: module, name: name}, nil
}

// unsupportedStorages are storage types a checkpoint may hold (outside the
// state dict, one hopes) that this package cannot convert: element sizes, so
// that a legacy file's storages can still be stepped over.
var unsupportedStorages = map[string]int{
	"ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
	"QInt8Storage": 1, "QUInt8Storage": 1, "QInt32Storage": 4, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1,
}

// storageClass stands for torch.FloatStorage and friends.
type storageClass struct {
	name string
	dt   *dtype // nil for an unsupported storage type
	size int    // bytes per element; 0 if unknown
}

// storageRef is a storage referenced from the pickle by persistent id; its
// bytes are read only if a state-dict tensor uses it.
type storageRef struct {
	class     *storageClass
	key       string // zip: entry data/<key>; legacy: root key
	rootNumel int    // elements in the stored (root) storage
	location  string
	offset    int // elements before this storage in the root (legacy views)
	numel     int // elements of this storage (a legacy view may be shorter)
}

// tensorRef is a tensor as torch._utils._rebuild_tensor_v2 describes it.
type tensorRef struct {
	storage *storageRef
	offset  int
	shape   []int
	stride  []int
}

// rebuildTensor stands for torch._utils._rebuild_tensor_v2(storage,
// storage_offset, size, stride, requires_grad, backward_hooks[, metadata]).
type rebuildTensor struct{}

func (rebuildTensor) Call(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("_rebuild_tensor_v2: %d arguments, want at least 4", len(args))
	}
	s, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2: first argument is %s, want a storage", pyType(args[0]))
	}
	offset, ok := args[1].(int)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2: storage offset is %s, want an int", pyType(args[1]))
	}
	shape, err := intTuple(args[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(args[3], "stride")
	if err != nil {
		return nil, err
	}
	if len(shape) != len(stride) {
		return nil, fmt.Errorf("_rebuild_tensor_v2: size %v and stride %v differ in length", shape, stride)
	}
	return &tensorRef{storage: s, offset: offset, shape: shape, stride: stride}, nil
}

// rebuildParameter stands for torch._utils._rebuild_parameter(data,
// requires_grad, backward_hooks): a Parameter is its data tensor.
type rebuildParameter struct{}

func (rebuildParameter) Call(args ...any) (any, error) {
	if len(args) < 1 {
		return nil, errors.New("_rebuild_parameter: no arguments")
	}
	return args[0], nil
}

// dictClass stands for dict and collections.defaultdict: calling it gives an
// empty dict (a defaultdict's factory argument is irrelevant here).
type dictClass struct{}

func (dictClass) Call(args ...any) (any, error)  { return types.NewDict(), nil }
func (dictClass) PyNew(args ...any) (any, error) { return types.NewDict(), nil }

// genericClass stands for any class or function the loader does not need.
type genericClass struct {
	module, name string
}

func (c *genericClass) Call(args ...any) (any, error) {
	return &genericObject{class: c, args: args}, nil
}
func (c *genericClass) PyNew(args ...any) (any, error) {
	return &genericObject{class: c, args: args}, nil
}

// genericObject is an instance of a genericClass (or the result of calling a
// generic function). It accepts BUILD state, dict items and list items.
type genericObject struct {
	class *genericClass
	args  []any
	state any
	items []any
}

func (o *genericObject) PySetState(state any) error { o.state = state; return nil }
func (o *genericObject) Set(key, value any)         { o.items = append(o.items, key, value) }
func (o *genericObject) Append(v any)               { o.items = append(o.items, v) }

// intTuple converts a pickled tuple of ints.
func intTuple(v any, what string) ([]int, error) {
	t, ok := v.(*types.Tuple)
	if !ok {
		return nil, fmt.Errorf("tensor %s is %s, want a tuple", what, pyType(v))
	}
	out := make([]int, t.Len())
	for i := range out {
		n, ok := t.Get(i).(int)
		if !ok {
			return nil, fmt.Errorf("tensor %s %v: element %d is %s, want a small int", what, *t, i, pyType(t.Get(i)))
		}
		out[i] = n
	}
	return out, nil
}

// pyType names the Python-ish type of an unpickled value for messages.
func pyType(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int, *big.Int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case *types.Tuple:
		return "tuple"
	case *types.List:
		return "list"
	case *types.Dict, *types.OrderedDict:
		return "dict"
	case *tensorRef:
		return "tensor"
	case *storageRef:
		return "storage"
	case *genericObject:
		return v.class.module + "." + v.class.name + " object"
	case *genericClass:
		return v.module + "." + v.name
	default:
		return fmt.Sprintf("%T", v)
	}
}

// storageFromPID interprets a torch persistent id ('storage', class, key,
// location, numel[, view_metadata]). refs caches storages by key so that
// tensors sharing a storage share one storageRef.
func storageFromPID(pid any, refs map[string]*storageRef) (any, error) {
	t, ok := pid.(*types.Tuple)
	if !ok || t.Len() == 0 {
		return nil, fmt.Errorf("persistent id is %s, want a non-empty tuple", pyType(pid))
	}
	kind, _ := t.Get(0).(string)
	switch kind {
	case "storage":
	case "module": // legacy files may carry a module's source; unused
		return &genericObject{class: &genericClass{module: "torch", name: "module source"}}, nil
	default:
		return nil, fmt.Errorf("persistent id of unknown kind %q", kind)
	}
	if t.Len() < 5 {
		return nil, fmt.Errorf("storage persistent id has %d fields, want at least 5", t.Len())
	}
	var class *storageClass
	switch c := t.Get(1).(type) {
	case *storageClass:
		class = c
	case *genericClass: // a storage type this package cannot convert
		class = &storageClass{name: c.module + "." + c.name}
	default:
		return nil, fmt.Errorf("storage class is %s", pyType(t.Get(1)))
	}
	key, ok1 := t.Get(2).(string)
	location, ok2 := t.Get(3).(string)
	numel, ok3 := t.Get(4).(int)
	if !ok1 || !ok2 || !ok3 || numel < 0 {
		return nil, fmt.Errorf("storage persistent id (%s, %v, %v, %v): want (str key, str location, int size)",
			class.name, t.Get(2), t.Get(3), t.Get(4))
	}
	ref, ok := refs[key]
	if !ok {
		ref = &storageRef{class: class, key: key, rootNumel: numel, location: location, numel: numel}
		refs[key] = ref
	} else if ref.class.dt != class.dt {
		return nil, fmt.Errorf("storage %q used as both %s and %s", key, ref.class.name, class.name)
	}
	if t.Len() >= 6 && t.Get(5) != nil { // legacy storage view: (view_key, offset, size)
		vm, ok := t.Get(5).(*types.Tuple)
		if !ok || vm.Len() != 3 {
			return nil, fmt.Errorf("storage %q: view metadata is %s, want a 3-tuple", key, pyType(t.Get(5)))
		}
		off, ok1 := vm.Get(1).(int)
		size, ok2 := vm.Get(2).(int)
		if !ok1 || !ok2 || off < 0 || size < 0 || off > ref.rootNumel || size > ref.rootNumel-off {
			return nil, fmt.Errorf("storage %q: view (%v, %v) outside a storage of %d elements", key, vm.Get(1), vm.Get(2), ref.rootNumel)
		}
		view := *ref
		view.offset, view.numel = off, size
		return &view, nil
	}
	return ref, nil
}
