package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// Boot windows and node tokens (docs/security.md).
//
// A node's configs hold its secrets (SSH keys, snippets) and its token, so
// they are served only inside a window Racker opened itself: when the
// orchestrator is about to netboot the node (POST …/netboot, after it set
// the PXE flags and before it powers the node on) or orders a reinstall
// (POST …/reinstall). Each install generation has a fresh token, made when
// its window opens: the install config carries it, and the boot-phase
// fetch and every callback must present it. The install and the boot
// config are each served once per generation, so a host that takes a
// node's address after the node fetched them gets nothing, and one that
// fetches first makes the node fail loudly (its fetch is refused and
// recorded) instead of silently sharing its secrets. A booted callback
// closes the window; otherwise it closes when it times out.

// DefaultWindow is how long a boot window stays open: a netboot, the
// install (the orchestrator allows 30 minutes) and the first boot.
const DefaultWindow = 2 * time.Hour

// ErrRefused wraps the reasons a config is not served.
var ErrRefused = errors.New("refused")

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making a node token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// openWindowLocked opens (or extends) a node's window. A generation whose
// install config was served already is finished: the netboot that opens
// the window is a new install attempt, so it gets a new generation and a
// new token, and the old token stops working.
func (s *store) openWindowLocked(v *nodeView, newGeneration bool) error {
	if newGeneration || (v.Target == api.TargetInstall && v.InstallServed) {
		v.InstallGeneration++
		v.Token, v.InstallServed, v.BootServed = "", false, false
	}
	if v.Token == "" {
		t, err := newToken()
		if err != nil {
			return err
		}
		v.Token = t
	}
	v.WindowUntil = s.now().Add(s.window).UTC()
	return nil
}

// netboot opens a node's boot window: Racker is about to netboot it.
func (s *store) netboot(mac string) (api.Node, error) {
	s.mu.Lock()
	n, ok := s.byMAC[mac]
	if !ok {
		s.mu.Unlock()
		return api.Node{}, fmt.Errorf("no planned node has the primary MAC %s", mac)
	}
	v := s.viewFor(mac)
	old := *v
	err := s.openWindowLocked(v, false)
	if err == nil {
		err = s.saveLocked()
	}
	if err != nil {
		*v = old
		s.mu.Unlock()
		return api.Node{}, fmt.Errorf("opening the boot window of %s: %w", mac, err)
	}
	out := s.viewLocked(n)
	s.mu.Unlock()
	return s.withBMCLease(out), nil
}

// viewFor returns the node's record, making one (target install) when it
// has none. s.mu is held.
func (s *store) viewFor(mac string) *nodeView {
	v := s.nodes[mac]
	if v == nil {
		v = &nodeView{nodeTarget: nodeTarget{Target: api.TargetInstall}, phase: api.PhaseUnknown}
		s.nodes[mac] = v
	}
	return v
}

// inWindowLocked says whether the node's boot window is open.
func (s *store) inWindowLocked(mac string) bool {
	v := s.nodes[mac]
	return v != nil && v.WindowUntil.After(s.now())
}

// claim takes the right to serve a node's config of phase for its current
// generation: the window must be open, and the config not served yet in
// this generation. The claim is durable before the config is sent, so a
// restart never serves it twice. It returns the node's record.
func (s *store) claim(mac string, phase api.IgnitionPhase) (nodeTarget, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.nodes[mac]
	if v == nil || !v.WindowUntil.After(s.now()) {
		return nodeTarget{}, fmt.Errorf("%w: no boot window is open for %s", ErrRefused, mac)
	}
	if v.Token == "" {
		return nodeTarget{}, fmt.Errorf("%w: %s has no token (no window was opened)", ErrRefused, mac)
	}
	served := &v.InstallServed
	if phase == api.IgnitionBoot {
		served = &v.BootServed
	}
	if *served {
		return nodeTarget{}, fmt.Errorf("%w: the %s config of %s was served already in install generation %d", ErrRefused, phase, mac, v.InstallGeneration)
	}
	*served = true
	if err := s.saveLocked(); err != nil {
		*served = false
		return nodeTarget{}, fmt.Errorf("recording that the %s config of %s is served: %w", phase, mac, err)
	}
	return v.nodeTarget, nil
}

// tokenOK says whether r presents the node's current token.
func (s *store) tokenOK(mac string, r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get(api.TokenHeader), api.TokenScheme)
	if !ok || got == "" {
		return false
	}
	s.mu.Lock()
	v := s.nodes[mac]
	want := ""
	if v != nil {
		want = v.Token
	}
	s.mu.Unlock()
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// unsolicitedLocked says whether an observed event (DHCP, TFTP, iPXE) of a
// planned node came outside its window.
func (s *store) unsolicitedLocked(ev api.Event) bool {
	switch ev.Kind {
	case api.KindDHCP, api.KindTFTP, api.KindIPXE:
	default:
		return false
	}
	if _, planned := s.byMAC[ev.MAC]; !planned {
		return false // a BMC, or a machine the plan does not know
	}
	return !s.inWindowLocked(ev.MAC)
}
