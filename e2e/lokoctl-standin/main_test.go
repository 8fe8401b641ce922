package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/cluster"
	"github.com/racker/racker/provisioner/plan"
)

// TestStandInRegistersWhatRackerServes: the boot services with their
// matchbox run on loopback; Racker writes the Lokomotive configuration
// pointing at them; the stand-in, run as bootstrap runs lokoctl (in that
// folder, `cluster apply --confirm --verbose`), registers every node with
// the client bundle the services made; then Racker chains each node to
// matchbox, and matchbox's endpoints serve each node, from its own
// address, the install profile and both Ignition configs by MAC.
func TestStandInRegistersWhatRackerServes(t *testing.T) {
	state := t.TempDir()
	nodes := []plan.Node{
		{PrimaryMAC: "00:00:00:00:01:01", SecondaryMAC: "00:00:00:00:01:03", Type: "red", Role: plan.Controller, Hostname: "rack-controller-0", IP: netip.MustParseAddr("127.0.0.11")},
		{PrimaryMAC: "00:00:00:00:02:01", SecondaryMAC: "00:00:00:00:02:03", Type: "red", Role: plan.Worker, Hostname: "rack-worker-0", IP: netip.MustParseAddr("127.0.0.12")},
	}
	p := &plan.Plan{Subnet: netip.MustParsePrefix("127.0.0.0/24"), ClusterName: "rack",
		Management: plan.Node{PrimaryMAC: "00:00:00:00:00:01", SecondaryMAC: "00:00:00:00:00:03", IP: netip.MustParseAddr("127.0.0.1"), Role: plan.Management},
		Nodes:      nodes}
	var udp [2]net.PacketConn
	for i := range udp {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		udp[i] = c
	}
	httpLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rpcLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := bootsvc.Open(ctx, bootsvc.Config{Plan: p, StateDir: state, TFTPRoot: t.TempDir(), Matchbox: true,
		DHCPConn: udp[0], TFTPConn: udp[1], HTTPListener: httpLn, MatchboxConn: rpcLn})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The configuration bootstrap writes, as bootstrap fills it in.
	base := "http://" + httpLn.Addr().String()
	mb := cluster.DefaultMatchbox(state, p)
	mb.Endpoint = rpcLn.Addr().String()
	in := cluster.Input{Plan: p, StateDir: state, SSHPublicKey: "ssh-ed25519 AAAA racker\n", MatchboxURL: base + "/matchbox",
		Matchbox: mb, OSVersion: "4152.2.3"}
	dir := filepath.Join(state, cluster.LokomotiveDir)
	if _, _, err := cluster.WriteLokomotive(dir, in); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	out := captureStdout(t, func() {
		if err := run([]string{"cluster", "apply", "--confirm", "--verbose"}); err != nil {
			t.Fatalf("the stand-in: %v", err)
		}
	})
	if !strings.Contains(out, "Apply complete! 2 node(s) registered in matchbox.") || !strings.Contains(out, "matchbox_group.install-rack-worker-0: Creation complete") {
		t.Errorf("the stand-in said:\n%s", out)
	}

	for _, n := range nodes {
		// Racker opens a node's boot window before it netboots it; what
		// installs a node, matchbox's endpoints too, is served only then.
		if _, err := api.NewClient(base).Netboot(ctx, n.PrimaryMAC); err != nil {
			t.Fatalf("%s: opening its boot window: %v", n.Hostname, err)
		}
		code, body := get(t, "127.0.0.1", base+"/ipxe?mac="+n.PrimaryMAC)
		if code != 200 || !strings.Contains(body, "chain "+"http://127.0.0.1:8080/matchbox/boot.ipxe") {
			t.Errorf("%s: /ipxe = %d %q, want the chain to matchbox", n.Hostname, code, body)
		}
		hyp := strings.ReplaceAll(n.PrimaryMAC, ":", "-")
		code, body = get(t, n.IP.String(), base+"/matchbox/ipxe?uuid=&mac="+hyp+"&arch=x86_64")
		if code != 200 || !strings.Contains(body, "kernel /assets/flatcar/4152.2.3/flatcar_production_pxe.vmlinuz") ||
			!strings.Contains(body, "ignition.config.url="+base+"/matchbox/ignition?uuid=${uuid}&mac=${mac:hexhyp}") ||
			!strings.Contains(body, "console=ttyS0,115200n8") {
			t.Errorf("%s: /matchbox/ipxe = %d %q", n.Hostname, code, body)
		}
		if code, body = get(t, n.IP.String(), base+"/matchbox/ignition?mac="+hyp); code != 200 || !strings.Contains(body, "installer.service") {
			t.Errorf("%s: install ignition = %d %q", n.Hostname, code, body)
		} else {
			checkInstaller(t, n.Hostname, body, []string{"-V 4152.2.3", "-b " + base + "/matchbox/assets/flatcar",
				"ignition.config.url=" + base + "/matchbox/ignition?mac=" + n.PrimaryMAC + "&os=installed", "systemctl reboot"})
		}
		if code, body = get(t, n.IP.String(), base+"/matchbox/ignition?mac="+hyp+"&os=installed"); code != 200 || !strings.Contains(body, "data:,"+n.Hostname) {
			t.Errorf("%s: node ignition = %d %q", n.Hostname, code, body)
		}
	}
	// Another node's address is refused a node's config.
	if code, _ := get(t, nodes[1].IP.String(), base+"/matchbox/ignition?mac="+nodes[0].PrimaryMAC+"&os=installed"); code != http.StatusForbidden {
		t.Errorf("a node's Ignition to another node: %d, want 403", code)
	}
}

// get fetches url from a given loopback source address (to act as a node).
func get(t *testing.T, from, url string) (int, string) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	got := make(chan string)
	go func() { b, _ := io.ReadAll(r); got <- string(b) }()
	defer func() { os.Stdout = old }()
	f()
	w.Close()
	os.Stdout = old
	return <-got
}

// checkInstaller reads /opt/installer out of an install Ignition config
// (spec 2.3.0, as ct renders Lokomotive's template), checks that bash
// parses it, and that it says each of want.
func checkInstaller(t *testing.T, node, ign string, want []string) {
	t.Helper()
	var cfg struct {
		Ignition struct{ Version string }
		Storage  struct {
			Files []struct {
				Filesystem, Path string
				Mode             int
				Contents         struct{ Source string }
			}
		}
	}
	if err := json.Unmarshal([]byte(ign), &cfg); err != nil || cfg.Ignition.Version != "2.3.0" || len(cfg.Storage.Files) != 1 {
		t.Fatalf("%s: install ignition %v: %s", node, err, ign)
	}
	f := cfg.Storage.Files[0]
	script, err := url.PathUnescape(strings.TrimPrefix(f.Contents.Source, "data:,"))
	if err != nil || f.Path != "/opt/installer" || f.Filesystem != "root" || f.Mode != 0o500 {
		t.Fatalf("%s: /opt/installer: %v %+v", node, err, f)
	}
	for _, w := range want {
		if !strings.Contains(script, w) {
			t.Errorf("%s: /opt/installer lacks %q:\n%s", node, w, script)
		}
	}
	if out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("%s: bash does not parse /opt/installer: %v\n%s\n%s", node, err, out, script)
	}
}
