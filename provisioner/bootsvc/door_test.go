package bootsvc_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/api"
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := bootsvc.Open(ctx, bootsvc.Config{Plan: p, StateDir: t.TempDir(), TFTPRoot: boot,
		DHCPConn: dhcpConn, TFTPConn: tftpConn, HTTPListener: httpLn})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()

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

// Reload takes a plan with a new node while serving; a plan with another
// subnet or management address is refused and the old one kept.
func TestReloadWhileServing(t *testing.T) {
	sock := func() net.PacketConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	httpLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mgmt := plan.Node{PrimaryMAC: "00:00:00:00:00:01", SecondaryMAC: "00:00:00:00:00:03", IP: netip.MustParseAddr("172.24.213.1"), Role: plan.Management}
	node := func(i int) plan.Node {
		return plan.Node{PrimaryMAC: fmt.Sprintf("00:00:00:00:0%d:01", i), Role: plan.Worker, Hostname: fmt.Sprintf("racker-worker-%d", i),
			IP: netip.AddrFrom4([4]byte{172, 24, 213, byte(10 + i)})}
	}
	p := &plan.Plan{Subnet: netip.MustParsePrefix("172.24.213.0/24"), Management: mgmt, Nodes: []plan.Node{node(1)}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := bootsvc.Open(ctx, bootsvc.Config{Plan: p, StateDir: t.TempDir(), TFTPRoot: t.TempDir(),
		DHCPConn: sock(), TFTPConn: sock(), HTTPListener: httpLn})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx) }()
	c := api.NewClient("http://" + httpLn.Addr().String())
	count := func() int {
		ns, err := c.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(ns)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d nodes before reload", n)
	}
	if err := svc.Reload(&plan.Plan{Subnet: p.Subnet, Management: mgmt, Nodes: []plan.Node{node(1), node(2)}}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Errorf("%d nodes after reloading a plan of 2", n)
	}
	err = svc.Reload(&plan.Plan{Subnet: netip.MustParsePrefix("10.0.0.0/24"), Management: mgmt, Nodes: []plan.Node{node(1)}})
	if err == nil || !strings.Contains(err.Error(), "restart") {
		t.Errorf("another subnet: %v, want a refusal asking for a restart", err)
	}
	if n := count(); n != 2 {
		t.Errorf("%d nodes after a refused reload, want the old plan's 2", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Open fails before serving when the state folder is unusable, and then
// leaves the sockets it was given closed.
func TestOpenFailsEarly(t *testing.T) {
	state := filepath.Join(t.TempDir(), "file")
	os.WriteFile(state, nil, 0o644)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &plan.Plan{Subnet: netip.MustParsePrefix("172.24.213.0/24"), Management: plan.Node{IP: netip.MustParseAddr("172.24.213.1")}}
	if _, err := bootsvc.Open(context.Background(), bootsvc.Config{Plan: p, StateDir: state, TFTPRoot: t.TempDir(), HTTPListener: ln}); err == nil {
		t.Fatal("Open over a state folder that is a file: no error")
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("the listener passed in is still open after Open failed")
	}
	if _, err := bootsvc.Open(context.Background(), bootsvc.Config{StateDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "plan") {
		t.Errorf("Open without a plan: %v", err)
	}
}
