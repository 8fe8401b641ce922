package matchbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	mbserver "github.com/poseidon/matchbox/matchbox/server"
	"github.com/poseidon/matchbox/matchbox/server/serverpb"
)

// The read-only HTTP endpoints of matchbox that Lokomotive's nodes use,
// answered from matchbox's own core (its group selection, profiles and
// Ignition store), with matchbox's wire behaviour: boot.ipxe gathers the
// machine's labels and chains to ipxe, which renders the selected
// profile's kernel, initrds and arguments; ignition serves the selected
// profile's Ignition config.
//
// Why not matchbox's own http package: it links coreos-cloudinit (for
// /cloud), whose YAML library is LGPL-3.0, which Racker's licence policy
// does not accept for code built into it (internal/licenses), and butane
// (for Butane templates), which Lokomotive does not use. And matchbox
// v0.11.0 re-parses raw Ignition as spec 3 and serves an empty config on
// failure, while Lokomotive v0.9.0's Terraform (ct provider v0.8.0)
// registers spec 2.3.0: here raw Ignition is served verbatim, and
// Flatcar's Ignition reads either spec.

// bootIPXE is matchbox's boot.ipxe, byte for byte: it chains, relative to
// its own URL, to ipxe with the machine's labels.
const bootIPXE = "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n"

func newHandler(core mbserver.Server, s *Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", func(w http.ResponseWriter, r *http.Request) { text(w, bootIPXE) })
	mux.HandleFunc("GET /boot.ipxe.0", func(w http.ResponseWriter, r *http.Request) { text(w, bootIPXE) })
	mux.HandleFunc("GET /ipxe", func(w http.ResponseWriter, r *http.Request) {
		p, err := core.SelectProfile(r.Context(), &serverpb.SelectProfileRequest{Labels: labels(r)})
		if err != nil || p.Boot == nil || p.Boot.Kernel == "" {
			s.log.Debug("matchbox: no profile with a kernel for this machine", "labels", labels(r))
			http.NotFound(w, r)
			return
		}
		text(w, ipxeScript(p.Boot.Kernel, p.Boot.Initrd, p.Boot.Args))
	})
	mux.HandleFunc("GET /ignition", func(w http.ResponseWriter, r *http.Request) {
		cfg, err := selectIgnition(r, core)
		if err != nil {
			s.log.Debug("matchbox: no Ignition for this machine", "labels", labels(r), "err", err)
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(cfg)
	})
	return mux
}

// ipxeScript is matchbox's iPXE template.
func ipxeScript(kernel string, initrds, args []string) string {
	var b strings.Builder
	b.WriteString("#!ipxe\nkernel " + kernel)
	for _, a := range args {
		b.WriteString(" " + a)
	}
	for _, i := range initrds {
		b.WriteString("\ninitrd " + i)
	}
	b.WriteString("\nboot\n")
	return b.String()
}

// selectIgnition is the raw Ignition (PROFILE.ign, as the matchbox
// Terraform provider stores raw_ignition) of the profile of the group the
// request selects.
func selectIgnition(r *http.Request, core mbserver.Server) ([]byte, error) {
	ctx := r.Context()
	g, err := core.SelectGroup(ctx, &serverpb.SelectGroupRequest{Labels: labels(r)})
	if err != nil {
		return nil, err
	}
	p, err := core.ProfileGet(ctx, &serverpb.ProfileGetRequest{Id: g.Profile})
	if err != nil {
		return nil, fmt.Errorf("group %s names profile %s: %w", g.Id, g.Profile, err)
	}
	if !strings.HasSuffix(p.IgnitionId, ".ign") && !strings.HasSuffix(p.IgnitionId, ".ignition") {
		return nil, fmt.Errorf("profile %s: Ignition %q is not raw Ignition (*.ign); Butane templates are not served", p.Id, p.IgnitionId)
	}
	contents, err := core.IgnitionGet(ctx, &serverpb.IgnitionGetRequest{Name: p.IgnitionId})
	if err != nil {
		return nil, err
	}
	var head struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal([]byte(contents), &head); err != nil || head.Ignition.Version == "" {
		return nil, errors.New("profile " + p.Id + ": its Ignition is not JSON with ignition.version")
	}
	return []byte(contents), nil
}

// labels are the request's query parameters, the MAC normalised (and
// dropped when it does not parse), as matchbox matches them.
func labels(r *http.Request) map[string]string {
	out := map[string]string{}
	for k, v := range r.URL.Query() {
		if strings.EqualFold(k, "mac") {
			hw, err := net.ParseMAC(v[0])
			if err != nil {
				continue
			}
			out[k] = hw.String()
			continue
		}
		out[k] = v[0]
	}
	return out
}

func text(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(s))
}
