package engine

import (
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	for _, c := range []struct {
		config, want string
	}{
		{"", ""},
		{"go", ""},
		{"xla:/opt/pjrt_c_api_cuda_plugin.so", "not compiled into this binary"},
		{"tpu", "not compiled into this binary"},
	} {
		b, err := New(c.config)
		switch {
		case c.want == "" && (err != nil || b == nil):
			t.Errorf("New(%q): %v", c.config, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("New(%q): error %v, want one containing %q", c.config, err, c.want)
		}
	}
}
