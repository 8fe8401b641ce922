// Command testracks writes the Lokomotive configuration Racker generates
// for a few test racks, for the conformance module next to it
// (../conformance), which loads them with Lokomotive v0.9.0's own code.
//
// It runs in Racker's module and the check in the conformance module, so
// neither inherits the other's dependencies: Lokomotive's Kubernetes and
// Helm stay out of Racker, and Racker's newer libraries stay out of
// Lokomotive's loader. What passes between them is files and a rack.json
// per rack (the plan and the choices), the contract the check reads.
//
//	go run ./provisioner/cluster/lokomotive/testracks -out DIR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/racker/racker/provisioner/cluster"
	"github.com/racker/racker/provisioner/inventory"
	"github.com/racker/racker/provisioner/plan"
)

// testRack is one rack the generator must get right.
type testRack struct {
	name      string
	csv       string // nodes.csv; the first row is the management node
	choices   plan.Choices
	publicIPs string // a --public-ips file, "" for none
	input     func(*cluster.Input)
}

// racks: a single controller with defaults; three controllers with Rook on
// four storage nodes and the web UI; static public addresses in upstream's
// prefilled format (static, inherited gateway, empty = DHCP) with OpenEBS
// on two storage nodes, backups and a fixed install disk.
var racks = []testRack{
	{name: "one-controller", csv: nodesCSV(3, "red", "purple"), choices: plan.Choices{ClusterName: "lab", Controllers: 1}},
	{name: "three-controllers-storage", csv: nodesCSV(7, "red", "purple"),
		choices: plan.Choices{ClusterName: "rack1", Controllers: 3, ControllerType: "purple", StorageType: "red", StorageNodes: plan.AllStorage},
		input: func(in *cluster.Input) {
			in.Components = cluster.Components{WebUI: true, Storage: cluster.StorageRook}
			in.Domain = "dc1.example.net"
			in.OSChannel, in.OSVersion = "beta", "4152.1.0"
		}},
	{name: "static-public-ips", csv: nodesCSV(4, "r640", "red"),
		choices: plan.Choices{ClusterName: "edge", Controllers: 1, StorageNodes: 2},
		publicIPs: "[" + mac(0x30, 1) + "]\nip_addr = 203.0.113.11/24\ngateway = 203.0.113.1\ndns = 1.1.1.1, 9.9.9.9\n\n" +
			"[" + mac(0x30, 2) + "]\nip_addr = 203.0.113.12/24\ngateway =\ndns =\n\n" +
			"[" + mac(0x30, 3) + "]\nip_addr =\ngateway =\ndns =\n",
		input: func(in *cluster.Input) {
			in.InstallDisk = "/dev/sdb"
			in.Components = cluster.Components{Storage: cluster.StorageOpenEBS, Backup: &cluster.Backup{
				Bucket: "edge-backups", Region: "eu-central-1", AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}
		}},
}

// Rack is rack.json: what the conformance check compares Lokomotive's
// reading of the files with.
type Rack struct {
	Name        string             `json:"name"`
	Plan        *plan.Plan         `json:"plan"`
	Dir         string             `json:"dir"`  // the configuration folder
	Vars        string             `json:"vars"` // lokocfg.vars
	Domain      string             `json:"domain"`
	SSHKey      string             `json:"ssh_key"`
	InstallDisk string             `json:"install_disk"`
	OSChannel   string             `json:"os_channel"`
	OSVersion   string             `json:"os_version"`
	MatchboxURL string             `json:"matchbox_url"`
	Matchbox    cluster.Matchbox   `json:"matchbox"`
	Components  cluster.Components `json:"components"`
	PublicIPs   cluster.PublicIPs  `json:"public_ips"`
	Credentials string             `json:"credentials,omitempty"` // velero's credentials file
}

func main() {
	out := flag.String("out", "", "folder to write one subfolder per rack into")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "testracks: -out is required")
		os.Exit(2)
	}
	for _, r := range racks {
		if err := write(*out, r); err != nil {
			fmt.Fprintf(os.Stderr, "testracks: rack %s: %v\n", r.name, err)
			os.Exit(1)
		}
	}
}

func write(out string, r testRack) error {
	rows, err := inventory.Parse("nodes.csv", strings.NewReader(r.csv))
	if err != nil {
		return err
	}
	p, err := plan.Make(&inventory.Inventory{Nodes: rows}, r.choices, plan.NewMemory())
	if err != nil {
		return err
	}
	state, err := filepath.Abs(filepath.Join(out, r.name))
	if err != nil {
		return err
	}
	in := cluster.Input{Plan: p, StateDir: state, SSHPublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq racker@rack $HOME\n",
		MatchboxURL: "http://" + p.Management.IP.String() + ":8080"}
	if r.publicIPs != "" {
		if in.PublicIPs, err = cluster.ParsePublicIPs("public-ips", strings.NewReader(r.publicIPs)); err != nil {
			return err
		}
	}
	if r.input != nil {
		r.input(&in)
	}
	dir := filepath.Join(state, cluster.LokomotiveDir)
	_, vars, err := cluster.WriteLokomotive(dir, in)
	if err != nil {
		return err
	}
	rack := Rack{Name: r.name, Plan: p, Dir: dir, Vars: vars, Domain: in.Domain, SSHKey: strings.TrimSpace(in.SSHPublicKey),
		InstallDisk: in.InstallDisk, MatchboxURL: in.MatchboxURL, Matchbox: cluster.DefaultMatchbox(state, p),
		Components: in.Components, PublicIPs: in.PublicIPs}
	if rack.Domain == "" {
		rack.Domain = cluster.DefaultDomain
	}
	rack.OSChannel, rack.OSVersion = in.OSChannel, in.OSVersion
	if rack.OSChannel == "" {
		rack.OSChannel, rack.OSVersion = "stable", "current"
	}
	if in.Components.Backup != nil {
		rack.Credentials = filepath.Join(dir, cluster.BackupCredentialsFile)
	}
	b, err := json.MarshalIndent(rack, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(state, "rack.json"), append(b, '\n'), 0o644)
}

// nodesCSV is a rack of n machines after the management node; the node
// types cycle through types (machine i has types[i%len(types)]).
func nodesCSV(n int, types ...string) string {
	var b strings.Builder
	b.WriteString("Primary MAC address, BMC MAC address, Secondary MAC address, Node Type, Comments\n")
	b.WriteString("00:11:22:33:44:00, 00:11:22:33:44:01, 00:11:22:33:45:00, " + types[0] + ", mgmt node\n")
	for i := 1; i <= n; i++ {
		b.WriteString(strings.Join([]string{mac(0x10, i), mac(0x20, i), mac(0x30, i), types[i%len(types)], ""}, ", ") + "\n")
	}
	return b.String()
}

// mac is 00:11:22:33:BB:NN for block BB and node block+i.
func mac(block, i int) string {
	return fmt.Sprintf("00:11:22:33:%02x:%02x", block, block+i)
}
