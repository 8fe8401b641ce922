package matchbox

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/poseidon/matchbox/matchbox/client"
	"github.com/poseidon/matchbox/matchbox/server/serverpb"
	"github.com/poseidon/matchbox/matchbox/storage/storagepb"
)

const (
	nodeMAC  = "52:54:00:a1:9c:ae"
	otherMAC = "52:54:00:a1:9c:af"
	version  = "3815.2.0"
	httpEP   = "http://172.24.213.1:8080/matchbox"
)

// startRPC runs the embedded matchbox's gRPC API on loopback and returns
// its address.
func startRPC(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeRPC(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeRPC after a graceful stop: %v", err)
		}
	})
	return ln.Addr().String()
}

func newClient(t *testing.T, addr string, tlsCfg *tls.Config) (*client.Client, error) {
	t.Helper()
	c, err := client.New(&client.Config{Endpoints: []string{addr}, DialTimeout: 3 * time.Second, TLS: tlsCfg})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// putLokomotiveNode registers one node the way Lokomotive v0.9.0's
// matchbox-flatcar Terraform module does (cached_install = true, as
// Racker's lokocfg sets it): the cached install profile and its group
// selected by MAC, and the node's profile and group selected by MAC and
// os=installed. Their Ignition is spec 2.3.0, what ct v0.8.0 renders
// from Lokomotive's Container Linux Configs. Each raw_ignition goes in as the matchbox provider puts
// it: an Ignition named PROFILE.ign, which the profile names.
func putLokomotiveNode(t *testing.T, c *client.Client, name, mac string) {
	t.Helper()
	ctx := context.Background()
	install := &storagepb.Profile{
		Id: "cached-flatcar-linux-install-" + name, IgnitionId: "cached-flatcar-linux-install-" + name + ".ign",
		Boot: &storagepb.NetBoot{
			Kernel: "/assets/flatcar/" + version + "/flatcar_production_pxe.vmlinuz",
			Initrd: []string{"/assets/flatcar/" + version + "/flatcar_production_pxe_image.cpio.gz"},
			Args: []string{"initrd=flatcar_production_pxe_image.cpio.gz",
				"ignition.config.url=" + httpEP + "/ignition?uuid=${uuid}&mac=${mac:hexhyp}",
				"flatcar.first_boot=yes", "console=tty0", "console=ttyS0,115200n8"},
		},
	}
	node := &storagepb.Profile{Id: "racker-controller-" + name, IgnitionId: "racker-controller-" + name + ".ign"}
	raw := map[*storagepb.Profile]string{
		install: `{"ignition":{"version":"2.3.0"},"storage":{"files":[{"path":"/opt/installer","contents":{"source":"data:,install-` + name + `"}}]}}`,
		node:    `{"ignition":{"version":"2.3.0"},"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA ` + name + `"]}]}}`,
	}
	for _, p := range []*storagepb.Profile{install, node} {
		putProfile(t, c, p, raw[p])
	}
	groups := []*storagepb.Group{
		{Id: "install-" + name, Name: "install-" + name, Profile: install.Id, Selector: map[string]string{"mac": mac}},
		{Id: "racker-" + name, Name: "racker-" + name, Profile: node.Id, Selector: map[string]string{"mac": mac, "os": "installed"}},
	}
	for _, g := range groups {
		if _, err := c.Groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: g}); err != nil {
			t.Fatalf("GroupPut %s: %v", g.Id, err)
		}
	}
}

// putProfile puts a profile and its raw Ignition as the matchbox
// Terraform provider (v0.4.1, Lokomotive's) does.
func putProfile(t *testing.T, c *client.Client, p *storagepb.Profile, raw string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: p}); err != nil {
		t.Fatalf("ProfilePut %s: %v", p.Id, err)
	}
	if _, err := c.Ignition.IgnitionPut(ctx, &serverpb.IgnitionPutRequest{Name: p.IgnitionId, Config: []byte(raw)}); err != nil {
		t.Fatalf("IgnitionPut %s: %v", p.IgnitionId, err)
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

// TestMatchboxLokomotiveRegistration: matchbox's own Go client (the one its
// Terraform provider wraps), with the client bundle Racker made, registers
// a node as Lokomotive's Terraform module does, and matchbox's HTTP
// endpoints then serve that node's install script and both Ignition
// configs by MAC, and nothing to another MAC.
func TestMatchboxLokomotiveRegistration(t *testing.T) {
	state := t.TempDir()
	s, err := New(Config{StateDir: state, Hosts: []netip.Addr{netip.MustParseAddr("172.24.213.1")}})
	if err != nil {
		t.Fatal(err)
	}
	addr := startRPC(t, s)
	tlsCfg, err := s.PKI().ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	c, err := newClient(t, addr, tlsCfg)
	if err != nil {
		t.Fatalf("a client with the generated bundle could not connect: %v", err)
	}
	if s.Selects(nodeMAC) {
		t.Fatal("Selects before any registration = true")
	}
	putLokomotiveNode(t, c, "node1", nodeMAC)

	list, err := c.Groups.GroupList(context.Background(), &serverpb.GroupListRequest{})
	if err != nil || len(list.Groups) != 2 {
		t.Fatalf("GroupList = %v, %v; want the 2 groups put", list, err)
	}
	if !s.Selects(nodeMAC) || !s.Selects(strings.ToUpper(nodeMAC)) || s.Selects(otherMAC) {
		t.Errorf("Selects(node, NODE, other) = %v %v %v, want true true false", s.Selects(nodeMAC), s.Selects(strings.ToUpper(nodeMAC)), s.Selects(otherMAC))
	}
	// The node group (mac and os=installed) selects nothing for a netboot.
	if got := s.SelectedMACs(); len(got) != 1 || !got[nodeMAC] {
		t.Errorf("SelectedMACs = %v, want only %s", got, nodeMAC)
	}

	h := s.Handler()
	code, body := get(t, h, "/boot.ipxe")
	if code != 200 || !strings.Contains(body, "chain ipxe?uuid=${uuid}&mac=${mac:hexhyp}") {
		t.Errorf("boot.ipxe = %d %q", code, body)
	}
	// What iPXE asks after boot.ipxe (${mac:hexhyp} expands with hyphens).
	code, body = get(t, h, "/ipxe?uuid=&mac=52-54-00-a1-9c-ae&domain=&hostname=&serial=&arch=x86_64")
	wantKernel := "kernel /assets/flatcar/" + version + "/flatcar_production_pxe.vmlinuz initrd=flatcar_production_pxe_image.cpio.gz ignition.config.url=" + httpEP + "/ignition?uuid=${uuid}&mac=${mac:hexhyp} flatcar.first_boot=yes"
	if code != 200 || !strings.Contains(body, wantKernel) || !strings.Contains(body, "initrd /assets/flatcar/"+version+"/flatcar_production_pxe_image.cpio.gz") {
		t.Errorf("ipxe for the node = %d %q\nwant a line %q", code, body, wantKernel)
	}
	code, body = get(t, h, "/ignition?uuid=&mac=52-54-00-a1-9c-ae")
	if code != 200 || !strings.Contains(body, "install-node1") {
		t.Errorf("install ignition = %d %q", code, body)
	}
	code, body = get(t, h, "/ignition?mac=52:54:00:a1:9c:ae&os=installed")
	if code != 200 || !strings.Contains(body, "ssh-ed25519 AAAA node1") || strings.Contains(body, "install-node1") {
		t.Errorf("installed node's ignition = %d %q", code, body)
	}
	// A spec-3 raw Ignition is served as well, verbatim.
	putProfile(t, c, &storagepb.Profile{Id: "v3", IgnitionId: "v3.ign"}, `{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/v3","contents":{"source":"data:,v3"}}]}}`)
	if _, err := c.Groups.GroupPut(context.Background(), &serverpb.GroupPutRequest{Group: &storagepb.Group{Id: "v3", Profile: "v3", Selector: map[string]string{"mac": otherMAC, "v": "3"}}}); err != nil {
		t.Fatal(err)
	}
	code, body = get(t, h, "/ignition?mac="+otherMAC+"&v=3")
	if code != 200 || !strings.Contains(body, `"version":"3.`) || !strings.Contains(body, "/etc/v3") {
		t.Errorf("spec-3 ignition = %d %q", code, body)
	}
	if code, body = get(t, h, "/ipxe?mac="+otherMAC); code != 404 {
		t.Errorf("ipxe for an unregistered MAC = %d %q, want 404", code, body)
	}

	// The store is matchbox's file store in the state folder: a restart
	// keeps what lokoctl registered.
	s2, err := New(Config{StateDir: state, Hosts: []netip.Addr{netip.MustParseAddr("172.24.213.1")}})
	if err != nil {
		t.Fatal(err)
	}
	if !s2.Selects(nodeMAC) {
		t.Error("a restarted matchbox lost the registration")
	}
	sel, err := c.Select.SelectProfile(context.Background(), &serverpb.SelectProfileRequest{Labels: map[string]string{"mac": nodeMAC, "os": "installed"}})
	if err != nil || sel.Profile.Id != "racker-controller-node1" {
		t.Errorf("SelectProfile(os=installed) = %v, %v", sel, err)
	}
}

// TestMatchboxRefusesClientsWithoutTheCertificate: mutual TLS. A client
// with no certificate, or one from another CA, gets no answer; nothing it
// sent is stored.
func TestMatchboxRefusesClientsWithoutTheCertificate(t *testing.T) {
	state := t.TempDir()
	s, err := New(Config{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	addr := startRPC(t, s)
	good, err := s.PKI().ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	noCert := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: good.RootCAs}
	// A bundle made by another Racker: a valid certificate, the wrong CA.
	other := NewPKI(t.TempDir())
	if _, err := other.Ensure(nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	otherCfg, err := other.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	otherCfg.RootCAs = good.RootCAs // trusts our server, but its cert is not ours
	for name, cfg := range map[string]*tls.Config{"no client certificate": noCert, "another CA's certificate": otherCfg} {
		t.Run(name, func(t *testing.T) {
			c, err := newClient(t, addr, cfg)
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				_, err = c.Groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: &storagepb.Group{Id: "evil", Profile: "p", Selector: map[string]string{"mac": nodeMAC}}})
			}
			if err == nil {
				t.Fatal("a client without the bundle's certificate was served")
			}
			t.Logf("refused as it should be: %v", err)
		})
	}
	// The same server answers a client with the bundle: the refusals
	// were the certificate's doing.
	c, err := newClient(t, addr, good)
	if err != nil {
		t.Fatalf("the bundle's client: %v", err)
	}
	if _, err := c.Groups.GroupList(context.Background(), &serverpb.GroupListRequest{}); err != nil {
		t.Fatalf("the bundle's client: %v", err)
	}
	if s.Selects(nodeMAC) {
		t.Error("a refused client's group was stored")
	}
	if entries, _ := os.ReadDir(filepath.Join(state, "matchbox", "data", "groups")); len(entries) != 0 {
		t.Errorf("groups on disk after refused clients: %v", entries)
	}
}

// TestPKI: ECDSA P-256 keys, a CA valid for ten years, a server
// certificate naming the management address, key files of mode 0600 in
// private folders; a second start keeps every file; certificates near
// their end, a CA near its end, or a server certificate missing a new
// address are renewed.
func TestPKI(t *testing.T) {
	p := NewPKI(t.TempDir())
	now := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	mgmt := netip.MustParseAddr("172.24.213.1")
	renewed, err := p.Ensure([]netip.Addr{mgmt}, now)
	if err != nil || strings.Join(renewed, ",") != "CA,server,client" {
		t.Fatalf("first Ensure = %v, %v", renewed, err)
	}
	ca := readCert(t, p.CA())
	if !ca.IsCA || ca.NotAfter.Sub(now) < 9*365*24*time.Hour {
		t.Errorf("CA: IsCA=%v, valid until %v", ca.IsCA, ca.NotAfter)
	}
	srv := readCert(t, p.ServerCert())
	if err := srv.VerifyHostname("172.24.213.1"); err != nil {
		t.Errorf("server certificate: %v", err)
	}
	for _, c := range []*x509.Certificate{ca, srv, readCert(t, p.ClientCert())} {
		k, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() {
			t.Errorf("%s: key %T, want ECDSA P-256", c.Subject.CommonName, c.PublicKey)
		}
	}
	for _, f := range []string{p.ServerKey(), p.ClientKey(), filepath.Join(p.Dir, caKeyFile)} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, st.Mode(), err)
		}
	}
	for _, d := range []string{p.Dir, p.ClientDir} {
		if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want 0700", d, st.Mode())
		}
	}
	if _, err := os.Stat(filepath.Join(p.ClientDir, caKeyFile)); err == nil {
		t.Error("the CA's key is in the client bundle")
	}
	before, _ := os.ReadFile(p.ClientCert())
	if renewed, err := p.Ensure([]netip.Addr{mgmt}, now.Add(24*time.Hour)); err != nil || renewed != nil {
		t.Errorf("second Ensure renewed %v, %v; want nothing", renewed, err)
	}
	if after, _ := os.ReadFile(p.ClientCert()); string(after) != string(before) {
		t.Error("the client certificate changed on a second start")
	}
	if renewed, _ := p.Ensure([]netip.Addr{mgmt, netip.MustParseAddr("10.0.0.1")}, now); strings.Join(renewed, ",") != "server" {
		t.Errorf("a new address renewed %v, want the server certificate", renewed)
	}
	late := now.Add(Validity - RenewBefore/2)
	if renewed, _ := p.Ensure([]netip.Addr{mgmt}, late); strings.Join(renewed, ",") != "CA,server,client" {
		t.Errorf("near the end renewed %v, want everything", renewed)
	}
	if _, err := p.ServerTLS(); err != nil {
		t.Error(err)
	}

	// A corrupt key is replaced, not fatal.
	os.WriteFile(p.ClientKey(), []byte("garbage"), 0o600)
	if renewed, err := p.Ensure([]netip.Addr{mgmt}, late); err != nil || strings.Join(renewed, ",") != "client" {
		t.Errorf("a corrupt client key: renewed %v, %v", renewed, err)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
