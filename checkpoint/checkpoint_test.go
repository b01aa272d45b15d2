package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segsam/segsam/npy"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	refDir      = "../testdata/checkpoint"
	fixturesDir = "../testdata/fixtures"
)

// expectedFile is one entry of testdata/checkpoint/expected.json, written
// by gen.py from what torch.load returns.
type expectedFile struct {
	Format   string            `json:"format"`
	Metadata map[string]string `json:"metadata"`
	Tensors  []struct {
		Name  string  `json:"name"`
		Shape []int   `json:"shape"`
		DType string  `json:"dtype"`
		Sum   float64 `json:"sum"`
		SumSq float64 `json:"sumsq"`
		NPY   string  `json:"npy"`
	} `json:"tensors"`
}

func readExpected(t *testing.T) map[string]expectedFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(refDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]expectedFile
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("expected.json: %v", err)
	}
	return m
}

func mustLoad(t *testing.T, path string) *StateDict {
	t.Helper()
	sd, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return sd
}

// TestLoadMatchesTorch compares every file gen.py described with what
// torch.load saw: names in order, shapes, dtypes, sums of all values and,
// where a .npy was written, every value exactly.
func TestLoadMatchesTorch(t *testing.T) {
	files := []string{
		"views.pth", "views_legacy.pth", "half.pth", "legacy_train.pth", "handmade.safetensors",
		"../fixtures/sam_tiny/sam_tiny.pth",
		"../fixtures/sammed2d_tiny/sammed2d_tiny.pth",
		"../fixtures/sammed2d_tiny/sammed2d_tiny_train_format.pth",
	}
	expected := readExpected(t)
	if len(expected) != len(files) {
		t.Errorf("expected.json describes %d files, the test covers %d", len(expected), len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want, ok := expected[file]
			if !ok {
				t.Fatalf("%s not in expected.json", file)
			}
			sd := mustLoad(t, filepath.Join(refDir, file))
			if sd.Format != want.Format {
				t.Errorf("Format = %q, want %q", sd.Format, want.Format)
			}
			if want.Metadata != nil && fmt.Sprint(sd.Metadata) != fmt.Sprint(want.Metadata) {
				t.Errorf("Metadata = %v, want %v", sd.Metadata, want.Metadata)
			}
			if len(sd.Tensors) != len(want.Tensors) {
				t.Fatalf("%d tensors, want %d (names %v)", len(sd.Tensors), len(want.Tensors), sd.Names())
			}
			for i, w := range want.Tensors {
				got := sd.Tensors[i]
				if got.Name != w.Name || !equalShape(got.Shape, w.Shape) || got.DType != w.DType {
					t.Errorf("tensor %d = %q %v %s, want %q %v %s", i, got.Name, got.Shape, got.DType, w.Name, w.Shape, w.DType)
					continue
				}
				n := 1
				for _, d := range w.Shape {
					n *= d
				}
				if len(got.Data) != n {
					t.Errorf("%s: %d values, want %d", w.Name, len(got.Data), n)
					continue
				}
				var sum, sumsq float64
				for _, v := range got.Data {
					sum += float64(v)
					sumsq += float64(v) * float64(v)
				}
				tol := 1e-9 * (1 + math.Sqrt(float64(n)*w.SumSq))
				if math.Abs(sum-w.Sum) > tol || math.Abs(sumsq-w.SumSq) > 1e-9*(1+w.SumSq) {
					t.Errorf("%s: sum %g, sumsq %g; want %g, %g", w.Name, sum, sumsq, w.Sum, w.SumSq)
				}
				if w.NPY == "" {
					continue
				}
				ref, err := npy.Read(filepath.Join(refDir, w.NPY))
				if err != nil {
					t.Fatal(err)
				}
				if !equalShape(ref.Shape, w.Shape) {
					t.Fatalf("%s has shape %v, want %v", w.NPY, ref.Shape, w.Shape)
				}
				for j, v := range ref.Float32() {
					if math.Float32bits(got.Data[j]) != math.Float32bits(v) {
						t.Errorf("%s[%d] = %g, torch gives %g", w.Name, j, got.Data[j], v)
						break
					}
				}
			}
		})
	}
}

// TestFixtureInitStatistics checks the sam_tiny values against the
// initialisation recorded in config.json (independent of gen.py): the
// state_dict order, and each tensor's mean and std within sampling error.
func TestFixtureInitStatistics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixturesDir, "sam_tiny", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Init struct {
			PerTensor json.RawMessage `json:"per_tensor"`
		} `json:"init"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	// Keep the JSON key order: it is the state_dict order.
	dec := json.NewDecoder(bytes.NewReader(cfg.Init.PerTensor))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	type stat struct {
		Mean, Std float64
	}
	var names []string
	stats := map[string]stat{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var s stat
		if err := dec.Decode(&s); err != nil {
			t.Fatal(err)
		}
		names = append(names, tok.(string))
		stats[tok.(string)] = s
	}

	sd := mustLoad(t, filepath.Join(fixturesDir, "sam_tiny", "sam_tiny.pth"))
	if got := sd.Names(); strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("names differ from config.json init.per_tensor:\n got %v\nwant %v", got, names)
	}
	for _, tensor := range sd.Tensors {
		want := stats[tensor.Name]
		n := float64(len(tensor.Data))
		var sum, sumsq float64
		for _, v := range tensor.Data {
			sum += float64(v)
		}
		mean := sum / n
		for _, v := range tensor.Data {
			sumsq += (float64(v) - mean) * (float64(v) - mean)
		}
		if n < 2 {
			continue
		}
		std := math.Sqrt(sumsq / (n - 1))
		// 5 standard errors for the mean; the sample std of n normal draws
		// has relative error about 1/sqrt(2n).
		if math.Abs(mean-want.Mean) > 5*want.Std/math.Sqrt(n) {
			t.Errorf("%s: mean %.4f, want %.4f ± %.4f", tensor.Name, mean, want.Mean, 5*want.Std/math.Sqrt(n))
		}
		if math.Abs(std-want.Std) > want.Std*(5/math.Sqrt(2*n)+0.01) {
			t.Errorf("%s: std %.4f, want %.4f (n=%d)", tensor.Name, std, want.Std, int(n))
		}
	}
}

// TestTrainFormat: the file with a pickled Adam optimizer gives the same
// tensors as the plain {'model': ...} file, with different values (one Adam
// step), and nothing of the optimizer.
func TestTrainFormat(t *testing.T) {
	plain := mustLoad(t, filepath.Join(fixturesDir, "sammed2d_tiny", "sammed2d_tiny.pth"))
	train := mustLoad(t, filepath.Join(fixturesDir, "sammed2d_tiny", "sammed2d_tiny_train_format.pth"))
	expected := map[string][]int{}
	for _, tensor := range plain.Tensors {
		expected[tensor.Name] = tensor.Shape
	}
	if err := train.Match(expected); err != nil {
		t.Fatal(err)
	}
	if strings.Join(plain.Names(), ",") != strings.Join(train.Names(), ",") {
		t.Error("tensor order differs between the plain and the train-format file")
	}
	changed := 0
	for i, tensor := range train.Tensors {
		for j, v := range tensor.Data {
			if v != plain.Tensors[i].Data[j] {
				changed++
				break
			}
		}
	}
	if changed == 0 {
		t.Error("train-format weights equal the plain ones; want the values after one Adam step")
	}
}

func TestGetAndNames(t *testing.T) {
	sd := mustLoad(t, filepath.Join(refDir, "views.pth"))
	names := sd.Names()
	if len(names) != len(sd.Tensors) || names[0] != "base" || names[len(names)-1] != "bf16_cols" {
		t.Errorf("Names() = %v", names)
	}
	tensor, ok := sd.Get("slice")
	if !ok || !equalShape(tensor.Shape, []int{2, 3}) {
		t.Fatalf("Get(slice) = %v, %v", tensor, ok)
	}
	// base = arange(24).reshape(4, 6)*0.5 - 3; slice = base[1:3, 2:5].
	want := []float32{1, 1.5, 2, 4, 4.5, 5}
	if fmt.Sprint(tensor.Data) != fmt.Sprint(want) {
		t.Errorf("slice = %v, want %v", tensor.Data, want)
	}
	if _, ok := sd.Get("nope"); ok {
		t.Error(`Get("nope") found a tensor`)
	}
}

func TestMatch(t *testing.T) {
	sd := &StateDict{Tensors: []*Tensor{
		{Name: "image_encoder.pos_embed", Shape: []int{1, 64, 64, 768}},
		{Name: "a.weight", Shape: []int{2, 3}},
		{Name: "extra.bias", Shape: []int{4}},
	}}
	tests := []struct {
		name     string
		expected map[string][]int
		want     string
	}{
		{"ok", map[string][]int{"image_encoder.pos_embed": {1, 64, 64, 768}, "a.weight": {2, 3}, "extra.bias": {4}}, ""},
		{"example", map[string][]int{
			"image_encoder.pos_embed":       {1, 16, 16, 768},
			"a.weight":                      {2, 3},
			"extra.bias":                    {4},
			"mask_decoder.iou_token.weight": {1, 256},
		}, `checkpoint: 2 problems: missing "mask_decoder.iou_token.weight" [1 256]; shape of "image_encoder.pos_embed" is [1 64 64 768], want [1 16 16 768]`},
		{"unexpected and scalar", map[string][]int{"image_encoder.pos_embed": {1, 64, 64, 768}, "a.weight": {2, 3}, "s": {}},
			`checkpoint: 2 problems: missing "s" []; unexpected "extra.bias" [4]`},
		{"one", map[string][]int{"image_encoder.pos_embed": {1, 64, 64, 768}, "a.weight": {3, 2}, "extra.bias": {4}},
			`checkpoint: 1 problem: shape of "a.weight" is [2 3], want [3 2]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := sd.Match(tc.expected)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Match:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestMatchCapped checks sam_tiny against the real SAM vit_b key list: every
// shape differs, the message stays short and gives the counts.
func TestMatchCapped(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixturesDir, "checkpoint_keys", "sam_vit_b.json"))
	if err != nil {
		t.Fatal(err)
	}
	var keys struct {
		Tensors map[string]struct {
			Shape []int `json:"shape"`
		} `json:"tensors"`
	}
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	expected := map[string][]int{}
	for name, e := range keys.Tensors {
		expected[name] = e.Shape
	}
	sd := mustLoad(t, filepath.Join(fixturesDir, "sam_tiny", "sam_tiny.pth"))
	err = sd.Match(expected)
	if err == nil {
		t.Fatal("sam_tiny matched the vit_b key list")
	}
	msg := err.Error()
	// vit_b has 12 blocks of 14 tensors, sam_tiny 3 (with 5 of them
	// windowed, 2 global of a different rel-pos size).
	for _, want := range []string{
		"checkpoint: 305 problems (126 missing, 179 mis-shaped, 0 unexpected): ",
		`missing "image_encoder.blocks.10.attn.proj.bias" [768]; `,
		`shape of "image_encoder.pos_embed" is [1 8 8 48], want [1 64 64 768]; `,
		"; and 297 more",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if len(msg) > 1200 {
		t.Errorf("message is %d bytes long", len(msg))
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, src := range []string{
		filepath.Join(fixturesDir, "sam_tiny", "sam_tiny.pth"),
		filepath.Join(refDir, "views.pth"), // scalar, empty, int and half tensors
	} {
		sd := mustLoad(t, src)
		meta := map[string]string{"source": filepath.Base(src), "quote\"d": "line\nbreak ünicode"}
		out := filepath.Join(dir, "out.safetensors")
		if err := SaveSafetensors(out, sd.Tensors, meta); err != nil {
			t.Fatal(err)
		}
		back := mustLoad(t, out)
		if back.Format != FormatSafetensors || fmt.Sprint(back.Metadata) != fmt.Sprint(meta) {
			t.Errorf("%s: format %q metadata %v", src, back.Format, back.Metadata)
		}
		if len(back.Tensors) != len(sd.Tensors) {
			t.Fatalf("%s: %d tensors back, want %d", src, len(back.Tensors), len(sd.Tensors))
		}
		for i, want := range sd.Tensors {
			got := back.Tensors[i]
			if got.Name != want.Name || !equalShape(got.Shape, want.Shape) || got.DType != "float32" || len(got.Data) != len(want.Data) {
				t.Fatalf("%s: tensor %d = %q %v %s, want %q %v float32", src, i, got.Name, got.Shape, got.DType, want.Name, want.Shape)
			}
			for j := range want.Data {
				if math.Float32bits(got.Data[j]) != math.Float32bits(want.Data[j]) {
					t.Fatalf("%s: %s[%d] = %g, want %g", src, want.Name, j, got.Data[j], want.Data[j])
				}
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left %d files in the folder, want 1", len(entries))
	}
}

// TestSaveSafetensorsGolden pins the exact bytes SaveSafetensors writes.
func TestSaveSafetensorsGolden(t *testing.T) {
	tensors := []*Tensor{
		{Name: "b.weight", Shape: []int{2, 2}, DType: "float16", Data: []float32{1, -2, 0.5, float32(math.Inf(1))}},
		{Name: "a", Shape: []int{}, Data: []float32{3}},
		{Name: "empty", Shape: []int{0, 4}, Data: nil},
	}
	golden := filepath.Join(refDir, "golden_small.safetensors")
	if *update {
		if err := SaveSafetensors(golden, tensors, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "x.safetensors")
	if err := SaveSafetensors(out, tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("SaveSafetensors wrote\n%q\nwant (golden)\n%q", got, want)
	}
	if (len(got)-8-len(tensorsBytes(tensors)))%8 != 0 {
		t.Error("header not padded to a multiple of 8")
	}
}

func tensorsBytes(ts []*Tensor) []byte {
	var b []byte
	for _, t := range ts {
		for _, v := range t.Data {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return b
}

func TestSaveSafetensorsErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keep.safetensors")
	good := []*Tensor{{Name: "w", Shape: []int{2}, Data: []float32{1, 2}}}
	if err := SaveSafetensors(path, good, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	tests := []struct {
		name    string
		tensors []*Tensor
		path    string
		want    string
	}{
		{"none", nil, path, "no tensors"},
		{"nil", []*Tensor{nil}, path, "tensor 0 is nil"},
		{"unnamed", []*Tensor{{Shape: []int{1}, Data: []float32{1}}}, path, "no name"},
		{"reserved", []*Tensor{{Name: "__metadata__", Shape: []int{1}, Data: []float32{1}}}, path, "reserved"},
		{"duplicate", []*Tensor{good[0], good[0]}, path, `"w" appears twice`},
		{"short data", []*Tensor{{Name: "x", Shape: []int{2, 3}, Data: []float32{1}}}, path, "shape [2 3] has 6 elements, data has 1"},
		{"negative", []*Tensor{{Name: "x", Shape: []int{-1}, Data: nil}}, path, "negative"},
		{"no folder", good, filepath.Join(dir, "missing", "x.safetensors"), "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := SaveSafetensors(tc.path, tc.tensors, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("a failed save changed the existing file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("failed saves left %d files, want 1", len(entries))
	}
}

// pickler writes protocol-2 pickles by hand, to build torch.save files with
// chosen defects.
type pickler struct{ bytes.Buffer }

func (p *pickler) str(s string) {
	p.WriteByte('X')
	p.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(s))))
	p.WriteString(s)
}

func (p *pickler) int(n int) {
	if n >= math.MinInt32 && n <= math.MaxInt32 {
		p.WriteByte('J')
		p.Write(binary.LittleEndian.AppendUint32(nil, uint32(int32(n))))
		return
	}
	p.Write([]byte{0x8a, 8})
	p.Write(binary.LittleEndian.AppendUint64(nil, uint64(n)))
}

func (p *pickler) global(module, name string) { fmt.Fprintf(p, "c%s\n%s\n", module, name) }

func (p *pickler) ints(v []int) {
	p.WriteByte('(')
	for _, n := range v {
		p.int(n)
	}
	p.WriteByte('t')
}

// fakeTensor describes one tensor of a hand-made checkpoint.
type fakeTensor struct {
	name          string
	storageClass  string
	key           string
	numel, offset int
	shape, stride []int
}

// stateDictPickle pickles OrderedDict{name: _rebuild_tensor_v2(...)} as
// torch.save does, optionally nested as {'model': ...}.
func stateDictPickle(tensors []fakeTensor, nested bool) []byte {
	var p pickler
	p.Write([]byte{0x80, 2})
	if nested {
		p.WriteString("}(")
		p.str("model")
	}
	p.global("collections", "OrderedDict")
	p.WriteString(")R(")
	for _, t := range tensors {
		p.str(t.name)
		p.global("torch._utils", "_rebuild_tensor_v2")
		p.WriteString("((")
		p.str("storage")
		p.global("torch", t.storageClass)
		p.str(t.key)
		p.str("cpu")
		p.int(t.numel)
		p.WriteString("tQ")
		p.int(t.offset)
		p.ints(t.shape)
		p.ints(t.stride)
		p.WriteByte(0x89)
		p.global("collections", "OrderedDict")
		p.WriteString(")RtR")
	}
	p.WriteByte('u')
	if nested {
		p.WriteByte('u')
	}
	p.WriteByte('.')
	return p.Bytes()
}

// writeZip writes a zip archive of the named entries, in order.
func writeZip(t *testing.T, path string, entries ...any) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i < len(entries); i += 2 {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: entries[i].(string), Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(entries[i+1].([]byte))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func float32Bytes(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// TestHandMadeZip loads a hand-pickled checkpoint whose folder is neither
// "archive" nor the file's stem, nested under 'model', with a view.
func TestHandMadeZip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "renamed.pth")
	writeZip(t, path,
		"my_model/data.pkl", stateDictPickle([]fakeTensor{
			{"w", "FloatStorage", "0", 6, 0, []int{2, 3}, []int{3, 1}},
			{"wt", "FloatStorage", "0", 6, 1, []int{2, 2}, []int{1, 3}},
		}, true),
		"my_model/data/0", float32Bytes(0, 1, 2, 3, 4, 5),
		"my_model/version", []byte("3\n"))
	sd := mustLoad(t, path)
	wt, _ := sd.Get("wt")
	if fmt.Sprint(wt.Data) != "[1 4 2 5]" || fmt.Sprint(sd.Names()) != "[w wt]" {
		t.Errorf("got %v with wt = %v", sd.Names(), wt.Data)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	readRef := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	samTiny := readRef(filepath.Join(fixturesDir, "sam_tiny", "sam_tiny.pth"))
	legacy := readRef(filepath.Join(refDir, "views_legacy.pth"))
	st := readRef(filepath.Join(refDir, "handmade.safetensors"))
	rnd := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(rnd)

	lyingHeader := append([]byte{}, st...)
	binary.LittleEndian.PutUint64(lyingHeader, uint64(len(st)))
	stHeader := func(header string, data []byte) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		return append(append(b, header...), data...)
	}
	badCRC := append([]byte{}, samTiny...)
	i := bytes.Index(badCRC, []byte("sam_tiny/data/0")) + 200
	badCRC[i] ^= 0xff

	zipFile := func(name string, entries ...any) string {
		p := filepath.Join(dir, name)
		writeZip(t, p, entries...)
		return p
	}
	fake := func(ts ...fakeTensor) []byte { return stateDictPickle(ts, false) }
	six := float32Bytes(0, 1, 2, 3, 4, 5)

	tests := []struct {
		name string
		path string
		is   error  // errors.Is target, or nil
		want string // substring of the message
	}{
		{"missing file", filepath.Join(dir, "nope.pth"), os.ErrNotExist, "nope.pth"},
		{"empty", write("empty.pth", nil), ErrNotCheckpoint, "empty"},
		{"random bytes", write("random.pth", rnd), ErrNotCheckpoint, "neither a torch.save file nor safetensors"},
		{"json", write("config.json", []byte(`{"model": {"weight": [1, 2, 3]}, "x": "yyyyyyyyyyyyy"}`)), ErrNotCheckpoint, `starts with "{\"model\"`},
		{"zip without data.pkl", zipFile("other.zip", "a/readme.txt", []byte("hi")), ErrNotCheckpoint, "without data.pkl"},
		{"torchscript", zipFile("ts.pt", "m/data.pkl", fake(), "m/constants.pkl", []byte{}), ErrNotCheckpoint, "TorchScript"},
		{"zip cut in half", write("half.pth", samTiny[:len(samTiny)/2]), ErrCorrupt, "zip archive"},
		{"zip bad checksum", write("crc.pth", badCRC), ErrCorrupt, "checksum"},
		{"legacy cut in half", write("legacy_half.pth", legacy[:len(legacy)/2]), ErrCorrupt, "pickle"},
		{"legacy cut in storages", write("legacy_end.pth", legacy[:len(legacy)-10]), ErrCorrupt, "needs 48 bytes, only 38 left"},
		{"legacy cut in pickle", write("legacy_short.pth", legacy[:300]), ErrCorrupt, "pickle"},
		{"safetensors cut", write("cut.safetensors", st[:len(st)-10]), ErrCorrupt, "outside the"},
		{"safetensors lying header", write("lying.safetensors", lyingHeader), ErrCorrupt, "exceeds"},
		{"safetensors bad json", write("badjson.safetensors", stHeader(`{"a": {"dtype": "F32", "shape": [1], `, nil)), ErrCorrupt, "header"},
		{"safetensors size mismatch", write("mismatch.safetensors", stHeader(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 8))), ErrCorrupt, "want 8"},
		{"safetensors dtype", write("dtype.safetensors", stHeader(`{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1))), nil, `unsupported safetensors dtype "F8_E4M3"`},
		{"safetensors no tensors", write("meta.safetensors", stHeader(`{"__metadata__":{"a":"b"}}`, nil)), ErrNoTensors, "no tensors"},
		{"safetensors absurd shape", write("absurd.safetensors", stHeader(`{"a":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4]}}`, make([]byte, 4))), ErrCorrupt, "absurd shape"},
		{"storage smaller than view", zipFile("view.pth", "v/data.pkl", fake(fakeTensor{"w", "FloatStorage", "0", 6, 2, []int{2, 3}, []int{3, 1}}), "v/data/0", six),
			ErrCorrupt, `tensor "w": view (offset 2, shape [2 3], stride [3 1]) reaches past the 6 elements`},
		{"storage entry too small", zipFile("small.pth", "v/data.pkl", fake(fakeTensor{"w", "FloatStorage", "0", 8, 0, []int{8}, []int{1}}), "v/data/0", six),
			ErrCorrupt, "holds 24 bytes, smaller than the 8 elements"},
		{"storage entry missing", zipFile("nodata.pth", "v/data.pkl", fake(fakeTensor{"w", "FloatStorage", "0", 6, 0, []int{6}, []int{1}})),
			ErrCorrupt, "v/data/0 is missing"},
		{"absurd shape", zipFile("absurd.pth", "v/data.pkl", fake(fakeTensor{"w", "FloatStorage", "0", 6, 0, []int{1 << 40, 1 << 40}, []int{0, 0}}), "v/data/0", six),
			ErrCorrupt, "absurd shape"},
		{"negative size", zipFile("neg.pth", "v/data.pkl", fake(fakeTensor{"w", "FloatStorage", "0", 6, 0, []int{-2, 3}, []int{3, 1}}), "v/data/0", six),
			ErrCorrupt, "negative size"},
		{"unsupported storage", zipFile("complex.pth", "v/data.pkl", fake(fakeTensor{"w", "ComplexFloatStorage", "0", 3, 0, []int{3}, []int{1}}), "v/data/0", six),
			nil, "unsupported storage type torch.ComplexFloatStorage"},
		{"no tensors", zipFile("notensor.pth", "v/data.pkl", fake()), ErrNoTensors, "no tensors"},
		{"not a dict", zipFile("list.pth", "v/data.pkl", []byte("\x80\x02]q\x00.")), ErrNoTensors, "holds a list"},
		{"pickle lying length", zipFile("lie.pth", "v/data.pkl", []byte("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7fabc.")), ErrCorrupt, "declares"},
		{"pickle without stop", zipFile("nostop.pth", "v/data.pkl", []byte("\x80\x02}q\x00")), ErrCorrupt, "pickle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sd, err := Load(tc.path)
			if err == nil {
				t.Fatalf("Load succeeded with %d tensors", len(sd.Tensors))
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want errors.Is %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "checkpoint: ") {
				t.Errorf("err = %v, want a checkpoint error containing %q", err, tc.want)
			}
		})
	}
}

// TestNoPanicOnDamage loads prefixes of small reference files of each
// format, and the files with one byte flipped: no panic, and either an error
// or a state dict.
func TestNoPanicOnDamage(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"views_legacy.pth", "handmade.safetensors", "half.pth"} {
		orig, err := os.ReadFile(filepath.Join(refDir, name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		try := func(b []byte, what string) {
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			sd, err := Load(p)
			if err == nil && len(sd.Tensors) == 0 {
				t.Errorf("%s %s: no error and no tensors", name, what)
			}
		}
		// About 250 cuts and 250 flips per file keep the test fast; the
		// prime step shifts the positions across opcode boundaries.
		step := max(1, len(orig)/250) | 1
		for n := 0; n < len(orig); n += step {
			try(orig[:n], fmt.Sprintf("cut at %d", n))
		}
		for i := 0; i < len(orig); i += step {
			b := append([]byte{}, orig...)
			b[i] ^= 0xa5
			try(b, fmt.Sprintf("byte %d flipped", i))
		}
	}
}

// FuzzLoad feeds arbitrary bytes to Load, seeded with the small reference
// files; Load must never panic.
func FuzzLoad(f *testing.F) {
	for _, name := range []string{"views.pth", "views_legacy.pth", "handmade.safetensors"} {
		b, err := os.ReadFile(filepath.Join(refDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		Load(p)
	})
}
