package bootsvc_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/plan"
)

// TestServeOnSocketsPassedIn runs the door on loopback sockets the test
// opened (no root, no interface): TFTP and HTTP answer, and cancelling the
// context stops everything with no error.
func TestServeOnSocketsPassedIn(t *testing.T) {
	boot := t.TempDir()
	want := bytes.Repeat([]byte("iPXE"), 10000)
	os.WriteFile(filepath.Join(boot, "undionly.kpxe"), want, 0o644)
	dhcpConn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tftpConn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &plan.Plan{Subnet: netip.MustParsePrefix("172.24.213.0/24"), ClusterName: "racker",
		Management: plan.Node{PrimaryMAC: "00:00:00:00:00:01", SecondaryMAC: "00:00:00:00:00:03", IP: netip.MustParseAddr("172.24.213.1"), Role: plan.Management},
		Nodes: []plan.Node{{PrimaryMAC: "00:00:00:00:01:01", BMCMAC: "00:00:00:00:01:02", Role: plan.Controller, Hostname: "racker-controller-0",
			IP: netip.MustParseAddr("172.24.213.2"), BMCIP: netip.MustParseAddr("172.24.213.3")}}}
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- bootsvc.Serve(ctx, bootsvc.Config{Plan: p, StateDir: t.TempDir(), TFTPRoot: boot,
			DHCPConn: dhcpConn, TFTPConn: tftpConn, HTTPListener: httpLn, Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}

	c, _ := tftp.NewClient(tftpConn.LocalAddr().String())
	wt, err := c.Receive("undionly.kpxe", "octet")
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := wt.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("TFTP: %d bytes, %v", got.Len(), err)
	}
	resp, err := http.Get("http://" + httpLn.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s", resp.Status)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not stop after its context was cancelled")
	}
	if _, err := http.Get("http://" + httpLn.Addr().String() + "/healthz"); err == nil {
		t.Error("HTTP still answers after Serve returned")
	}
}
