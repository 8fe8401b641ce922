package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/images"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

// TestResumeAfterTheJournalWasDeleted: a bootstrap stops while a node
// installs; the boot services restart without their event journal (it was
// deleted), so its sequence numbers start again at 1, far below the
// orchestrator's cursor. The resumed run must see the node's installed and
// booted callbacks in the new journal (its new epoch) and finish, instead
// of waiting for sequence numbers the new journal reaches much later.
func TestResumeAfterTheJournalWasDeleted(t *testing.T) {
	inv := &inventory.Inventory{Nodes: []inventory.Node{
		{Line: 2, PrimaryMAC: "02:00:00:00:10:01", BMCMAC: "02:00:00:00:11:01", SecondaryMAC: "02:00:00:00:12:01", Type: "a"},
		{Line: 3, PrimaryMAC: "02:00:00:00:10:02", BMCMAC: "02:00:00:00:11:02", SecondaryMAC: "02:00:00:00:12:02", Type: "a"},
	}}
	p, err := plan.Make(inv, plan.Choices{Subnet: netipPrefix("127.0.0.0/24")}, plan.NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	node := p.Nodes[0]
	state := t.TempDir()
	release := &images.Release{OS: "testos", Version: "current", Dir: t.TempDir(), Files: []string{"flatcar_production_pxe.vmlinuz"},
		SigningKey: []byte("a stand-in key: these simulated nodes install nothing\n")}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	url := "http://" + addr
	// startServices serves the real boot services on addr until the
	// returned stop is called.
	startServices := func(ln net.Listener) func() {
		udp := func() net.PacketConn {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		ctx, cancel := context.WithCancel(context.Background())
		svc, err := bootsvc.Open(ctx, bootsvc.Config{Plan: p, StateDir: state, Release: release, TFTPRoot: t.TempDir(),
			DHCPConn: udp(), TFTPConn: udp(), HTTPListener: ln})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); svc.Serve(ctx) }()
		return func() { cancel(); <-done }
	}
	stop := startServices(ln)

	fakeName := t.Name() + "/" + node.PrimaryMAC
	t.Cleanup(func() { bmc.ForgetFake(fakeName) })
	fake := bmc.Fake(fakeName)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: node.IP.AsSlice()}}).DialContext}}
	token := ""
	post := func(ev api.EventKind) {
		t.Helper()
		b, _ := json.Marshal(api.Callback{MAC: node.PrimaryMAC, Event: ev})
		req, _ := http.NewRequest("POST", url+"/api/v1/events", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(api.TokenHeader, api.TokenScheme+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("posting %s: %v", ev, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("posting %s: %s", ev, resp.Status)
		}
	}
	cfg := Config{StateDir: state, Nodes: []NodeSpec{{PrimaryMAC: node.PrimaryMAC, BMCMAC: node.BMCMAC, Hostname: node.Hostname, Role: "worker", Type: "a"}},
		Boot: api.NewClient(url), OpenBMC: ControllerOpener(func(context.Context, NodeSpec) (string, error) { return "fake://" + fakeName, nil }, bmc.Options{}),
		Policy: Policy{OnFailure: Exclude}, BMCInterval: -1, PollWait: time.Second, Tick: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}

	// First run: up to installing. The node netboots when its BMC powers
	// it on with PXE set: the install config (its token), then installing.
	first := cfg
	first.StopAt = Installing
	go func() {
		for fake.Flags().Device != bmc.DevicePXE || fake.Power() != bmc.PowerOn {
			time.Sleep(10 * time.Millisecond)
		}
		resp, err := client.Get(url + "/ignition?mac=" + node.PrimaryMAC + "&phase=install")
		if err != nil {
			t.Errorf("install config: %v", err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("install config: %s %s", resp.Status, body)
			return
		}
		token = tokenIn(t, body)
		post(api.KindInstalling)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Run(ctx, first); err != nil {
		t.Fatalf("first run: %v", err)
	}
	st, _ := Load(state)
	if st.Nodes[node.PrimaryMAC].Phase != Installing || st.LastEventSeq < 2 {
		t.Fatalf("after the first run: %+v, last seq %d, epoch %q", st.Nodes[node.PrimaryMAC], st.LastEventSeq, st.EventEpoch)
	}

	// The journal is deleted and the boot services start again: a new
	// journal, sequence numbers from 1.
	stop()
	if err := os.Remove(filepath.Join(state, "events.jsonl")); err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer startServices(ln2)()
	post(api.KindInstalled)
	go func() {
		for fake.Flags().Device != bmc.DeviceDisk {
			time.Sleep(10 * time.Millisecond)
		}
		post(api.KindBooted)
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	res, err := Run(ctx2, cfg)
	if err != nil {
		t.Fatalf("resumed run (waiting for sequence numbers of the deleted journal?): %v", err)
	}
	if n := res.Nodes[0]; n.Phase != Booted {
		t.Fatalf("after the resumed run: %s (%s)", n.Phase, n.LastEvent)
	}
}
