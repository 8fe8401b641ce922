package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/inventory"
)

// The /api/v1 handlers: node callbacks, the event feed, node states and
// reinstalls.

func (s *Server) postEvent(w http.ResponseWriter, r *http.Request) {
	var cb api.Callback
	body := http.MaxBytesReader(w, r.Body, api.MaxCallbackBytes)
	if err := json.NewDecoder(body).Decode(&cb); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", api.MaxCallbackBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return
	}
	cb, err := cb.Validate()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	n, ok := s.store.node(cb.MAC)
	if !ok || !s.mayActFor(r, n) {
		s.log.Warn("refused a node callback from an address that is not the node's", "mac", cb.MAC, "event", cb.Event, "from", r.RemoteAddr)
		s.record(r, api.Event{MAC: cb.MAC, Kind: api.KindForbidden, Message: "callback " + string(cb.Event) + " sent by " + remoteAddr(r).String()})
		writeError(w, http.StatusForbidden, "callbacks for "+cb.MAC+" are only taken from that node's address")
		return
	}
	ev, err := s.store.j.append(api.Event{MAC: cb.MAC, Kind: cb.Event, Message: cb.Message, Source: r.RemoteAddr})
	if err != nil {
		s.log.Error("could not record a node callback", "mac", cb.MAC, "event", cb.Event, "err", err)
		writeError(w, http.StatusServiceUnavailable, "could not record the event")
		return
	}
	lvl := slog.LevelInfo
	if cb.Event == api.KindFailed {
		lvl = slog.LevelWarn
	}
	s.log.Log(r.Context(), lvl, "node callback", "mac", cb.MAC, "node", n.Hostname, "event", cb.Event, "message", cb.Message, "seq", ev.Seq)
	w.WriteHeader(http.StatusNoContent)
}

// maxEventsPerAnswer bounds one GET /api/v1/events answer; clients page
// with after=<last seq>.
const maxEventsPerAnswer = 1000

func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if a := q.Get("after"); a != "" {
		if _, err := fmt.Sscan(a, &after); err != nil {
			writeError(w, http.StatusBadRequest, "after: not a sequence number")
			return
		}
	}
	var wait time.Duration
	if ws := q.Get("wait"); ws != "" {
		d, err := time.ParseDuration(ws)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "wait: not a duration (e.g. 30s)")
			return
		}
		wait = min(d, s.cfg.MaxWait)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		evs, notify, err := s.store.j.since(after, maxEventsPerAnswer)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if len(evs) > 0 || wait == 0 {
			writeJSON(w, http.StatusOK, api.EventsResponse{Events: nonNil(evs)})
			return
		}
		select {
		case <-notify:
		case <-deadline.C:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

func nonNil(evs []api.Event) []api.Event {
	if evs == nil {
		return []api.Event{}
	}
	return evs
}

func (s *Server) getNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.NodesResponse{Nodes: s.store.list()})
}

// getNode answers one node, named by any spelling of its primary MAC.
func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	mac, err := inventory.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	n, ok := s.store.view(mac)
	if !ok {
		writeError(w, http.StatusNotFound, mac+" is not the primary MAC of a planned node")
		return
	}
	writeJSON(w, http.StatusOK, n)
}

// postReload re-plans from the files (Config.Replan): how racker
// bootstrap, replace and retire, run beside a racker serve, make it see
// the rows they added or changed at once.
func (s *Server) postReload(w http.ResponseWriter, r *http.Request) {
	if !s.isAdmin(r) {
		writeError(w, http.StatusForbidden, "plan reloads are only taken from the management node")
		return
	}
	if s.cfg.Replan == nil {
		writeError(w, http.StatusNotFound, "these boot services cannot re-read the plan (restart them)")
		return
	}
	if err := s.cfg.Replan(); err != nil {
		s.log.Error("plan not reloaded: keeping the current one", "err", err)
		writeError(w, http.StatusConflict, "plan not reloaded: "+err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) postReinstall(w http.ResponseWriter, r *http.Request) {
	if !s.isAdmin(r) {
		writeError(w, http.StatusForbidden, "reinstalls are only taken from the management node")
		return
	}
	mac, err := inventory.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var req api.ReinstallRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return
	}
	n, err := s.store.reinstall(mac, req.WipeAll)
	if err != nil {
		code := http.StatusInternalServerError
		if _, planned := s.store.node(mac); !planned {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	s.log.Info("node will reinstall at its next netboot", "mac", mac, "node", n.Hostname, "wipe_all", n.WipeAll, "generation", n.InstallGeneration)
	writeJSON(w, http.StatusOK, n)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.ErrorResponse{Error: msg})
}
