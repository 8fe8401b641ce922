package web

import (
	"net/http"
	"strings"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/inventory"
)

// Matchbox is the embedded matchbox as the web server uses it: its HTTP
// endpoints (rooted at "/") and whether lokoctl registered a group that
// selects a MAC.
type Matchbox interface {
	Handler() http.Handler
	Selects(mac string) bool
	SelectedMACs() map[string]bool
}

// matchboxScript chains a node to matchbox's boot.ipxe, which asks for
// matchbox's per-MAC script (its profile for the node).
func matchboxScript(base string) string {
	return "#!ipxe\nchain " + base + api.MatchboxPath + "/boot.ipxe\n"
}

// serveMatchbox passes requests under api.MatchboxPath to matchbox, with
// Racker's guard in front of every per-machine endpoint: matchbox itself
// serves any MAC's profile and Ignition (Lokomotive's carry the cluster's
// secrets) to whoever asks. Here the MAC must be a planned node, the
// request must come from that node (its planned address or lease), and a
// node whose target is disk never gets an install script, as with
// Racker's own /ipxe. What matchbox serves is journaled like Racker's own
// scripts and configs, so the orchestrator and status follow the node.
func (s *Server) serveMatchbox(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Matchbox == nil {
		http.Error(w, "no matchbox API on these boot services", http.StatusNotFound)
		return
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, api.MatchboxPath+"/assets/"); ok {
		s.serveMatchboxAsset(w, r, rest)
		return
	}
	endpoint := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, api.MatchboxPath+"/"), ".sig")
	inner := http.StripPrefix(api.MatchboxPath, s.cfg.Matchbox.Handler())
	switch endpoint {
	case "", "boot.ipxe", "boot.ipxe.0": // the same for every machine
		inner.ServeHTTP(w, r)
		return
	case "ipxe", "ignition", "generic", "metadata", "cloud", "grub":
	default:
		http.NotFound(w, r)
		return
	}
	raw := r.URL.Query().Get("mac")
	mac, err := inventory.NormalizeMAC(raw)
	if err != nil {
		http.Error(w, "matchbox "+endpoint+": the request names no valid MAC", http.StatusBadRequest)
		return
	}
	n, ok := s.store.nodeByNIC(mac)
	if !ok {
		s.log.Info("matchbox request for a machine that is not a planned node", "mac", mac, "endpoint", endpoint, "from", r.RemoteAddr)
		http.Error(w, mac+" is not a node of this rack's plan", http.StatusNotFound)
		return
	}
	mac = n.PrimaryMAC
	if !s.mayActFor(r, n) {
		s.refuse(w, r, mac, "matchbox "+endpoint+": not the node's address")
		return
	}
	// What installs a node is served in its boot window only, as Racker's
	// own /ipxe and install Ignition are (docs/security.md); the installed
	// node's own config (os=installed) is not an install.
	installed := endpoint == "ignition" && r.URL.Query().Get("os") == "installed"
	if !installed && s.store.target(mac).Target != api.TargetDisk && !s.store.inWindow(mac) {
		s.refuse(w, r, mac, "matchbox "+endpoint+": no boot window is open for "+mac)
		return
	}
	switch endpoint {
	case "ipxe":
		if s.store.target(mac).Target == api.TargetDisk {
			s.served(r, mac, api.ScriptDisk)
			writeText(w, diskScript(mac))
			return
		}
		cw := &countingWriter{ResponseWriter: w, code: http.StatusOK}
		inner.ServeHTTP(cw, r)
		if cw.code == http.StatusOK {
			s.served(r, mac, api.ScriptMatchbox)
		}
	case "ignition":
		phase := api.IgnitionMatchboxInstall
		if r.URL.Query().Get("os") == "installed" { // Lokomotive's node group selects os=installed
			phase = api.IgnitionMatchboxNode
		}
		cw := &countingWriter{ResponseWriter: w, code: http.StatusOK}
		w.Header().Set("Cache-Control", "no-store")
		inner.ServeHTTP(cw, r)
		if cw.code == http.StatusOK {
			s.record(r, api.Event{MAC: mac, Kind: api.KindIgnition, Ignition: phase, Message: "matchbox " + string(phase)})
		}
	default:
		inner.ServeHTTP(w, r)
	}
}

// serveMatchboxAsset serves matchbox's /assets/ (its cache of OS images)
// as Racker's own /assets/: Lokomotive's cached install runs
// flatcar-install with -b MATCHBOX_HTTP_ENDPOINT/assets/flatcar, and
// Racker's release is that cache. Images are public, as on Flatcar's
// mirrors; what a node may not fetch (configs) is guarded above.
func (s *Server) serveMatchboxAsset(w http.ResponseWriter, r *http.Request, rest string) {
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/assets/" + rest
	cw := &countingWriter{ResponseWriter: w, code: http.StatusOK}
	s.serveAsset(cw, r2)
	s.metrics.Asset(cw.bytes)
}
