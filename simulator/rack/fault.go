package rack

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"

	"github.com/racker/racker/netenv"
	"github.com/racker/racker/simulator/vm"
)

// Faults tests can inject.
const (
	FaultBMCDown     = "bmc-down"     // the BMC's cable is pulled: no DHCP, no IPMI
	FaultBMCUp       = "bmc-up"       //
	FaultLinkDown    = "link-down"    // the server's primary NIC loses carrier
	FaultLinkUp      = "link-up"      //
	FaultInstallFail = "install-fail" // the server's installs fail until install-ok
	FaultInstallOK   = "install-ok"   //
)

// Faults lists the fault names in the order `racker-sim fault` documents them.
var Faults = []string{FaultBMCDown, FaultBMCUp, FaultLinkDown, FaultLinkUp, FaultInstallFail, FaultInstallOK}

// InstallImageFile is the file whose download an install-fail fault breaks.
const InstallImageFile = "flatcar_production_image.bin.bz2"

// installFailRule is the management node's iptables rule for install-fail:
// a TCP reset for HTTP requests from the server's primary MAC whose request
// line asks for the install image. The live OS's flatcar-install sees a
// failed download, so the node reports `failed` through Racker's events API
// like any broken install; the callbacks themselves still get through (their
// bodies never hold the request-line pattern), and other nodes are untouched.
func installFailRule(node Machine) []string {
	return []string{"INPUT", "-p", "tcp", "-m", "mac", "--mac-source", node.PrimaryMAC,
		"-m", "string", "--algo", "bm", "--string", "/" + InstallImageFile + " HTTP/1.",
		"-m", "comment", "--comment", "racker-sim:install-fail:" + node.Name,
		"-j", "REJECT", "--reject-with", "tcp-reset"}
}

// Fault injects or heals a fault on a server.
func Fault(ctx context.Context, s *State, node, fault string, log *slog.Logger) error {
	mc, err := s.Machine(node)
	if err != nil {
		return err
	}
	if mc.Name == "mgmt" {
		return fmt.Errorf("faults apply to servers, not the management node")
	}
	names := netenv.Names{Instance: s.Name}
	switch fault {
	case FaultBMCDown, FaultBMCUp:
		if s.NoBMC {
			return fmt.Errorf("rack %s has no BMCs (--no-bmc)", s.Name)
		}
		return netenv.SetLinkUp("", names.Iface(mc.Name, "b"), fault == FaultBMCUp)
	case FaultLinkDown, FaultLinkUp:
		m, err := vm.Connect(ctx, log)
		if err != nil {
			return err
		}
		defer m.Close()
		return m.SetLink(s.Domain(mc.Name), mc.PrimaryMAC, names.Bridge("int"), fault == FaultLinkUp)
	case FaultInstallFail, FaultInstallOK:
		rule := installFailRule(mc)
		has := mgmtIPTables(ctx, s, "-C", rule) == nil
		if fault == FaultInstallFail && !has {
			if err := mgmtIPTables(ctx, s, "-A", rule); err != nil {
				return err
			}
		}
		if fault == FaultInstallOK && has {
			if err := mgmtIPTables(ctx, s, "-D", rule); err != nil {
				return err
			}
		}
		s.InstallFail = slices.DeleteFunc(s.InstallFail, func(n string) bool { return n == mc.Name })
		if fault == FaultInstallFail {
			s.InstallFail = append(s.InstallFail, mc.Name)
		}
		return s.save()
	}
	return fmt.Errorf("fault %q: want one of %s", fault, strings.Join(Faults, ", "))
}

func mgmtIPTables(ctx context.Context, s *State, action string, rule []string) error {
	args := append([]string{"netns", "exec", s.MgmtNamespace(), "iptables", "-w", action}, rule...)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("while running iptables %s in the management node: %w: %s", action, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
