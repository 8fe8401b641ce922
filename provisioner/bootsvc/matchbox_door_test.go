package bootsvc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/poseidon/matchbox/matchbox/client"
	"github.com/poseidon/matchbox/matchbox/server/serverpb"
	"github.com/poseidon/matchbox/matchbox/storage/storagepb"

	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/plan"
)

// TestServeMatchbox runs the door with Config.Matchbox on loopback
// sockets: a matchbox client loading only the client bundle the services
// wrote to STATE/matchbox-client (as lokoctl's Terraform provider loads
// it from matchbox_*_path) registers a node, and the services' HTTP then
// chains that node to /matchbox/boot.ipxe; cancelling stops the gRPC
// API too.
func TestServeMatchbox(t *testing.T) {
	state := t.TempDir()
	var conns [2]net.PacketConn
	for i := range conns {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	var lns [2]net.Listener
	for i := range lns {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	httpLn, rpcLn := lns[0], lns[1]
	mac := "00:00:00:00:01:01"
	p := &plan.Plan{Subnet: netip.MustParsePrefix("172.24.213.0/24"), ClusterName: "racker",
		Management: plan.Node{PrimaryMAC: "00:00:00:00:00:01", SecondaryMAC: "00:00:00:00:00:03", IP: netip.MustParseAddr("172.24.213.1"), Role: plan.Management},
		Nodes: []plan.Node{{PrimaryMAC: mac, BMCMAC: "00:00:00:00:01:02", Role: plan.Controller, Hostname: "racker-controller-0",
			IP: netip.MustParseAddr("172.24.213.2"), BMCIP: netip.MustParseAddr("172.24.213.3")}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := bootsvc.Open(ctx, bootsvc.Config{Plan: p, StateDir: state, TFTPRoot: t.TempDir(), Matchbox: true,
		DHCPConn: conns[0], TFTPConn: conns[1], HTTPListener: httpLn, MatchboxConn: rpcLn})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()

	bundle := filepath.Join(state, api.MatchboxClientDir)
	pair, err := tls.LoadX509KeyPair(filepath.Join(bundle, api.MatchboxClientCertFile), filepath.Join(bundle, api.MatchboxClientKeyFile))
	if err != nil {
		t.Fatalf("the client bundle: %v", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(bundle, api.MatchboxCAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c, err := client.New(&client.Config{Endpoints: []string{rpcLn.Addr().String()}, DialTimeout: 5 * time.Second,
		TLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}}})
	if err != nil {
		t.Fatalf("connecting with the client bundle: %v", err)
	}
	defer c.Close()
	if _, err := c.Profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: &storagepb.Profile{Id: "install-0",
		Boot: &storagepb.NetBoot{Kernel: "/assets/flatcar/current/flatcar_production_pxe.vmlinuz"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: &storagepb.Group{Id: "install-0", Profile: "install-0",
		Selector: map[string]string{"mac": mac}}}); err != nil {
		t.Fatal(err)
	}
	base := "http://" + httpLn.Addr().String()
	// Racker opens the node's boot window before it netboots it.
	if _, err := api.NewClient(base).Netboot(ctx, mac); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/ipxe?mac=" + mac:    "#!ipxe\nchain http://172.24.213.1:8080/matchbox/boot.ipxe\n",
		"/matchbox/boot.ipxe": "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Errorf("%s = %s %q, want %q", path, resp.Status, b, want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not stop")
	}
	if conn, err := net.DialTimeout("tcp4", rpcLn.Addr().String(), time.Second); err == nil {
		conn.Close()
		t.Error("matchbox's gRPC API still accepts connections after Serve returned")
	}
}
