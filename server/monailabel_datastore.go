package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segsam/segsam/medimg/dicom"
)

// The studies folder (serve --studies DIR) is kept in the layout of MONAI
// Label's local datastore (monailabel/datastore/local.py), so that either
// server can open it: images in DIR (ID.nii.gz, ID.nii, ID.png, or a folder
// ID/ holding one DICOM series), labels in DIR/labels/TAG/ID.EXT (tags
// "final" for finished labels and "original" for a model's), and the
// index with each image's and label's info in DIR/datastore_v2.json. Files
// added or removed by hand are picked up at start.

// mlIndexFile is the index of the datastore (MONAI Label's name for it).
const mlIndexFile = "datastore_v2.json"

// Label tags MONAI Label uses.
const (
	tagFinal    = "final"
	tagOriginal = "original"
)

// mlData is an image or a label in the index: its file extension and info.
type mlData struct {
	Ext  string         `json:"ext"`
	Info map[string]any `json:"info"`
}

// mlObject is an image and its labels by tag.
type mlObject struct {
	Image  mlData             `json:"image"`
	Labels map[string]*mlData `json:"labels"`
}

// mlIndex is datastore_v2.json.
type mlIndex struct {
	Name        string               `json:"name"`
	Description string               `json:"description"`
	ImagesDir   string               `json:"images_dir"`
	LabelsDir   string               `json:"labels_dir"`
	Objects     map[string]*mlObject `json:"objects"`
}

// MLDatastoreStats is MONAI Label's datastore status (GET /datastore/).
type MLDatastoreStats struct {
	Total     int            `json:"total"`
	Completed int            `json:"completed"`
	LabelTags map[string]int `json:"label_tags"`
}

// mlDatastore is the studies folder.
type mlDatastore struct {
	dir string

	mu  sync.Mutex
	idx mlIndex
	// version counts the changes of each image, so that cached volumes
	// and embeddings of a replaced image are not used.
	version map[string]int
}

// imageExts are the image files the datastore holds, longest first.
var imageExts = []string{".nii.gz", ".nii", ".png"}

// labelExts are the label files it holds.
var labelExts = []string{".nii.gz", ".nii", ".png"}

// splitExt returns a file name's id and its known extension.
func splitExt(name string, exts []string) (id, ext string, ok bool) {
	lower := strings.ToLower(name)
	for _, e := range exts {
		if strings.HasSuffix(lower, e) && len(name) > len(e) {
			return name[:len(name)-len(e)], name[len(name)-len(e):], true
		}
	}
	return "", "", false
}

// checkID checks an image id or label tag: it names a file, so it may not
// be empty, start with a dot, or hold a path separator or control
// character.
func checkID(kind, id string) error {
	switch {
	case id == "":
		return httpErrorf(http.StatusBadRequest, "empty %s", kind)
	case len(id) > 200:
		return httpErrorf(http.StatusBadRequest, "%s of %d bytes: at most 200", kind, len(id))
	case strings.HasPrefix(id, "."):
		return httpErrorf(http.StatusBadRequest, "%s %q starts with a dot", kind, id)
	case strings.ContainsAny(id, "/\\"):
		return httpErrorf(http.StatusBadRequest, "%s %q holds a path separator", kind, id)
	}
	for _, r := range id {
		if r < ' ' || r == 0x7f {
			return httpErrorf(http.StatusBadRequest, "%s %q holds a control character", kind, id)
		}
	}
	return nil
}

// openDatastore opens (creating it if needed) a studies folder and
// reconciles its index with the files present.
func openDatastore(dir string) (*mlDatastore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("studies folder %s: %w", dir, err)
	}
	d := &mlDatastore{dir: abs, version: map[string]int{}}
	for _, p := range []string{abs, d.labelDir(tagFinal), d.labelDir(tagOriginal)} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, fmt.Errorf("studies folder: %w", err)
		}
	}
	d.idx = mlIndex{Name: "segsam", Description: "segsam studies", ImagesDir: ".", LabelsDir: "labels", Objects: map[string]*mlObject{}}
	data, err := os.ReadFile(filepath.Join(abs, mlIndexFile))
	switch {
	case err == nil:
		var idx mlIndex
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("studies folder: %s is not a datastore index: %v (move it away to rebuild it from the files)", filepath.Join(abs, mlIndexFile), err)
		}
		if idx.ImagesDir != "" && filepath.Clean(idx.ImagesDir) != "." || idx.LabelsDir != "" && filepath.Clean(idx.LabelsDir) != "labels" {
			return nil, fmt.Errorf("studies folder: %s keeps images in %q and labels in %q; segsam reads the default layout (images_dir \".\", labels_dir \"labels\")", mlIndexFile, idx.ImagesDir, idx.LabelsDir)
		}
		if idx.Objects == nil {
			idx.Objects = map[string]*mlObject{}
		}
		idx.ImagesDir, idx.LabelsDir = ".", "labels"
		d.idx = idx
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("studies folder: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.reconcile(); err != nil {
		return nil, err
	}
	return d, d.save()
}

func (d *mlDatastore) labelDir(tag string) string { return filepath.Join(d.dir, "labels", tag) }

func (d *mlDatastore) imagePath(id string, o *mlObject) string {
	return filepath.Join(d.dir, id+o.Image.Ext)
}

func (d *mlDatastore) labelPath(id, tag string, l *mlData) string {
	return filepath.Join(d.labelDir(tag), id+l.Ext)
}

// dicomSeries reports whether a folder holds a DICOM file (the "DICM" magic
// after the 128-byte preamble) and returns the SeriesInstanceUID of the
// first one found ("" when it cannot be read).
func dicomSeries(dir string) (uid string, ok bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	for i, e := range entries {
		if i >= 64 {
			break
		}
		if !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		var b [132]byte
		n, _ := f.Read(b[:])
		f.Close()
		if n != 132 || string(b[128:]) != "DICM" {
			continue
		}
		if st, err := e.Info(); err == nil && st.Size() <= 64<<20 {
			if data, err := os.ReadFile(path); err == nil {
				if ds, err := dicom.Parse(data); err == nil {
					uid = strings.TrimSpace(ds.String(dicom.TagSeriesInstanceUID))
				}
			}
		}
		return uid, true
	}
	return "", false
}

// reconcile drops index entries whose files are gone and adds the images
// and labels present but not indexed. d.mu is held.
func (d *mlDatastore) reconcile() error {
	now := time.Now().Unix()
	for id, o := range d.idx.Objects {
		if o == nil {
			delete(d.idx.Objects, id)
			continue
		}
		if _, err := os.Stat(d.imagePath(id, o)); err != nil {
			delete(d.idx.Objects, id)
			continue
		}
		if o.Image.Info == nil {
			o.Image.Info = map[string]any{}
		}
		if o.Labels == nil {
			o.Labels = map[string]*mlData{}
		}
		for tag, l := range o.Labels {
			if l == nil {
				delete(o.Labels, tag)
				continue
			}
			if _, err := os.Stat(d.labelPath(id, tag, l)); err != nil {
				delete(o.Labels, tag)
			} else if l.Info == nil {
				l.Info = map[string]any{}
			}
		}
	}
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("studies folder: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || name == "labels" || name == mlIndexFile {
			continue
		}
		id, ext, uid := "", "", ""
		if e.IsDir() {
			if _, ok := d.idx.Objects[name]; ok {
				continue
			}
			var ok bool
			if uid, ok = dicomSeries(filepath.Join(d.dir, name)); !ok {
				continue
			}
			id = name
		} else {
			var ok bool
			if id, ext, ok = splitExt(name, imageExts); !ok {
				continue
			}
		}
		if _, ok := d.idx.Objects[id]; ok {
			continue
		}
		info := map[string]any{"ts": now, "name": name}
		if e.IsDir() {
			info["format"] = "dicom"
			if uid != "" {
				info["SeriesInstanceUID"] = uid
			}
		}
		d.idx.Objects[id] = &mlObject{Image: mlData{Ext: ext, Info: info}, Labels: map[string]*mlData{}}
	}
	tags, err := os.ReadDir(filepath.Join(d.dir, "labels"))
	if err != nil {
		return fmt.Errorf("studies folder: %w", err)
	}
	for _, t := range tags {
		if !t.IsDir() || strings.HasPrefix(t.Name(), ".") {
			continue
		}
		files, err := os.ReadDir(d.labelDir(t.Name()))
		if err != nil {
			return fmt.Errorf("studies folder: %w", err)
		}
		for _, f := range files {
			id, ext, ok := splitExt(f.Name(), labelExts)
			if !ok || f.IsDir() {
				continue
			}
			o := d.idx.Objects[id]
			if o == nil || o.Labels[t.Name()] != nil {
				continue
			}
			o.Labels[t.Name()] = &mlData{Ext: ext, Info: map[string]any{"ts": now, "name": f.Name()}}
		}
	}
	return nil
}

// writeAtomic writes data to path through a temporary file in the same
// folder, synced and renamed, so that a crash leaves the old file or the
// new one, never a part.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".upload-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// save writes the index. d.mu is held.
func (d *mlDatastore) save() error {
	data, err := json.MarshalIndent(d.idx, "", "  ")
	if err != nil {
		return fmt.Errorf("datastore index: %w", err)
	}
	if err := writeAtomic(filepath.Join(d.dir, mlIndexFile), data); err != nil {
		return fmt.Errorf("datastore index: %w", err)
	}
	return nil
}

// Stats returns the datastore's counts.
func (d *mlDatastore) Stats() MLDatastoreStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := MLDatastoreStats{Total: len(d.idx.Objects), LabelTags: map[string]int{}}
	for _, o := range d.idx.Objects {
		if o.Labels[tagFinal] != nil {
			st.Completed++
		}
		for tag := range o.Labels {
			st.LabelTags[tag]++
		}
	}
	return st
}

// JSON returns a copy of the index (GET /datastore/?output=all).
func (d *mlDatastore) JSON() (json.RawMessage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, err := json.Marshal(d.idx)
	return data, err
}

// Datalist returns the image/label path pairs of the finished labels
// (GET /datastore/?output=train).
func (d *mlDatastore) Datalist() []map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []map[string]string{}
	for _, id := range sortedKeys(d.idx.Objects) {
		o := d.idx.Objects[id]
		if l := o.Labels[tagFinal]; l != nil {
			out = append(out, map[string]string{"image": d.imagePath(id, o), "label": d.labelPath(id, tagFinal, l)})
		}
	}
	return out
}

// studyFile is where an image or label lives.
type studyFile struct {
	id        string // the image's id (a SeriesInstanceUID asked for resolves to it)
	path, ext string
	dicom     bool // a folder holding a DICOM series
	version   int
}

// lookup returns the object of an image id, or of the DICOM series whose
// SeriesInstanceUID it is (OHIF names images by it). d.mu is held.
func (d *mlDatastore) lookup(id string) (string, *mlObject) {
	if o := d.idx.Objects[id]; o != nil {
		return id, o
	}
	for oid, o := range d.idx.Objects {
		if o.Image.Ext == "" && id != "" && o.Image.Info["SeriesInstanceUID"] == id {
			return oid, o
		}
	}
	return id, nil
}

func unknownImage(id string) error {
	return httpErrorf(http.StatusNotFound, "unknown image %q in the datastore (GET /datastore/?output=all lists them)", id)
}

// Image returns where an image lives.
func (d *mlDatastore) Image(id string) (studyFile, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, o := d.lookup(id)
	if o == nil {
		return studyFile{}, unknownImage(id)
	}
	return studyFile{id: id, path: d.imagePath(id, o), ext: o.Image.Ext, dicom: o.Image.Ext == "", version: d.version[id]}, nil
}

// ImageInfo returns an image's info with its path (MONAI Label adds it).
func (d *mlDatastore) ImageInfo(id string) (map[string]any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, o := d.lookup(id)
	if o == nil {
		return nil, unknownImage(id)
	}
	info := copyInfo(o.Image.Info)
	if o.Image.Ext != "" { // a DICOM folder is downloaded as NIfTI, not read from its path
		info["path"] = d.imagePath(id, o)
	}
	return info, nil
}

func copyInfo(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// UpdateImageInfo merges info into an image's info.
func (d *mlDatastore) UpdateImageInfo(id string, info map[string]any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, o := d.lookup(id)
	if o == nil {
		return unknownImage(id)
	}
	for k, v := range info {
		o.Image.Info[k] = v
	}
	return d.save()
}

// AddImage stores an image file (replacing one of the same id) and
// indexes it with info. Labels of a replaced image are kept.
func (d *mlDatastore) AddImage(id, ext string, data []byte, info map[string]any) error {
	if err := checkID("image id", id); err != nil {
		return err
	}
	if id == "labels" {
		return httpErrorf(http.StatusBadRequest, "image id %q is the labels folder's name", id)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.idx.Objects[id]
	if old != nil && old.Image.Ext == "" {
		return httpErrorf(http.StatusConflict, "image %q is a DICOM series folder in the studies folder: remove it (DELETE /datastore/image?id=...) before uploading a file with its id", id)
	}
	path := filepath.Join(d.dir, id+ext)
	if err := writeAtomic(path, data); err != nil {
		return fmt.Errorf("store image %s: %w", id, err)
	}
	if old != nil && old.Image.Ext != ext {
		os.Remove(d.imagePath(id, old))
	}
	info = copyInfo(info)
	info["ts"] = time.Now().Unix()
	info["name"] = id + ext
	labels := map[string]*mlData{}
	if old != nil {
		labels = old.Labels
	}
	d.idx.Objects[id] = &mlObject{Image: mlData{Ext: ext, Info: info}, Labels: labels}
	d.version[id]++
	return d.save()
}

// RemoveImage deletes an image and its labels.
func (d *mlDatastore) RemoveImage(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.idx.Objects[id]
	if o == nil {
		return unknownImage(id)
	}
	for tag, l := range o.Labels {
		if err := os.Remove(d.labelPath(id, tag, l)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove label %s/%s: %w", tag, id, err)
		}
	}
	if err := os.RemoveAll(d.imagePath(id, o)); err != nil {
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	delete(d.idx.Objects, id)
	d.version[id]++
	return d.save()
}

// SaveLabel stores a label file of an image under a tag.
func (d *mlDatastore) SaveLabel(id, tag, ext string, data []byte, info map[string]any) error {
	if err := checkID("label tag", tag); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	id, o := d.lookup(id)
	if o == nil {
		return unknownImage(id)
	}
	if err := os.MkdirAll(d.labelDir(tag), 0o755); err != nil {
		return fmt.Errorf("save label: %w", err)
	}
	if err := writeAtomic(filepath.Join(d.labelDir(tag), id+ext), data); err != nil {
		return fmt.Errorf("save label %s/%s: %w", tag, id, err)
	}
	if old := o.Labels[tag]; old != nil && old.Ext != ext {
		os.Remove(d.labelPath(id, tag, old))
	}
	info = copyInfo(info)
	info["ts"] = time.Now().Unix()
	info["name"] = id + ext
	o.Labels[tag] = &mlData{Ext: ext, Info: info}
	return d.save()
}

func unknownLabel(id, tag string) error {
	return httpErrorf(http.StatusNotFound, "no label with tag %q for image %q", tag, id)
}

// Label returns where a label lives.
func (d *mlDatastore) Label(id, tag string) (studyFile, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, o := d.lookup(id)
	if o == nil {
		return studyFile{}, unknownImage(id)
	}
	l := o.Labels[tag]
	if l == nil {
		return studyFile{}, unknownLabel(id, tag)
	}
	return studyFile{path: d.labelPath(id, tag, l), ext: l.Ext}, nil
}

// LabelInfo returns a label's info.
func (d *mlDatastore) LabelInfo(id, tag string) (map[string]any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, o := d.lookup(id)
	if o == nil || o.Labels[tag] == nil {
		return nil, unknownLabel(id, tag)
	}
	return copyInfo(o.Labels[tag].Info), nil
}

// UpdateLabelInfo merges info into a label's info.
func (d *mlDatastore) UpdateLabelInfo(id, tag string, info map[string]any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, o := d.lookup(id)
	if o == nil || o.Labels[tag] == nil {
		return unknownLabel(id, tag)
	}
	for k, v := range info {
		o.Labels[tag].Info[k] = v
	}
	return d.save()
}

// RemoveLabel deletes a label.
func (d *mlDatastore) RemoveLabel(id, tag string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	id, o := d.lookup(id)
	if o == nil || o.Labels[tag] == nil {
		return unknownLabel(id, tag)
	}
	if err := os.Remove(d.labelPath(id, tag, o.Labels[tag])); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove label %s/%s: %w", tag, id, err)
	}
	delete(o.Labels, tag)
	return d.save()
}

// Unlabeled returns the ids of the images without a final label, sorted.
func (d *mlDatastore) Unlabeled() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for id, o := range d.idx.Objects {
		if o.Labels[tagFinal] == nil {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// sniffExt returns the extension of an uploaded image or label: from its
// file name, else from its first bytes.
func sniffExt(filename string, data []byte, exts []string) (string, error) {
	lower := strings.ToLower(filename)
	if strings.HasSuffix(lower, ".nrrd") || strings.HasSuffix(lower, ".mha") || strings.HasSuffix(lower, ".mhd") || strings.HasSuffix(lower, ".dcm") {
		return "", httpErrorf(http.StatusUnsupportedMediaType, "%q: segsam's datastore keeps NIfTI (.nii.gz, .nii) and PNG files; in 3D Slicer set Application Settings > MONAI Label > File Extension to .nii.gz", filename)
	}
	if _, ext, ok := splitExt(filename, exts); ok {
		return strings.ToLower(ext), nil
	}
	switch {
	case len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b:
		return ".nii.gz", nil
	case isNIfTI(data):
		return ".nii", nil
	case bytes.HasPrefix(data, []byte("\x89PNG")):
		return ".png", nil
	}
	return "", httpErrorf(http.StatusUnsupportedMediaType, "%q is not a NIfTI (.nii.gz, .nii) or PNG file", filename)
}
