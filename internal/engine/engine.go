// Package engine chooses the compute backend that runs segsam's models.
//
// The pure-Go backend ("go") is the default and runs everywhere. Another
// registered backend is chosen with GOMLX_BACKEND, e.g.
// GOMLX_BACKEND=xla:/abs/path/pjrt_c_api_cuda_plugin.so when segsam is built
// with XLA support. segsam never downloads a plugin.
package engine

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/gobackend"
)

// EnvVar names the environment variable that selects the backend.
const EnvVar = compute.ConfigEnvVar

var (
	once    sync.Once
	shared  compute.Backend
	initErr error
)

// Backend returns the process-wide backend chosen by GOMLX_BACKEND (default
// "go"), creating it on first use.
func Backend() (compute.Backend, error) {
	once.Do(func() { shared, initErr = New(os.Getenv(EnvVar)) })
	return shared, initErr
}

// New creates a backend from a configuration "name[:options]"; empty means
// the pure-Go backend.
func New(config string) (b compute.Backend, err error) {
	if config == "" || config == gobackend.BackendName {
		return gobackend.GetBackend(), nil
	}
	name, opts, _ := strings.Cut(config, ":")
	known := compute.List()
	sort.Strings(known)
	found := false
	for _, k := range known {
		found = found || k == name
	}
	if !found {
		return nil, fmt.Errorf("backend %q (from %s=%q) is not compiled into this binary; available: %s",
			name, EnvVar, config, strings.Join(known, ", "))
	}
	if name == "xla" && !strings.HasPrefix(opts, "/") {
		return nil, fmt.Errorf("%s=%q: give the XLA PJRT plugin as an absolute path (xla:/path/to/plugin.so); segsam never downloads one", EnvVar, config)
	}
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("backend %q: %v", config, r)
		}
	}()
	b, err = compute.NewWithConfig(config)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", config, err)
	}
	return b, nil
}
