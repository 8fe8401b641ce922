package web

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// What another program acts on is in the events' typed fields: the iPXE
// script and the Ignition config served, whatever the message says.
func TestEventsCarryTypedDetails(t *testing.T) {
	r := newRig(t)
	r.netboot(macA)
	r.netboot(macB)
	r.get("/ipxe?mac=" + macA)           // install
	r.get("/ipxe?mac=00:11:22:33:44:99") // unknown
	tokB := r.installToken(macB, "127.0.0.2")
	r.do(clientFrom("127.0.0.2"), "GET", "/ignition?mac="+macB+"&phase=boot", nil, api.TokenHeader, api.TokenScheme+tokB)
	r.callbackWith(nil, macA, api.KindInstalled, "", r.installToken(macA, "127.0.0.1")) // makes A's target disk
	r.get("/ipxe?mac=" + macA)                                                          // disk
	r.srv.cfg.Release = nil
	r.get("/ipxe?mac=" + macB) // waiting

	var got []string
	for _, e := range r.events(0) {
		switch e.Kind {
		case api.KindIPXE:
			got = append(got, e.MAC+" ipxe "+string(e.Script))
		case api.KindIgnition:
			got = append(got, e.MAC+" ignition "+string(e.Ignition))
		}
	}
	want := []string{macA + " ipxe install", "00:11:22:33:44:99 ipxe unknown", macB + " ignition install", macB + " ignition boot",
		macA + " ignition install", macA + " ipxe disk", macB + " ipxe waiting"}
	if !slices.Equal(got, want) {
		t.Errorf("typed details:\n%q\nwant\n%q", got, want)
	}
}

// A journal written by the previous release (details only in the message)
// replays with the typed fields filled in: the node views and the event
// feed are as if the new release had written it.
func TestJournalOfThePreviousReleaseGetsTypedFields(t *testing.T) {
	r := newRig(t)
	r.stop()
	legacy := `{"seq":1,"time":"2026-03-01T10:00:00Z","mac":"` + macA + `","kind":"dhcp","message":"ip=127.0.0.1 type=request arch=7 user_class=\"iPXE\"","source":"127.0.0.1:68"}
{"seq":2,"time":"2026-03-01T10:00:01Z","mac":"` + macA + `","kind":"ipxe","message":"install","source":"127.0.0.1:42643"}
{"seq":3,"time":"2026-03-01T10:00:02Z","mac":"` + macB + `","kind":"dhcp","message":"ip=127.0.0.2 type=request","source":"127.0.0.2:68"}
{"seq":4,"time":"2026-03-01T10:00:03Z","mac":"` + macB + `","kind":"ignition","message":"boot","source":"127.0.0.2:42643"}
{"seq":5,"time":"2026-03-01T10:00:04Z","mac":"00:11:22:33:44:99","kind":"machine_seen","message":"type=discover arch=0","source":"0.0.0.0:68"}
`
	if err := os.WriteFile(filepath.Join(r.state, EventsFile), []byte(legacy), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	evs := r.events(0)
	if len(evs) != 5 {
		t.Fatalf("replayed %d events, want 5: %+v", len(evs), evs)
	}
	if !slices.Equal(evs[0].ClientArch, []uint16{7}) || !evs[0].UEFI() || evs[1].Script != api.ScriptInstall ||
		evs[2].ClientArch != nil || evs[3].Ignition != api.IgnitionBoot || !slices.Equal(evs[4].ClientArch, []uint16{0}) || evs[4].UEFI() {
		t.Errorf("legacy events not upgraded: %+v", evs)
	}
	if n := r.node(macA); n.Phase != api.PhaseNetbooting {
		t.Errorf("A after a legacy install script: %+v, want netbooting", n)
	}
	// Messages stay for people, untouched.
	if evs[1].Message != "install" || evs[0].Message != `ip=127.0.0.1 type=request arch=7 user_class="iPXE"` {
		t.Errorf("messages changed: %+v", evs)
	}
}

// GET /api/v1/nodes/{mac} is one node of GET /api/v1/nodes: the BMC's
// lease when it has one, else its planned address.
func TestOneNode(t *testing.T) {
	r := newRig(t)
	c := api.NewClient(r.http.URL)
	a, err := c.Node(context.Background(), "00-11-22-33-44-10")
	if err != nil || a.PrimaryMAC != macA || a.BMCIP.String() != "172.24.213.211" || a.Hostname != "racker-controller-1" {
		t.Fatalf("node A: %+v, %v", a, err)
	}
	b, err := c.Node(context.Background(), macB)
	if err != nil || b.BMCIP.String() != "172.24.213.120" {
		t.Fatalf("node B (no BMC lease): %+v, %v", b, err)
	}
	var se *api.StatusError
	if _, err := c.Node(context.Background(), "00:11:22:33:44:99"); !errors.As(err, &se) || se.Code != 404 {
		t.Errorf("unknown node: %v, want 404", err)
	}
	if _, err := c.Node(context.Background(), "nope"); !errors.As(err, &se) || se.Code != 400 {
		t.Errorf("bad MAC: %v, want 400", err)
	}
}
