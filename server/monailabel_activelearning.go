package server

import (
	"math/rand/v2"
	"net/http"
	"time"
)

// handleMLNextSample is POST /activelearning/{strategy}: the next study to
// label, one without a final label ("random": any of them, "first": the
// first by id), as MONAI Label answers: {"id": ID, ...its info}, or {} when
// every study has a final label. The choice is recorded in the image's
// info under "strategy", as MONAI Label does.
func (s *Server) handleMLNextSample(w http.ResponseWriter, r *http.Request) error {
	strategy := r.PathValue("strategy")
	if strategy != "random" && strategy != "first" {
		return httpErrorf(http.StatusNotFound, "unknown strategy %q: this server has first, random", strategy)
	}
	ds, err := s.datastore()
	if err != nil {
		return err
	}
	form, err := readForm(w, r, 4*maxFormValue)
	if err != nil {
		return err
	}
	params, err := jsonObject("request body", form.values["params"])
	if err != nil {
		return err
	}
	ids := ds.Unlabeled()
	if len(ids) == 0 {
		writeJSON(w, http.StatusOK, map[string]any{})
		return nil
	}
	id := ids[0]
	if strategy == "random" {
		id = ids[rand.IntN(len(ids))]
	}
	info, err := ds.ImageInfo(id)
	if err != nil {
		return err
	}
	st := map[string]any{}
	if old, ok := info["strategy"].(map[string]any); ok {
		for k, v := range old {
			st[k] = v
		}
	}
	st[strategy] = map[string]any{"ts": time.Now().Unix(), "client_id": params["client_id"]}
	if err := ds.UpdateImageInfo(id, map[string]any{"strategy": st}); err != nil {
		return err
	}
	info["strategy"] = st
	info["id"] = id
	writeJSON(w, http.StatusOK, info)
	return nil
}
