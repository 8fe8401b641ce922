package bmc

// Choose ("auto") against the simulator's virtual BMC on loopback: one that
// speaks both protocols, one that speaks IPMI only, and one that stopped
// speaking Redfish after it had (what an attacker on the wire, or a BMC
// reset to IPMI, looks like).

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/simulator/vbmc"
)

const autoBMC = "00:11:22:33:44:11" // the BMC MAC Choose remembers under

// closedPort is a loopback address where nothing listens on TCP.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func TestChoosePrefersRedfishAndRemembersIt(t *testing.T) {
	v := startVBMC(t, vbmc.Config{})
	path := filepath.Join(t.TempDir(), ChoicesFile)
	// An IPMI session protocol the ipmi driver remembered in the same
	// file (issue 14's entries): kept as it is.
	os.WriteFile(path, []byte(`{"10.0.0.9:623": {"protocol": "lanplus", "since": "2026-12-01T00:00:00Z"}}`+"\n"), 0o600)
	store := &FileChoices{Path: path}
	ctx := context.Background()
	got, err := Choose(ctx, autoBMC, v.url(), "ipmi://"+v.ipmi.String(), store, redfishOpts(t, nil))
	if err != nil || got != v.url() {
		t.Fatalf("Choose = %q, %v; want %s", got, err, v.url())
	}
	var m map[string]struct{ Protocol string }
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m[autoBMC].Protocol != ChoiceRedfish || m["10.0.0.9:623"].Protocol != "lanplus" {
		t.Errorf("%s:\n%s", path, b)
	}
	// Another process (a new store on the same file) chooses the same.
	if got, err := Choose(ctx, autoBMC, v.url(), "ipmi://"+v.ipmi.String(), &FileChoices{Path: path}, redfishOpts(t, nil)); err != nil || got != v.url() {
		t.Errorf("second Choose = %q, %v", got, err)
	}
}

func TestChooseFallsBackToIPMIOnlyWhenRedfishIsAbsent(t *testing.T) {
	v := startVBMC(t, vbmc.Config{Protocols: []vbmc.Protocol{vbmc.ProtocolIPMI}})
	store := &MemoryChoices{}
	ipmiURL := "ipmi://" + v.ipmi.String()
	got, err := Choose(context.Background(), autoBMC, "redfish://"+closedPort(t), ipmiURL, store, redfishOpts(t, nil))
	if err != nil || got != ipmiURL {
		t.Fatalf("Choose = %q, %v; want %s", got, err, ipmiURL)
	}
	if c, _ := store.Choice(autoBMC); c != ChoiceIPMI {
		t.Errorf("remembered %q", c)
	}
}

func TestChooseNeverDowngradesAfterRedfishWorked(t *testing.T) {
	store := &FileChoices{Path: filepath.Join(t.TempDir(), ChoicesFile)}
	if err := store.Chose(autoBMC, ChoiceRedfish); err != nil {
		t.Fatal(err)
	}
	// Redfish is gone, IPMI answers: Choose still says Redfish, and
	// learning IPMI afterwards does not replace it.
	v := startVBMC(t, vbmc.Config{Protocols: []vbmc.Protocol{vbmc.ProtocolIPMI}})
	rf := "redfish://" + closedPort(t)
	got, err := Choose(context.Background(), autoBMC, rf, "ipmi://"+v.ipmi.String(), store, redfishOpts(t, nil))
	if err != nil || got != rf {
		t.Fatalf("Choose = %q, %v; want %s", got, err, rf)
	}
	store.Chose(autoBMC, ChoiceIPMI)
	if c, _ := store.Choice(autoBMC); c != ChoiceRedfish {
		t.Errorf("after learning IPMI the choice is %q", c)
	}
	// And the operation itself fails, naming Redfish.
	opts := redfishOpts(t, nil)
	opts.Tries = 1
	c := openTest(t, got, opts)
	if _, err := c.PowerState(context.Background()); err == nil || !strings.Contains(err.Error(), "redfish://") {
		t.Errorf("PowerState over the remembered Redfish: %v", err)
	}
}

func TestChooseStopsAtARedfishThatRefusesThePassword(t *testing.T) {
	v := startVBMC(t, vbmc.Config{})
	opts := redfishOpts(t, nil)
	opts.Credentials.Password = "wrong-Passw0rd"
	store := &MemoryChoices{}
	start := time.Now()
	_, err := Choose(context.Background(), autoBMC, v.url(), "ipmi://"+v.ipmi.String(), store, opts)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "not trying IPMI") || !strings.Contains(err.Error(), "node "+testNode) {
		t.Fatalf("Choose: %v", err)
	}
	if c, _ := store.Choice(autoBMC); c != "" {
		t.Errorf("remembered %q after a refused password", c)
	}
	t.Logf("refused in %s", time.Since(start).Round(time.Millisecond))
}

func TestChooseSaysWhenNeitherAnswers(t *testing.T) {
	opts := redfishOpts(t, nil)
	opts.TryTimeout = 500 * time.Millisecond
	// No IPMI answers on a UDP port nothing listens on.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp := pc.LocalAddr().String()
	pc.Close()
	_, err = Choose(context.Background(), autoBMC, "redfish://"+closedPort(t), "ipmi://"+udp, &MemoryChoices{}, opts)
	if err == nil || !strings.Contains(err.Error(), "neither Redfish nor IPMI") || !strings.Contains(err.Error(), autoBMC) {
		t.Fatalf("Choose: %v", err)
	}
}
