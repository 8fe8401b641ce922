package rack

import (
	"context"
	"encoding/xml"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/racker/racker/simulator/vm"
)

// NodeStatus is one server in `racker-sim status` (its JSON is the issue's).
type NodeStatus struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	PrimaryMAC string `json:"primary_mac"`
	BMCMAC     string `json:"bmc_mac"`
	BMCIP      string `json:"bmc_ip"`   // the vBMC's current DHCP address, "" before it has one
	Power      string `json:"power"`    // on, off, or the domain state libvirt reports
	Boot       string `json:"boot"`     // first boot device in the domain: network or disk
	Firmware   string `json:"firmware"` // bios or uefi
	ConsoleLog string `json:"console_log"`
	BMC        string `json:"bmc"` // running, stopped, none (--no-bmc)
	Faults     string `json:"faults,omitempty"`
}

// Status is the whole rack.
type Status struct {
	Name  string       `json:"name"`
	Dir   string       `json:"dir"`
	Serve string       `json:"racker_serve"` // running; stopped (the node is down); else the unit's state
	Nodes []NodeStatus `json:"nodes"`
}

// BMCAddrFile is where the vBMC of a server writes the address it serves
// IPMI on, each time it gets a lease; status reads it.
func (s *State) BMCAddrFile(node string) string {
	return filepath.Join(s.machineDir(node), "bmc.addr")
}

// ConsoleSocket and ConsoleLog are a server's serial console (contract D).
func (s *State) ConsoleSocket(node string) string {
	return vm.FilesOf(vm.Spec{Dir: s.machineDir(node)}).Console
}
func (s *State) ConsoleLog(node string) string {
	return vm.FilesOf(vm.Spec{Dir: s.machineDir(node)}).ConsoleLog
}

// GetStatus reads every server's state from libvirt and the rack folder.
func GetStatus(ctx context.Context, s *State, log *slog.Logger) (*Status, error) {
	m, err := vm.Connect(ctx, log)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	st := &Status{Name: s.Name, Dir: s.Dir, Serve: serveState(ctx, s)}
	for _, mc := range s.Machines[1:] {
		ns := NodeStatus{Name: mc.Name, Type: mc.Type, PrimaryMAC: mc.PrimaryMAC, BMCMAC: mc.BMCMAC,
			Firmware: mc.Firmware, ConsoleLog: s.ConsoleLog(mc.Name), BMC: "none"}
		dom := s.Domain(mc.Name)
		state, err := m.State(dom)
		if err != nil {
			return nil, err
		}
		switch state {
		case "running":
			ns.Power = "on"
		case "shut off":
			ns.Power = "off"
		default:
			ns.Power = state
		}
		if x, err := m.XML(dom); err == nil {
			ns.Boot = firstBootDevice(x)
		}
		if !s.NoBMC {
			ns.BMC = s.processState("vbmc " + mc.Name)
			if b, err := os.ReadFile(s.BMCAddrFile(mc.Name)); err == nil {
				ns.BMCIP = strings.TrimSpace(string(b))
			}
		}
		if slices.Contains(s.InstallFail, mc.Name) {
			ns.Faults = "install-fail"
		}
		st.Nodes = append(st.Nodes, ns)
	}
	return st, nil
}

func (s *State) processState(role string) string {
	for _, p := range s.Processes {
		if p.Role == role {
			if p.Alive() {
				return "running"
			}
			return "stopped"
		}
	}
	return "absent"
}

// firstBootDevice reads which device has boot order 1 in a domain XML.
func firstBootDevice(domainXML string) string {
	var d struct {
		Disks []struct {
			Boot *struct {
				Order int `xml:"order,attr"`
			} `xml:"boot"`
		} `xml:"devices>disk"`
		NICs []struct {
			Boot *struct {
				Order int `xml:"order,attr"`
			} `xml:"boot"`
		} `xml:"devices>interface"`
	}
	if err := xml.Unmarshal([]byte(domainXML), &d); err != nil {
		return "unknown"
	}
	for _, n := range d.NICs {
		if n.Boot != nil && n.Boot.Order == 1 {
			return "network"
		}
	}
	for _, k := range d.Disks {
		if k.Boot != nil && k.Boot.Order == 1 {
			return "disk"
		}
	}
	return "none"
}

// FormatTable renders the status for people.
func (st *Status) FormatTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rack %s (%s), racker serve: %s\n", st.Name, st.Dir, st.Serve)
	fmt.Fprintf(&b, "%-5s %-10s %-17s %-17s %-15s %-5s %-7s %-4s %-8s %s\n", "NODE", "TYPE", "PRIMARY MAC", "BMC MAC", "BMC IP", "POWER", "BOOT", "FW", "BMC", "CONSOLE LOG")
	for _, n := range st.Nodes {
		ip := n.BMCIP
		if ip == "" {
			ip = "-"
		}
		fw := n.Firmware
		fmt.Fprintf(&b, "%-5s %-10s %-17s %-17s %-15s %-5s %-7s %-4s %-8s %s", n.Name, n.Type, n.PrimaryMAC, n.BMCMAC, ip, n.Power, n.Boot, fw, n.BMC, n.ConsoleLog)
		if n.Faults != "" {
			fmt.Fprintf(&b, "  [%s]", n.Faults)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
