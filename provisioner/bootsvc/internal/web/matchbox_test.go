package web

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/poseidon/matchbox/matchbox/client"
	"github.com/poseidon/matchbox/matchbox/server/serverpb"
	"github.com/poseidon/matchbox/matchbox/storage/storagepb"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/bootsvc/internal/matchbox"
	"github.com/racker/racker/provisioner/images"
)

// matchboxRig is the test rack's web server with the real embedded
// matchbox mounted, and node A registered through matchbox's gRPC API
// (its own client, the generated client bundle) as Lokomotive's Terraform
// registers a node: a cached install profile selected by MAC, and the
// node's profile selected by MAC and os=installed.
func matchboxRig(t *testing.T) *rig {
	t.Helper()
	r := newRig(t)
	r.stop()
	mb, err := matchbox.New(matchbox.Config{StateDir: r.state})
	if err != nil {
		t.Fatal(err)
	}
	r.mb = mb
	r.start()

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mb.ServeRPC(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	tlsCfg, err := mb.PKI().ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(&client.Config{Endpoints: []string{ln.Addr().String()}, DialTimeout: 5 * time.Second, TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	put := func(p *storagepb.Profile, raw string) {
		if _, err := c.Profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: p}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Ignition.IgnitionPut(ctx, &serverpb.IgnitionPutRequest{Name: p.IgnitionId, Config: []byte(raw)}); err != nil {
			t.Fatal(err)
		}
	}
	ep := "http://172.24.213.1:8080" + api.MatchboxPath
	put(&storagepb.Profile{Id: "cached-flatcar-linux-install-a", IgnitionId: "cached-flatcar-linux-install-a.ign",
		Boot: &storagepb.NetBoot{Kernel: "/assets/flatcar/current/flatcar_production_pxe.vmlinuz",
			Initrd: []string{"/assets/flatcar/current/flatcar_production_pxe_image.cpio.gz"},
			Args:   []string{"initrd=flatcar_production_pxe_image.cpio.gz", "ignition.config.url=" + ep + "/ignition?uuid=${uuid}&mac=${mac:hexhyp}", "flatcar.first_boot=yes"}}},
		`{"ignition":{"version":"2.3.0"},"systemd":{"units":[{"name":"installer.service","enabled":true}]}}`)
	put(&storagepb.Profile{Id: "racker-controller-a", IgnitionId: "racker-controller-a.ign"},
		`{"ignition":{"version":"2.3.0"},"storage":{"files":[{"path":"/etc/kubernetes/secret","contents":{"source":"data:,cluster-secret"}}]}}`)
	for _, g := range []*storagepb.Group{
		{Id: "install-a", Profile: "cached-flatcar-linux-install-a", Selector: map[string]string{"mac": macA}},
		{Id: "racker-a", Profile: "racker-controller-a", Selector: map[string]string{"mac": macA, "os": "installed"}},
	} {
		if _, err := c.Groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: g}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r *rig) lastEvent(mac string, kind api.EventKind) (api.Event, bool) {
	evs := r.events(0)
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].MAC == mac && evs[i].Kind == kind {
			return evs[i], true
		}
	}
	return api.Event{}, false
}

// TestMatchboxChain: a node lokoctl registered in matchbox is chained from
// Racker's /ipxe to matchbox's boot.ipxe, then gets matchbox's profile;
// a node it did not register still gets Racker's own install; an
// installed node still boots from disk.
func TestMatchboxChain(t *testing.T) {
	r := matchboxRig(t)
	// Outside its boot window a registered node gets nothing that installs
	// it, from matchbox either (docs/security.md).
	if code, body := r.get("/matchbox/ipxe?uuid=&mac=00-11-22-33-44-10&arch=x86_64"); !refused(code) || strings.Contains(body, "kernel") {
		t.Errorf("/matchbox/ipxe outside the boot window = %d %q, want refused", code, body)
	}
	// The installed node's own config is no install: served outside the
	// window too, but then it says nothing about an install.
	if code, _ := r.get("/matchbox/ignition?mac=00:11:22:33:44:10&os=installed"); code != 200 {
		t.Errorf("node ignition outside the window = %d", code)
	}
	if n := r.node(macA); n.Phase == api.PhaseBooted || n.Target == api.TargetDisk {
		t.Errorf("an os=installed fetch outside the window moved the node: phase %s, target %s", n.Phase, n.Target)
	}
	// The management node sees which nodes lokoctl registered.
	nodes, err := api.NewClient(r.http.URL).Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Matchbox != (n.PrimaryMAC == macA) {
			t.Errorf("%s: matchbox = %v, want %v", n.PrimaryMAC, n.Matchbox, n.PrimaryMAC == macA)
		}
	}
	if n, err := api.NewClient(r.http.URL).Node(context.Background(), macA); err != nil || !n.Matchbox {
		t.Errorf("Node(A) = %+v, %v; want matchbox", n, err)
	}
	r.netboot(macA)
	r.netboot(macB)
	code, body := r.get("/ipxe?mac=" + macA)
	if code != 200 || body != "#!ipxe\nchain http://172.24.213.1:8080/matchbox/boot.ipxe\n" {
		t.Fatalf("/ipxe for a registered node = %d %q", code, body)
	}
	if ev, ok := r.lastEvent(macA, api.KindIPXE); !ok || ev.Script != api.ScriptMatchbox {
		t.Errorf("event = %+v, want script %s", ev, api.ScriptMatchbox)
	}
	if n := r.node(macA); n.Phase != api.PhaseNetbooting {
		t.Errorf("phase after the chain = %s, want %s", n.Phase, api.PhaseNetbooting)
	}
	if code, body = r.get("/ipxe?mac=" + macB); code != 200 || !strings.Contains(body, "/assets/testos/current/") {
		t.Errorf("/ipxe for an unregistered node = %d %q, want Racker's install", code, body)
	}
	code, body = r.get("/matchbox/boot.ipxe")
	if code != 200 || !strings.Contains(body, "chain ipxe?uuid=${uuid}&mac=${mac:hexhyp}") {
		t.Fatalf("/matchbox/boot.ipxe = %d %q", code, body)
	}
	// What iPXE asks next (the relative "ipxe?…" under /matchbox/), from
	// node A's lease.
	code, body = r.get("/matchbox/ipxe?uuid=&mac=00-11-22-33-44-10&domain=&hostname=&serial=&arch=x86_64")
	if code != 200 || !strings.Contains(body, "kernel /assets/flatcar/current/flatcar_production_pxe.vmlinuz") ||
		!strings.Contains(body, "ignition.config.url=http://172.24.213.1:8080/matchbox/ignition?uuid=${uuid}&mac=${mac:hexhyp}") {
		t.Errorf("/matchbox/ipxe = %d %q", code, body)
	}
	code, body = r.get("/matchbox/ignition?uuid=&mac=00-11-22-33-44-10")
	if code != 200 || !strings.Contains(body, `"version":"2.3.0"`) || !strings.Contains(body, "installer.service") {
		t.Errorf("install ignition (spec 2.3.0, verbatim) = %d %q", code, body)
	}
	if ev, ok := r.lastEvent(macA, api.KindIgnition); !ok || ev.Ignition != api.IgnitionMatchboxInstall {
		t.Errorf("event = %+v, want matchbox's install ignition", ev)
	}
	if n := r.node(macA); n.Phase != api.PhaseInstalling {
		t.Errorf("phase once the installer has its config = %s, want %s", n.Phase, api.PhaseInstalling)
	}
	code, body = r.get("/matchbox/ignition?mac=00:11:22:33:44:10&os=installed")
	if code != 200 || !strings.Contains(body, "cluster-secret") {
		t.Errorf("node ignition = %d %q", code, body)
	}
	if ev, ok := r.lastEvent(macA, api.KindIgnition); !ok || ev.Ignition != api.IgnitionMatchboxNode {
		t.Errorf("event = %+v, want matchbox's node ignition", ev)
	}

	// flatcar-install -b MATCHBOX/assets/flatcar (Lokomotive's cached
	// install) finds Racker's release there, with Range as /assets/ has.
	want, err := os.ReadFile(filepath.Join(r.release, images.Image))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/matchbox/assets/testos/current/" + images.Image, "/assets/testos/current/" + images.Image} {
		if code, body := r.get(path); code != 200 || body != string(want) {
			t.Errorf("%s = %d, %d bytes, want the image's %d", path, code, len(body), len(want))
		}
	}
	if code, _ := r.get("/matchbox/assets/testos/current/../../../etc/passwd"); code == 200 {
		t.Error("/matchbox/assets/ served a path outside the release")
	}

	// The installed system fetched its own config inside the window: it
	// booted (matchbox's installs make no callbacks), its window is closed,
	// and Racker's guard answers "boot from disk", also on matchbox's own
	// script, so a later netboot is no reinstall.
	if n := r.node(macA); n.Phase != api.PhaseBooted || n.Target != api.TargetDisk || !n.WindowUntil.IsZero() {
		t.Errorf("after the os=installed fetch: phase %s, target %s, window until %v; want booted, disk, closed", n.Phase, n.Target, n.WindowUntil)
	}
	for _, path := range []string{"/ipxe?mac=" + macA, "/matchbox/ipxe?mac=" + macA} {
		if code, body = r.get(path); code != 200 || !strings.Contains(body, "booting from disk") {
			t.Errorf("%s for an installed node = %d %q", path, code, body)
		}
	}
}

// TestMatchboxGuard: matchbox would serve any MAC's secrets to anyone;
// Racker serves a node's matchbox configs only to the node, journals a
// refusal, and refuses MACs that are not planned nodes.
func TestMatchboxGuard(t *testing.T) {
	r := matchboxRig(t)
	fromB := clientFrom("127.0.0.2") // node B's address, asking for A's
	for _, path := range []string{"/matchbox/ignition?mac=00-11-22-33-44-10&os=installed", "/matchbox/ipxe?mac=00:11:22:33:44:10",
		"/matchbox/generic?mac=00:11:22:33:44:10", "/matchbox/metadata?mac=00:11:22:33:44:10", "/matchbox/ignition.sig?mac=00:11:22:33:44:10"} {
		code, body, _ := r.do(fromB, "GET", path, nil)
		if !refused(code) || strings.Contains(string(body), "cluster-secret") {
			t.Errorf("%s from another node = %d %q, want refused (403, then 429)", path, code, body)
		}
	}
	if ev, ok := r.lastEvent(macA, api.KindForbidden); !ok || !strings.Contains(ev.Message, "127.0.0.2") {
		t.Errorf("forbidden event = %+v, %v", ev, ok)
	}
	for path, want := range map[string]int{
		"/matchbox/ignition":                       400, // no MAC
		"/matchbox/ignition?mac=zz":                400,
		"/matchbox/ignition?mac=02:00:00:00:00:99": 404, // not a planned node
		"/matchbox/assets/flatcar/x":               404, // matchbox's assets are Racker's /assets: no such image
	} {
		if code, body := r.get(path); code != want {
			t.Errorf("%s = %d %q, want %d", path, code, body, want)
		}
	}
	// Without a matchbox, nothing is mounted.
	plain := newRig(t)
	if code, _ := plain.get("/matchbox/boot.ipxe"); code != 404 {
		t.Errorf("/matchbox/boot.ipxe without matchbox = %d, want 404", code)
	}
	plain.netboot(macA)
	if code, body := plain.get("/ipxe?mac=" + macA); code != 200 || !strings.Contains(body, "/assets/testos/") {
		t.Errorf("/ipxe without matchbox = %d %q", code, body)
	}
}
