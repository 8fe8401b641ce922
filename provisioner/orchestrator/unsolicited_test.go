package orchestrator

import (
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// TestUnsolicitedEventsMoveNothing: what anyone can cause with a node's MAC
// outside its boot window (DHCP, TFTP, iPXE) is recorded by the boot
// services as unsolicited; the orchestrator never moves a phase on it,
// nor takes an EFI hint from it. The same events inside the window do.
func TestUnsolicitedEventsMoveNothing(t *testing.T) {
	h := newHarness(t, 1) // node 1 is a BIOS node
	h.sim(1, neverNetboots, 0)
	h.start()
	h.waitFor("pxe_requested", h.phaseIs(1, PXERequested))
	for _, ev := range []api.Event{
		{Kind: api.KindDHCP, ClientArch: []uint16{api.ArchEFIx64}},
		{Kind: api.KindTFTP},
		{Kind: api.KindIPXE, Script: api.ScriptDisk},
		{Kind: api.KindIPXE, Script: api.ScriptInstall},
	} {
		ev.MAC, ev.Unsolicited = mac(1), true
		h.boot.Emit(ev)
	}
	time.Sleep(100 * time.Millisecond)
	if n := h.node(1); n.Phase != PXERequested || n.UEFISeen {
		t.Fatalf("unsolicited events moved the node: %s, uefi_seen %v", n.Phase, n.UEFISeen)
	}
	h.boot.Emit(api.Event{MAC: mac(1), Kind: api.KindDHCP})
	h.waitFor("netbooting on a DHCP event in the window", h.phaseIs(1, Netbooting))
	h.interrupt()
}
