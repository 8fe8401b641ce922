package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_4"
	"github.com/coreos/ignition/v2/config/v3_4/types"
	"github.com/vincent-petithory/dataurl"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/plan"
)

// The test rack: node A is reached through its lease (127.0.0.1), node B
// through its planned address (127.0.0.2), node C has neither on loopback,
// so loopback requests for C's secrets must be refused.
const (
	macA   = "00:11:22:33:44:10"
	macB   = "00:11:22:33:44:20"
	macC   = "00:11:22:33:44:30"
	bmcA   = "00:11:22:33:44:11"
	testPK = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl racker"
)

func testPlan() *plan.Plan {
	sub := netip.MustParsePrefix("172.24.213.0/24")
	return &plan.Plan{Subnet: sub, ClusterName: "racker",
		Management: plan.Node{PrimaryMAC: "00:11:22:33:44:00", Role: plan.Management, IP: netip.MustParseAddr("172.24.213.1")},
		Nodes: []plan.Node{
			{PrimaryMAC: macA, BMCMAC: bmcA, SecondaryMAC: "00:11:22:33:44:1f", Type: "red", Role: plan.Controller, Hostname: "racker-controller-1",
				IP: netip.MustParseAddr("172.24.213.10"), BMCIP: netip.MustParseAddr("172.24.213.110")},
			{PrimaryMAC: macB, BMCMAC: "00:11:22:33:44:21", Type: "purple", Role: plan.Worker, Storage: true, Hostname: "racker-worker-1",
				IP: netip.MustParseAddr("127.0.0.2"), BMCIP: netip.MustParseAddr("172.24.213.120")},
			{PrimaryMAC: macC, BMCMAC: "00:11:22:33:44:31", Type: "red", Role: plan.Worker, Hostname: "racker-worker-2",
				IP: netip.MustParseAddr("172.24.213.12"), BMCIP: netip.MustParseAddr("172.24.213.130")},
		}}
}

type rig struct {
	t       testing.TB
	srv     *Server
	http    *httptest.Server
	state   string
	release string // release folder
	ipxe    string
	mb      Matchbox // set before start to mount one
}

func leases(mac string) (netip.Addr, bool) {
	switch mac {
	case macA:
		return netip.MustParseAddr("127.0.0.1"), true
	case bmcA:
		return netip.MustParseAddr("172.24.213.211"), true
	}
	return netip.Addr{}, false
}

func newRig(t testing.TB) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{t: t, state: filepath.Join(dir, "state"), release: filepath.Join(dir, "testos", "current"), ipxe: filepath.Join(dir, "ipxe")}
	for _, d := range []string{r.state, r.release, r.ipxe, filepath.Join(r.state, "ssh")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(r.state, "ssh", "id_ed25519.pub"), []byte(testPK+"\n"), 0o644)
	for _, f := range []string{images.Kernel, images.Initrd, images.Image, "secret.txt"} {
		os.WriteFile(filepath.Join(r.release, f), randomBytes(t, 64<<10), 0o644)
	}
	os.WriteFile(filepath.Join(r.ipxe, "undionly.kpxe"), randomBytes(t, 70000), 0o644)
	r.start()
	return r
}

// start (re)opens the server on the same state folder.
func (r *rig) start() {
	r.t.Helper()
	s, err := New(Config{Plan: testPlan(), StateDir: r.state, BaseURL: "http://172.24.213.1:8080",
		Release: &images.Release{OS: "testos", Version: "current", Dir: r.release, Files: []string{images.Kernel, images.Initrd, images.Image},
			SigningKey: []byte("test key (carried, not parsed)\n")},
		IPXEDir: r.ipxe, LeaseOf: leases, Matchbox: r.mb,
		Types: map[string]TypeSettings{"purple": {Console: "ttyS1,57600n8", InstallDisk: "/dev/vdb"}},
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv = s
	r.http = httptest.NewServer(s.Handler())
	r.t.Cleanup(r.stop)
}

func (r *rig) stop() {
	if r.http != nil {
		r.http.Close()
		r.srv.Close()
		r.http = nil
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// clientFrom returns an HTTP client whose connections come from a given
// loopback address, to act as a node with that address.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func (r *rig) do(c *http.Client, method, path string, body []byte, hdr ...string) (int, []byte, http.Header) {
	r.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, r.http.URL+path, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (r *rig) get(path string) (int, string) {
	code, b, _ := r.do(nil, "GET", path, nil)
	return code, string(b)
}

func (r *rig) callback(c *http.Client, mac string, kind api.EventKind, msg string) int {
	return r.callbackWith(c, mac, kind, msg, "")
}

func (r *rig) node(mac string) api.Node {
	r.t.Helper()
	nodes, err := api.NewClient(r.http.URL).Nodes(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, n := range nodes {
		if n.PrimaryMAC == mac {
			return n
		}
	}
	r.t.Fatalf("no node %s in %+v", mac, nodes)
	return api.Node{}
}

func (r *rig) events(after uint64) []api.Event {
	r.t.Helper()
	evs, err := api.NewClient(r.http.URL).Events(context.Background(), after, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	return evs
}

func hasEvent(evs []api.Event, mac string, kind api.EventKind, msgPart string) bool {
	for _, e := range evs {
		if e.MAC == mac && e.Kind == kind && strings.Contains(e.Message, msgPart) {
			return true
		}
	}
	return false
}

// decodeFile returns the text of a data: URL file of a config.
func decodeFile(cfg types.Config, path string) (string, bool) {
	for _, f := range cfg.Storage.Files {
		if f.Path == path && f.Contents.Source != nil {
			u, err := dataurl.DecodeString(*f.Contents.Source)
			if err != nil {
				return "", false
			}
			return string(u.Data), true
		}
	}
	return "", false
}

func requestFrom(remote string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = remote
	return r
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// netboot opens a node's boot window, as the orchestrator does before it
// powers the node on.
func (r *rig) netboot(mac string) api.Node {
	r.t.Helper()
	n, err := api.NewClient(r.http.URL).Netboot(context.Background(), mac)
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// installToken fetches a node's install config from src (inside its
// window) and returns the token it carries.
func (r *rig) installToken(mac, src string) string {
	r.t.Helper()
	code, body, _ := r.do(clientFrom(src), "GET", "/ignition?mac="+mac+"&phase=install", nil)
	if code != 200 {
		r.t.Fatalf("install config of %s from %s: %d %s", mac, src, code, body)
	}
	return tokenOf(r.t, body)
}

// tokenOf reads the token out of an install config (install.sh's TOKEN=).
func tokenOf(t testing.TB, cfgJSON []byte) string {
	t.Helper()
	cfg, _, err := v3_4.Parse(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	script, ok := decodeFile(cfg, "/opt/racker/install.sh")
	if !ok {
		t.Fatal("no install.sh in the install config")
	}
	_, rest, ok := strings.Cut(script, "\nTOKEN='")
	tok, _, ok2 := strings.Cut(rest, "'")
	if !ok || !ok2 || tok == "" {
		t.Fatalf("no TOKEN in install.sh:\n%s", script)
	}
	return tok
}

// callbackWith posts a callback presenting token ("" presents none).
func (r *rig) callbackWith(c *http.Client, mac string, kind api.EventKind, msg, token string) int {
	b, _ := json.Marshal(api.Callback{MAC: mac, Event: kind, Message: msg})
	hdr := []string{"Content-Type", "application/json"}
	if token != "" {
		hdr = append(hdr, api.TokenHeader, api.TokenScheme+token)
	}
	code, _, _ := r.do(c, "POST", "/api/v1/events", b, hdr...)
	return code
}

// refused: the server said no (403 the first time, 429 while the source
// keeps asking within the refusal interval).
func refused(code int) bool { return code == 403 || code == 429 }
