package npy

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name  string
		shape []int
		data  any
	}{
		{"f32 2d", []int{2, 3}, []float32{1, 2, 3, 4, 5, -6.5}},
		{"f64 1d", []int{3}, []float64{1e-9, 2, math.Pi}},
		{"i32 scalar", []int{}, []int32{-7}},
		{"u8 3d", []int{2, 1, 2}, []uint8{0, 255, 7, 9}},
		{"empty", []int{1, 0, 4}, []float32{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			var err error
			switch d := c.data.(type) {
			case []float32:
				err = Encode(&buf, c.shape, d)
			case []float64:
				err = Encode(&buf, c.shape, d)
			case []int32:
				err = Encode(&buf, c.shape, d)
			case []uint8:
				err = Encode(&buf, c.shape, d)
			}
			if err != nil {
				t.Fatal(err)
			}
			if (buf.Len()-len(dataBytes(c.data)))%64 != 0 {
				t.Errorf("header not 64-byte aligned: total %d", buf.Len())
			}
			a, err := Decode(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a.Shape, c.shape) {
				t.Errorf("shape %v, want %v", a.Shape, c.shape)
			}
			switch d := c.data.(type) {
			case []float32:
				if got := a.Float32(); !reflect.DeepEqual(got, d) {
					t.Errorf("got %v want %v", got, d)
				}
			case []float64:
				if got := a.Float64(); !reflect.DeepEqual(got, d) {
					t.Errorf("got %v want %v", got, d)
				}
			case []int32:
				got, err := a.Int32()
				if err != nil || !reflect.DeepEqual(got, d) {
					t.Errorf("got %v, %v want %v", got, err, d)
				}
			case []uint8:
				got, err := a.Uint8()
				if err != nil || !reflect.DeepEqual(got, d) {
					t.Errorf("got %v, %v want %v", got, err, d)
				}
			}
		})
	}
}

func dataBytes(d any) []byte {
	switch v := d.(type) {
	case []float32:
		return make([]byte, 4*len(v))
	case []float64:
		return make([]byte, 8*len(v))
	case []int32:
		return make([]byte, 4*len(v))
	case []uint8:
		return make([]byte, len(v))
	}
	return nil
}

func TestDecodeErrors(t *testing.T) {
	var good bytes.Buffer
	if err := Encode(&good, []int{4}, []float32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, input, want string
	}{
		{"empty", "", "magic"},
		{"not npy", "PK\x03\x04 hello world", "bad magic"},
		{"truncated data", good.String()[:good.Len()-3], "reading 16 bytes"},
		{"fortran", strings.Replace(good.String(), "False", "True ", 1), "Fortran"},
		{"bad dtype", strings.Replace(good.String(), "<f4", "<c8", 1), "unsupported"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(c.input))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestWriteShapeMismatch(t *testing.T) {
	if err := Encode(&bytes.Buffer{}, []int{2, 2}, []float32{1}); err == nil {
		t.Fatal("want an error for a shape that does not match the data")
	}
}

func TestHalf(t *testing.T) {
	for h, want := range map[uint16]float32{0x3c00: 1, 0xc000: -2, 0x0000: 0, 0x3555: 0.33325195, 0x0001: 5.9604645e-08} {
		if got := halfToFloat32(h); got != want {
			t.Errorf("half %#x = %v, want %v", h, got, want)
		}
	}
}
