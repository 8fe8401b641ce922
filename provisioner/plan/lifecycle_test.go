package plan

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// newRow is a replacement machine's row: MACs of a family no other row uses.
func newRow(i int, typ string) string {
	return fmt.Sprintf("0a:00:00:00:%02x:00,0a:00:00:00:%02x:01,0a:00:00:00:%02x:02,%s", i, i, i, typ)
}

func byMAC(p *Plan) map[string]Node {
	out := map[string]Node{}
	for _, n := range p.Servers() {
		out[n.PrimaryMAC] = n
	}
	return out
}

// sameExcept fails when a node of before other than skip changed its
// hostname, addresses or role in after.
func sameExcept(t *testing.T, before, after *Plan, skip string) {
	t.Helper()
	now := byMAC(after)
	for mac, o := range byMAC(before) {
		if mac == skip {
			continue
		}
		n, ok := now[mac]
		if !ok {
			continue
		}
		if o.IP != n.IP || o.BMCIP != n.BMCIP || o.Hostname != n.Hostname || o.Role != n.Role || o.Storage != n.Storage {
			t.Errorf("node %s changed: %s %s/%s %s → %s %s/%s %s", mac, o.Hostname, o.IP, o.BMCIP, o.Role, n.Hostname, n.IP, n.BMCIP, n.Role)
		}
	}
}

// Adding servers to a running rack: the controllers (chosen "auto" as 1
// when the rack had 2 nodes, then remembered as 1 by the CLI) stay, and
// with the choice of 3 controllers an added red node placed first in the
// file does not take a controller's place.
func TestAdditionKeepsControllersAndNames(t *testing.T) {
	store := NewStore(t.TempDir())
	c := Choices{Controllers: 3, ControllerType: "red", Now: time.Unix(1e9, 0)}
	before, err := Make(rack(t, rows("red", "red", "red", "blue")...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	grown := append([]string{row(0, "mgmt"), row(8, "red")}, rows("red", "red", "red", "blue", "red")[1:]...)
	after, err := Make(rack(t, grown...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	sameExcept(t, before, after, "")
	if got := byMAC(after)["02:00:00:00:08:00"]; got.Role != Worker || got.Hostname != "racker-worker-1" {
		t.Errorf("added red node: %s %s, want a worker named racker-worker-1", got.Role, got.Hostname)
	}
	var ctrl []string
	for _, n := range after.Controllers() {
		ctrl = append(ctrl, n.PrimaryMAC)
	}
	if strings.Join(ctrl, " ") != "02:00:00:00:01:00 02:00:00:00:02:00 02:00:00:00:03:00" {
		t.Errorf("controllers after the addition: %v", ctrl)
	}
}

// A controller with storage-type workers around is replaced: the new
// MACs take its hostname, node and BMC addresses and role; the others
// keep theirs; the old MACs are refused. Recorded but with nodes.csv not
// yet rewritten (a crash in between), the plan is unchanged.
func TestReplaceMovesTheOldMachinesPlace(t *testing.T) {
	store := NewStore(t.TempDir())
	c := Choices{Controllers: 1, StorageType: "blue", Now: time.Unix(1e9, 0)}
	before, err := Make(rack(t, rows("red", "red", "blue", "blue")...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	old := before.Nodes[0]
	if old.Role != Controller {
		t.Fatalf("first node is %s, want the controller", old.Role)
	}
	if err := Replace(store, old, "0a:00:00:00:01:00", "0a:00:00:00:01:01", "0a:00:00:00:01:02", c.Now); err != nil {
		t.Fatal(err)
	}
	// The crash: nodes.csv still has the old row.
	mid, err := Make(rack(t, rows("red", "red", "blue", "blue")...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	sameExcept(t, before, mid, "")
	if len(mid.Retired) != 0 {
		t.Errorf("retired before nodes.csv changed: %v", mid.Retired)
	}
	// Running racker replace again records nothing new.
	if err := Replace(store, old, "0a:00:00:00:01:00", "0a:00:00:00:01:01", "", c.Now); err != nil {
		t.Fatalf("replace again: %v", err)
	}
	// The new row in the old one's place; the replacement of a worker by
	// the same new MACs is refused.
	swapped := rows("red", "red", "blue", "blue")
	swapped[1] = newRow(1, "red")
	after, err := Make(rack(t, swapped...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	sameExcept(t, before, after, old.PrimaryMAC)
	n := byMAC(after)["0a:00:00:00:01:00"]
	if n.Hostname != old.Hostname || n.IP != old.IP || n.BMCIP != old.BMCIP || n.Role != Controller || n.BMCMAC != "0a:00:00:00:01:01" {
		t.Errorf("replacement: %s %s/%s %s, want %s %s/%s controller", n.Hostname, n.IP, n.BMCIP, n.Role, old.Hostname, old.IP, old.BMCIP)
	}
	for _, mac := range []string{old.PrimaryMAC, old.BMCMAC, old.SecondaryMAC} {
		if !after.IsRetired(mac) {
			t.Errorf("old MAC %s not refused: retired %v", mac, after.Retired)
		}
	}
	if after.IsRetired(n.PrimaryMAC) {
		t.Errorf("the new machine is refused")
	}
	// Planned again (serve's SIGHUP): stable.
	again, err := Make(rack(t, swapped...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	sameExcept(t, after, again, "")
	if st, err := store.Load(); err != nil || len(st.Replacements) != 0 {
		t.Errorf("the applied replacement is still pending: %+v (%v)", st.Replacements, err)
	}
}

// Two replacements by the same new machine are refused while the first is
// pending.
func TestReplaceConflict(t *testing.T) {
	m := NewMemory()
	p, err := Make(rack(t, rows("red", "red")...), Choices{}, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := Replace(m, p.Nodes[0], "0a:00:00:00:01:00", "0a:00:00:00:01:01", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	err = Replace(m, p.Nodes[1], "0a:00:00:00:01:00", "0a:00:00:00:01:01", "", time.Now())
	if err == nil || !strings.Contains(err.Error(), "already recorded as the replacement of "+p.Nodes[0].PrimaryMAC) {
		t.Errorf("second replacement by the same MACs: %v", err)
	}
	if err := Replace(m, p.Management, "0a:00:00:00:02:00", "0a:00:00:00:02:01", "", time.Now()); err == nil {
		t.Error("replacing the management node was accepted")
	}
}

// A retired worker: the others keep everything, its MACs are refused, its
// addresses are not handed to a machine added during the cool-down but are
// after it, and a row that names it again brings it back.
func TestRetireCoolDownAndReturn(t *testing.T) {
	store := NewStore(t.TempDir())
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	c := Choices{Controllers: 1, Now: t0}
	before, err := Make(rack(t, rows("red", "red", "red")...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	gone := before.Nodes[1]
	if err := Retire(store, gone, t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	left := []string{row(0, "mgmt"), row(1, "red"), row(3, "red")}
	after, err := Make(rack(t, left...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	sameExcept(t, before, after, gone.PrimaryMAC)
	if _, ok := byMAC(after)[gone.PrimaryMAC]; ok || !after.IsRetired(gone.PrimaryMAC) || !after.IsRetired(gone.BMCMAC) {
		t.Fatalf("retired node still planned, or not refused: retired %v", after.Retired)
	}
	// A machine added during the cool-down gets fresh addresses.
	c.Now = t0.Add(30 * time.Minute)
	grown := append(left, row(7, "red"))
	during, err := Make(rack(t, grown...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	sameExcept(t, before, during, gone.PrimaryMAC)
	added := byMAC(during)["02:00:00:00:07:00"]
	if added.IP == gone.IP || added.BMCIP == gone.BMCIP || added.IP == gone.BMCIP || added.BMCIP == gone.IP {
		t.Errorf("during the cool-down, the added machine got the retired one's address: %s/%s", added.IP, added.BMCIP)
	}
	if added.Hostname != gone.Hostname {
		t.Errorf("the added machine is %s; the retired one's hostname %s is free and lowest", added.Hostname, gone.Hostname)
	}
	// After the cool-down the addresses are free again (the lowest free
	// ones, so the next machine gets them), the MACs still refused.
	c.Now = t0.Add(2 * time.Hour)
	later, err := Make(rack(t, append(grown, row(8, "red"))...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	second := byMAC(later)["02:00:00:00:08:00"]
	if second.IP != gone.IP || second.BMCIP != gone.BMCIP {
		t.Errorf("after the cool-down the next machine got %s/%s, want the retired one's %s/%s", second.IP, second.BMCIP, gone.IP, gone.BMCIP)
	}
	if !later.IsRetired(gone.PrimaryMAC) {
		t.Errorf("retired MAC no longer refused after the cool-down")
	}
	// The operator puts the retired machine's row back: a node again.
	back, err := Make(rack(t, append(append(grown, row(8, "red")), row(2, "red"))...), c, store)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := byMAC(back)[gone.PrimaryMAC]; !ok || back.IsRetired(gone.PrimaryMAC) {
		t.Errorf("a row naming the retired machine again did not bring it back: retired %v", back.Retired)
	}
	sameExcept(t, later, back, "")
}
