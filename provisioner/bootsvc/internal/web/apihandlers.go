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
	switch {
	case !ok || !s.mayActFor(r, n):
		s.refuse(w, r, cb.MAC, "callback "+string(cb.Event)+" for "+cb.MAC+": not the node's address")
		return
	case !s.store.tokenOK(cb.MAC, r):
		s.refuse(w, r, cb.MAC, "callback "+string(cb.Event)+" for "+cb.MAC+": without the node's token")
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
	if !s.fromManagement(w, r) {
		return
	}
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
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + writeTimeout))
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		evs, notify, err := s.store.j.since(q.Get("epoch"), after, maxEventsPerAnswer)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if len(evs) > 0 || wait == 0 {
			writeJSON(w, http.StatusOK, api.EventsResponse{Epoch: s.store.j.epoch, Events: nonNil(evs)})
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
	if !s.fromManagement(w, r) {
		return
	}
	nodes := s.store.list()
	if s.cfg.Matchbox != nil {
		selected := s.cfg.Matchbox.SelectedMACs()
		for i := range nodes {
			nodes[i].Matchbox = selected[nodes[i].PrimaryMAC]
		}
	}
	writeJSON(w, http.StatusOK, api.NodesResponse{Nodes: nodes})
}

// getRelease says which OS release the services serve.
func (s *Server) getRelease(w http.ResponseWriter, r *http.Request) {
	if !s.fromManagement(w, r) {
		return
	}
	if s.cfg.Release == nil {
		writeError(w, http.StatusNotFound, "these boot services serve no OS release")
		return
	}
	writeJSON(w, http.StatusOK, api.Release{OS: s.cfg.Release.OS, Version: s.cfg.Release.Version, OtherImageKey: s.cfg.Release.OtherKey})
}

// managedMAC is the prologue of the per-node management calls: only from
// the management node, and the {mac} of the path normalised (else 400).
func (s *Server) managedMAC(w http.ResponseWriter, r *http.Request) (string, bool) {
	if !s.fromManagement(w, r) {
		return "", false
	}
	mac, err := inventory.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return mac, true
}

// getNode answers one node, named by any spelling of its primary MAC.
func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	mac, ok := s.managedMAC(w, r)
	if !ok {
		return
	}
	n, ok := s.store.view(mac)
	if !ok {
		writeError(w, http.StatusNotFound, mac+" is not the primary MAC of a planned node")
		return
	}
	n.Matchbox = s.cfg.Matchbox != nil && s.cfg.Matchbox.Selects(mac)
	writeJSON(w, http.StatusOK, n)
}

// postReload re-plans from the files (Config.Replan): how racker
// bootstrap, replace and retire, run beside a racker serve, make it see
// the rows they added or changed at once.
func (s *Server) postReload(w http.ResponseWriter, r *http.Request) {
	if !s.fromManagement(w, r) {
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

// postNetboot opens a node's boot window: the orchestrator calls it
// before it powers the node on into PXE.
func (s *Server) postNetboot(w http.ResponseWriter, r *http.Request) {
	mac, ok := s.managedMAC(w, r)
	if !ok {
		return
	}
	n, err := s.store.netboot(mac)
	if err != nil {
		code := http.StatusInternalServerError
		if _, planned := s.store.node(mac); !planned {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	s.log.Info("boot window open", "mac", mac, "node", n.Hostname, "generation", n.InstallGeneration, "until", n.WindowUntil)
	writeJSON(w, http.StatusOK, n)
}

func (s *Server) postReinstall(w http.ResponseWriter, r *http.Request) {
	mac, ok := s.managedMAC(w, r)
	if !ok {
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
