package server

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// MONAI Label sessions (monailabel/endpoints/session.py): a client uploads
// the volume it shows once, then runs inference on it by session id without
// adding it to the datastore. A session expires after its expiry without
// access; the files live in a temporary folder removed with it.

// MLSessionInfo is MONAI Label's SessionInfo.
type MLSessionInfo struct {
	Name         string         `json:"name"`
	Path         string         `json:"path"`
	Image        string         `json:"image"`
	Meta         map[string]any `json:"meta"`
	CreateTS     int64          `json:"create_ts"`
	LastAccessTS int64          `json:"last_access_ts"`
	Expiry       int64          `json:"expiry"`
}

type mlSession struct {
	info MLSessionInfo
	ext  string // of the image file ("" for a DICOM series folder)
	img  *storedImage
}

// mlSessions holds the sessions.
type mlSessions struct {
	expiry   time.Duration
	max      int
	maxBytes int64 // of the sessions' decoded images
	onDrop   func(id string)
	now      func() time.Time // tests move the clock

	mu    sync.Mutex
	items map[string]*mlSession
}

func newMLSessions(expiry time.Duration, max int, maxBytes int64, onDrop func(string)) (*mlSessions, error) {
	if expiry <= 0 || max <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("sessions: expiry %v, max %d, bytes %d: want positive values", expiry, max, maxBytes)
	}
	return &mlSessions{expiry: expiry, max: max, maxBytes: maxBytes, onDrop: onDrop, now: time.Now, items: map[string]*mlSession{}}, nil
}

// bytes is the decoded size of the sessions' images. ss.mu is held.
func (ss *mlSessions) bytes() int64 {
	var n int64
	for _, s := range ss.items {
		n += s.img.Bytes
	}
	return n
}

// expired reports whether a session has outlived its expiry. ss.mu is held.
func (ss *mlSessions) expired(s *mlSession, now int64) bool {
	return now-s.info.LastAccessTS > s.info.Expiry
}

// drop removes a session and its files. ss.mu is held.
func (ss *mlSessions) drop(id string) {
	s := ss.items[id]
	if s == nil {
		return
	}
	delete(ss.items, id)
	os.RemoveAll(s.info.Path)
	go ss.onDrop(s.img.ID)
}

// sweep drops the expired sessions. ss.mu is held.
func (ss *mlSessions) sweep() {
	now := ss.now().Unix()
	for id, s := range ss.items {
		if ss.expired(s, now) {
			ss.drop(id)
		}
	}
}

// Add creates a session for a decoded image whose file(s) are in dir,
// dropping the least recently used sessions beyond the count and size
// bounds.
func (ss *mlSessions) Add(dir, image, ext string, img *storedImage, expiry time.Duration) MLSessionInfo {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweep()
	for len(ss.items) > 0 && (len(ss.items) >= ss.max || ss.bytes()+img.Bytes > ss.maxBytes) {
		oldest := ""
		for id, s := range ss.items {
			if oldest == "" || s.info.LastAccessTS < ss.items[oldest].info.LastAccessTS {
				oldest = id
			}
		}
		ss.drop(oldest)
	}
	if expiry <= 0 || expiry > ss.expiry {
		expiry = ss.expiry
	}
	id := newID()
	now := ss.now().Unix()
	img.ID = "session:" + id
	s := &mlSession{ext: ext, img: img, info: MLSessionInfo{
		Name: id, Path: dir, Image: image, Meta: map[string]any{},
		CreateTS: now, LastAccessTS: now, Expiry: int64(expiry / time.Second),
	}}
	ss.items[id] = s
	return s.info
}

// Get returns a live session, refreshing its last access when touch.
func (ss *mlSessions) Get(id string, touch bool) (*mlSession, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweep()
	s := ss.items[id]
	if s == nil {
		return nil, false
	}
	if touch {
		s.info.LastAccessTS = ss.now().Unix()
	}
	return s, true
}

// Remove drops a session and returns its info.
func (ss *mlSessions) Remove(id string) (MLSessionInfo, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweep()
	s := ss.items[id]
	if s == nil {
		return MLSessionInfo{}, false
	}
	info := s.info
	ss.drop(id)
	return info, true
}

// RemoveAll drops every session (on shutdown).
func (ss *mlSessions) RemoveAll() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id := range ss.items {
		ss.drop(id)
	}
}

func unknownSession(id string) error {
	return httpErrorf(http.StatusNotFound, "session %q not found (expired, removed, or never created): create one with PUT /session/", id)
}

// handleMLCreateSession is PUT /session/?expiry=SECONDS: multipart "files",
// one NIfTI or PNG file or the files of one DICOM series.
func (s *Server) handleMLCreateSession(w http.ResponseWriter, r *http.Request) error {
	var expiry time.Duration
	if e := r.URL.Query().Get("expiry"); e != "" {
		n, err := strconv.Atoi(e)
		if err != nil || n < 0 {
			return httpErrorf(http.StatusBadRequest, "expiry %q: want a number of seconds", e)
		}
		expiry = time.Duration(n) * time.Second
	}
	form, err := readForm(w, r, s.uploadLimit())
	if err != nil {
		return err
	}
	files := form.filesOf("files")
	if len(files) == 0 {
		files = form.filesOf("file")
	}
	if len(files) == 0 {
		return httpErrorf(http.StatusBadRequest, "no \"files\" part: send the volume as multipart field \"files\"")
	}
	dir, err := os.MkdirTemp("", "segsam-session-")
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}()
	var img *storedImage
	var image, ext string
	if len(files) == 1 {
		f := files[0]
		if ext, err = sniffExt(f.filename, f.data, imageExts); err != nil {
			return err
		}
		if img, err = s.decodeUploadedImage(f.data, ext); err != nil {
			return err
		}
		image = filepath.Join(dir, "image"+ext)
		if err := os.WriteFile(image, f.data, 0o600); err != nil {
			return fmt.Errorf("session: %w", err)
		}
	} else {
		for i, f := range files {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%05d.dcm", i)), f.data, 0o600); err != nil {
				return fmt.Errorf("session: %w", err)
			}
		}
		image = dir
		if img, err = readStudyFile(dir, ""); err != nil {
			return httpErrorf(http.StatusBadRequest, "session with %d files: not one DICOM series segsam reads: %v", len(files), err)
		}
	}
	img.Name = files[0].filename
	info := s.sessions.Add(dir, image, ext, img, expiry)
	keep = true
	writeJSON(w, http.StatusOK, map[string]any{"session_id": info.Name, "session_info": info})
	return nil
}

// handleMLGetSession is GET /session/{id}[?update_ts=true][&image=true].
func (s *Server) handleMLGetSession(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	q := r.URL.Query()
	touch, _ := strconv.ParseBool(q.Get("update_ts"))
	sess, ok := s.sessions.Get(id, touch)
	if !ok {
		return unknownSession(id)
	}
	if image, _ := strconv.ParseBool(q.Get("image")); image {
		return s.serveStudyFile(w, r, "session_"+id, studyFile{path: sess.info.Image, ext: sess.ext, dicom: sess.ext == ""},
			func() (*storedImage, error) { return sess.img, nil })
	}
	writeJSON(w, http.StatusOK, sess.info)
	return nil
}

func (s *Server) handleMLRemoveSession(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	info, ok := s.sessions.Remove(id)
	if !ok {
		return unknownSession(id)
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}
