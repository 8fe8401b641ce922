package plan

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/racker/racker/provisioner/inventory"
)

// rack builds an inventory from nodes.csv rows; the first row is the
// management node.
func rack(t *testing.T, rows ...string) *inventory.Inventory {
	t.Helper()
	nodes, err := inventory.Parse("nodes.csv", strings.NewReader(strings.Join(rows, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return &inventory.Inventory{Nodes: nodes, Management: 0}
}

// row makes a nodes.csv row for machine i of type typ.
func row(i int, typ string) string {
	return fmt.Sprintf("02:00:00:00:%02x:00,02:00:00:00:%02x:01,02:00:00:00:%02x:02,%s", i, i, i, typ)
}

func rows(types ...string) []string {
	out := []string{row(0, "mgmt")}
	for i, t := range types {
		out = append(out, row(i+1, t))
	}
	return out
}

func roles(p *Plan) string {
	var b []string
	for _, n := range p.Nodes {
		s := string(n.Role[0])
		if n.Storage {
			s += "s"
		}
		b = append(b, s)
	}
	return strings.Join(b, " ")
}

func TestRoles(t *testing.T) {
	cases := []struct {
		name  string
		types []string
		c     Choices
		want  string // c=controller w=worker, s=storage
		err   string
	}{
		{name: "single node", types: []string{"red"}, want: "c"},
		{name: "two nodes: 1 controller", types: []string{"red", "red"}, want: "c w"},
		{name: "HA when a type has 3", types: []string{"red", "blue", "red", "red", "blue"}, want: "c w c c w"},
		{name: "most common type wins", types: []string{"blue", "red", "red", "red"}, want: "w c c c"},
		{name: "tie: earliest type", types: []string{"blue", "red", "blue", "red"}, want: "c w w w"},
		{name: "any type", types: []string{"blue", "red", "green"}, c: Choices{ControllerType: AnyType}, want: "c c c"},
		{name: "forced 1", types: []string{"red", "red", "red"}, c: Choices{Controllers: 1}, want: "c w w"},
		{name: "chosen type", types: []string{"red", "blue", "red"}, c: Choices{ControllerType: "blue"}, want: "w c w"},
		{name: "storage all of type", types: []string{"red", "big", "red", "big"}, c: Choices{Controllers: 1, ControllerType: "red", StorageType: "big"}, want: "c ws w ws"},
		{name: "storage count", types: []string{"red", "big", "big", "big"}, c: Choices{Controllers: 1, ControllerType: "red", StorageType: "big", StorageNodes: 2}, want: "c ws ws w"},
		{name: "too few for 3", types: []string{"red", "red"}, c: Choices{Controllers: 3}, err: "--controllers 3: only 2 node(s) of type red"},
		{name: "2 controllers", types: []string{"red", "red"}, c: Choices{Controllers: 2}, err: "choose 1 or 3"},
		{name: "unknown type", types: []string{"red"}, c: Choices{ControllerType: "blue"}, err: "no node has that type (types: red)"},
		{name: "too many storage", types: []string{"red", "big"}, c: Choices{Controllers: 1, StorageType: "big", StorageNodes: 2}, err: "only 1 worker(s)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Make(rack(t, rows(tc.types...)...), tc.c, NewMemory())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := roles(p); got != tc.want {
				t.Errorf("roles %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOnlyManagementNode(t *testing.T) {
	p, err := Make(rack(t, row(0, "red")), Choices{}, NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Nodes) != 0 || p.Management.IP.String() != "172.24.213.1" {
		t.Errorf("plan of a one-node rack: %+v", p)
	}
}

func TestAddressesAndHostnames(t *testing.T) {
	p, err := Make(rack(t, rows("red", "red")...), Choices{ClusterName: "lab"}, NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	got := []string{p.Management.IP.String()}
	for _, n := range p.Nodes {
		got = append(got, n.Hostname, n.IP.String(), n.BMCIP.String())
	}
	want := []string{"172.24.213.1", "lab-controller-0", "172.24.213.2", "172.24.213.3", "lab-worker-0", "172.24.213.4", "172.24.213.5"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if p.Management.BMCIP.IsValid() {
		t.Errorf("the management node's BMC is on the public network; got internal address %s", p.Management.BMCIP)
	}
}

// Adding a row (anywhere) or removing one never changes another machine's
// address or hostname.
func TestAddingANodeRenumbersNothing(t *testing.T) {
	store := NewStore(t.TempDir())
	before, err := Make(rack(t, rows("red", "red", "blue")...), Choices{}, store)
	if err != nil {
		t.Fatal(err)
	}
	// A new node inserted before the others, one appended, one removed.
	grown := []string{row(0, "mgmt"), row(9, "red"), row(1, "red"), row(3, "blue"), row(4, "blue")}
	after, err := Make(rack(t, grown...), Choices{}, store)
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]Node{}
	for _, n := range before.Nodes {
		old[n.PrimaryMAC] = n
	}
	for _, n := range after.Nodes {
		o, ok := old[n.PrimaryMAC]
		if !ok {
			continue
		}
		if o.IP != n.IP || o.BMCIP != n.BMCIP || o.Hostname != n.Hostname {
			t.Errorf("node %s renumbered: %s/%s/%s → %s/%s/%s", n.PrimaryMAC, o.IP, o.BMCIP, o.Hostname, n.IP, n.BMCIP, n.Hostname)
		}
	}
	// The new machines take fresh addresses, not the removed node's.
	removed := old["02:00:00:00:02:00"]
	for _, n := range after.Nodes {
		if n.IP == removed.IP || n.BMCIP == removed.BMCIP {
			t.Errorf("address of a removed node reused by %s", n.PrimaryMAC)
		}
	}
}

func TestDeterministicAndStableJSON(t *testing.T) {
	mk := func() []byte {
		p, err := Make(rack(t, rows("red", "blue", "red", "red")...), Choices{Exclude: []string{"02-00-00-00-02-00"}}, NewStore(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(p)
		return b
	}
	a, b := mk(), mk()
	if string(a) != string(b) {
		t.Fatalf("two fresh plans of the same rack differ:\n%s\n%s", a, b)
	}
	var doc struct {
		Subnet     string
		Management map[string]any
		Nodes      []map[string]any
		Excluded   []map[string]any
	}
	if err := json.Unmarshal(a, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"primary_mac", "bmc_mac", "secondary_mac", "type", "role", "storage", "hostname", "ip", "bmc_ip"} {
		if _, ok := doc.Nodes[0][k]; !ok {
			t.Errorf("node JSON lacks %q: %v", k, doc.Nodes[0])
		}
	}
	if doc.Subnet != "172.24.213.0/24" || doc.Management["role"] != "management" || len(doc.Nodes) != 3 || len(doc.Excluded) != 1 || doc.Excluded[0]["role"] != "excluded" {
		t.Errorf("unexpected plan JSON: %s", a)
	}
}

func TestSubnetCapacity(t *testing.T) {
	// A /24 holds well over 63 machines: 126 nodes with their BMCs.
	var types []string
	for range 126 {
		types = append(types, "red")
	}
	if _, err := Make(rack(t, rows(types...)...), Choices{}, NewMemory()); err != nil {
		t.Fatalf("126 nodes in a /24: %v", err)
	}
	types = append(types, "red")
	_, err := Make(rack(t, rows(types...)...), Choices{}, NewMemory())
	if err == nil || !strings.Contains(err.Error(), "subnet 172.24.213.0/24 is full") {
		t.Fatalf("127 nodes in a /24: got %v", err)
	}
	// A larger subnet takes them.
	if _, err := Make(rack(t, rows(types...)...), Choices{Subnet: netip.MustParsePrefix("10.9.0.0/22")}, NewMemory()); err != nil {
		t.Fatal(err)
	}
}

func TestExclude(t *testing.T) {
	inv := rack(t, rows("red", "red")...)
	if _, err := Make(inv, Choices{Exclude: []string{"02:00:00:00:00:00"}}, NewMemory()); err == nil || !strings.Contains(err.Error(), "management node") {
		t.Errorf("excluding the management node: %v", err)
	}
	if _, err := Make(inv, Choices{Exclude: []string{"02:00:00:00:77:00"}}, NewMemory()); err == nil || !strings.Contains(err.Error(), "no node has the MAC 02:00:00:00:77:00") {
		t.Errorf("excluding an unknown MAC: %v", err)
	}
	p, err := Make(inv, Choices{Exclude: []string{"02:00:00:00:01:01"}}, NewMemory()) // by BMC MAC
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Nodes) != 1 || p.Nodes[0].Role != Controller || len(p.Excluded) != 1 || !p.Excluded[0].IP.IsValid() {
		t.Errorf("exclude: %+v", p)
	}
	// Servers: the nodes, then the excluded ones; never the management node,
	// and appending to the result leaves the plan alone.
	s := p.Servers()
	if len(s) != 2 || s[0].PrimaryMAC != p.Nodes[0].PrimaryMAC || s[1].PrimaryMAC != p.Excluded[0].PrimaryMAC {
		t.Errorf("Servers() = %+v", s)
	}
	s[0].Hostname = "changed"
	if p.Nodes[0].Hostname == "changed" {
		t.Error("Servers() shares its array with the plan")
	}
}

func TestStoreSurvivesAndDryRunWritesNothing(t *testing.T) {
	dir := t.TempDir()
	store := NewStore(dir)
	snap, err := store.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Make(rack(t, rows("red")...), Choices{}, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); !os.IsNotExist(err) {
		t.Fatalf("dry run wrote the state file")
	}
	p1, err := Make(rack(t, rows("red")...), Choices{}, store)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Addresses["172.24.213.0/24"][p1.Nodes[0].PrimaryMAC] != p1.Nodes[0].IP.String() {
		t.Errorf("allocation not stored: %+v", st)
	}
	os.WriteFile(filepath.Join(dir, StateFile), []byte("{broken"), 0o644)
	if _, err := Make(rack(t, rows("red")...), Choices{}, store); err == nil || !strings.Contains(err.Error(), "reading plan state") {
		t.Errorf("a corrupt state file must be an error, not a silent renumbering: %v", err)
	}
}

func TestFind(t *testing.T) {
	p, err := Make(rack(t, rows("red", "red")...), Choices{}, NewMemory())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"02:00:00:00:02:00", "02-00-00-00-02-01", "02:00:00:00:02:02", "racker-worker-0", "2"} {
		n, ok := p.Find(name)
		if !ok || n.PrimaryMAC != "02:00:00:00:02:00" {
			t.Errorf("Find(%q) = %v, %v", name, n.PrimaryMAC, ok)
		}
	}
	if _, ok := p.Find("nope"); ok {
		t.Errorf("Find(nope) found something")
	}
}
