package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/segsam/segsam/segsam"
	"github.com/segsam/segsam/server"
)

func init() {
	register(command{
		name:    "serve",
		summary: "interactive segmentation server: HTTP JSON API and web page",
		run:     runServe,
	})
}

// loadServeModel returns the model that serve answers with.
// Without --checkpoint it is the built-in model.
func loadServeModel(checkpoint, arch, config string) (*segsam.Predictor, error) {
	return loadPredictor(checkpoint, arch, config)
}

// serveSignals are the signals that stop the server gracefully.
var serveSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// serveReady, when set (by tests), receives the listening address.
var serveReady func(addr string)

func runServe(args []string) error {
	fs := newFlagSet("serve", "[--checkpoint FILE] [--arch NAME | --config FILE.json] [--addr 127.0.0.1:8080] [--studies DIR] [limits]")
	var mf modelFlags
	mf.register(fs)
	d := server.DefaultConfig()
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks a free one)")
	cacheMB := fs.Int64("cache-mb", d.CacheBytes>>20, "memory bound of the image-embedding cache, MiB")
	maxImageMB := fs.Int64("max-image-mb", d.MaxImageBytes>>20, "largest accepted PNG/JPEG/.npy upload, MiB")
	maxVolumeMB := fs.Int64("max-volume-mb", d.MaxVolumeBytes>>20, "largest accepted NIfTI upload, MiB")
	maxImages := fs.Int("max-images", d.MaxImages, "uploaded images kept (least recently used dropped beyond)")
	storeMB := fs.Int64("store-mb", d.MaxStoreBytes>>20, "memory bound of the uploaded images, MiB")
	encodes := fs.Int("encoders", d.MaxConcurrentEncodes, "image-encoder runs at a time")
	timeout := fs.Duration("request-timeout", d.RequestTimeout, "time limit of one request")
	volTimeout := fs.Duration("volume-timeout", d.VolumeTimeout, "time limit of labelling a whole volume (segment-all with \"volume\": true, MONAI Label's segsam_auto)")
	noPrecompute := fs.Bool("no-precompute", false, "do not compute an embedding at upload (only at the first predict)")
	studies := fs.String("studies", "", "studies folder for 3D Slicer / OHIF (MONAI Label's API): NIfTI, DICOM-series folders and PNG, labels in DIR/labels/<tag>/")
	sessionExpiry := fs.Duration("session-expiry", d.SessionExpiry, "life of a MONAI Label session without access")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, v := range []struct {
		name string
		val  int64
	}{{"cache-mb", *cacheMB}, {"max-image-mb", *maxImageMB}, {"max-volume-mb", *maxVolumeMB}, {"max-images", int64(*maxImages)}, {"store-mb", *storeMB}, {"encoders", int64(*encodes)}} {
		if v.val <= 0 {
			return usageErrorf("--%s must be positive", v.name)
		}
	}
	if *volTimeout <= 0 {
		return usageErrorf("--volume-timeout must be positive")
	}
	if *timeout <= 0 {
		return usageErrorf("--request-timeout must be positive")
	}
	if *sessionExpiry <= 0 {
		return usageErrorf("--session-expiry must be positive")
	}
	if *studies != "" {
		if st, err := os.Stat(*studies); err == nil && !st.IsDir() {
			return usageErrorf("--studies %s is a file: give a folder (it is created if missing)", *studies)
		}
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return usageErrorf("--addr %q: %v", *addr, err)
	}
	start := time.Now()
	model, err := loadServeModel(mf.checkpoint, mf.arch, mf.config)
	if err != nil {
		return err
	}
	cfg := d
	cfg.CacheBytes = *cacheMB << 20
	cfg.MaxImageBytes = *maxImageMB << 20
	cfg.MaxVolumeBytes = *maxVolumeMB << 20
	cfg.MaxImages = *maxImages
	cfg.MaxStoreBytes = *storeMB << 20
	cfg.MaxConcurrentEncodes = *encodes
	cfg.RequestTimeout = *timeout
	cfg.VolumeTimeout = *volTimeout
	cfg.DisablePrecompute = *noPrecompute
	cfg.StudiesDir = *studies
	cfg.SessionExpiry = *sessionExpiry
	cfg.AutomaticModel = true // MONAI Label's segsam_auto: label everything
	srv, err := server.New(model, cfg)
	if err != nil {
		return err
	}
	if mf.checkpoint == "" {
		// segment-all with the built-in model's thresholds (see segment).
		if err := srv.SetAutomaticDefaults(builtinAMGOptions()); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), serveSignals...)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	desc := "SAM " + model.SAM.Model.Config.Name
	if model.Model != nil {
		desc = model.Model.Describe()
	}
	fmt.Fprintf(stderr, "segsam serve: %s loaded in %.1f s\n", desc, time.Since(start).Seconds())
	fmt.Fprintf(stderr, "segsam serve: listening on http://%s/ (API: /openapi.json; stop with Ctrl+C)\n", ln.Addr())
	if *studies != "" {
		fmt.Fprintf(stderr, "segsam serve: MONAI Label API for 3D Slicer / OHIF at http://%s/ (studies in %s)\n", ln.Addr(), *studies)
	}
	if serveReady != nil {
		serveReady(ln.Addr().String())
	}
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "segsam serve: stopped")
	return nil
}
