//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// strictSpecs: the simulator is as strict as Flatcar where a real rack
// would be. Each spec makes sure the rack is provisioned first, so a label
// run (make e2e LABELS=strict) works on its own.
func strictSpecs() {
	Context("as strict as Flatcar", Label("strict"), func() {
		It("installs every node with Flatcar's own flatcar-install", func() {
			rack.ensureProvisioned()
			for _, n := range rack.nodes {
				console := rack.console(n)
				Expect(console).To(ContainSubstring("testos: flatcar-install: running Flatcar's own flatcar-install"), "node %s", n.Name)
				Expect(console).To(MatchRegexp(`Success! Flatcar Container Linux \S+ \S+ is installed on /dev/vd[a-d]`), "node %s", n.Name)
				Expect(console).NotTo(ContainSubstring("test OS stand-in"), "node %s", n.Name)
			}
		})

		It("brings a power-cycled node back without Ignition, on its static address, without DHCP", func() {
			rack.ensureProvisioned()
			target := rack.nodes[0]
			ip := rack.status()[target.PrimaryMAC].IP
			Expect(ip).NotTo(BeEmpty(), "node %s has no planned address", target.Name)
			evs := rack.fullEvents()
			last := evs[len(evs)-1].Seq
			consoleBefore := len(rack.console(target))

			By("power-cycling " + target.Name + " through its BMC")
			res := rack.racker(2*time.Minute, "power", target.PrimaryMAC, "cycle")
			Expect(res.code).To(Equal(0), res.String())

			// racker-booted.service stays enabled on the installed system, so
			// every boot calls back; that callback says the node is up.
			var booted fullEvent
			Eventually(func() bool {
				for _, e := range rack.fullEvents() {
					if e.Seq > last && e.MAC == target.PrimaryMAC && e.Kind == "booted" {
						booted = e
						return true
					}
				}
				return false
			}).WithTimeout(5*time.Minute).WithPolling(5*time.Second).Should(BeTrue(), "%s never called back after the power cycle", target.Name)

			console := rack.console(target)[consoleBefore:]
			Expect(console).To(ContainSubstring("testos: starting"), "the console shows a new boot")
			Expect(console).To(ContainSubstring("system=installed"))
			Expect(console).To(ContainSubstring("not the first boot (no flatcar/first_boot on EFI-SYSTEM): Ignition does not run"))
			Expect(console).NotTo(ContainSubstring("Ignition config from"), "Ignition ran again")
			Expect(console).To(MatchRegexp(`network file applied file=00-internal\.network iface=\S+ addresses=\[` + regexp.QuoteMeta(ip) + `/\d+\] dhcp=no`))
			Expect(console).NotTo(ContainSubstring("testos: DHCP lease iface=eth0"), "a DHCP lease on the internal link")
			Expect(console).To(ContainSubstring("hostname=" + rack.status()[target.PrimaryMAC].Hostname))

			Expect(booted.Source).To(HavePrefix(ip+":"), "the booted callback comes from the static address")
			for _, e := range rack.fullEvents() {
				if e.Seq <= last || e.MAC != target.PrimaryMAC {
					continue
				}
				Expect(e.Kind).NotTo(BeElementOf("dhcp", "tftp", "ipxe", "ignition"),
					"after the power cycle %s asked the boot services for %s (%s): a netboot, a lease or Ignition", target.Name, e.Kind, e.Message)
			}
			Expect(rack.status()[target.PrimaryMAC].Phase).To(Equal("booted"))
		})

		It("installs on the 40 GB disk of a node with a 4 GB and a 40 GB disk, first and on reprovision", func() {
			rack.ensureProvisioned()
			target := rack.twoDiskNode()
			By(target.Name + " has a 4 GB vda and a 40 GB vdb (racker-sim up --disks uefi=4G,40G)")
			Expect(lastInstallDisk(rack.console(target))).To(Equal("/dev/vdb"), "the first install of %s", target.Name)
			Expect(lastBootDisk(rack.console(target))).To(Equal("/dev/vdb"), "the installed system of %s", target.Name)

			installsBefore := rack.installs(target)
			res := rack.racker(15*time.Minute, append([]string{"reprovision", target.PrimaryMAC, "--yes"}, provisionFlags...)...)
			Expect(res.code).To(Equal(0), res.String())
			console := rack.console(target)
			Expect(rack.installs(target)).To(Equal(installsBefore+1), "the console shows one more install")
			Expect(console).To(ContainSubstring("racker-install: installing to /dev/vdb (42949672960 bytes)"))
			Expect(lastInstallDisk(console)).To(Equal("/dev/vdb"), "the reinstall of %s", target.Name)
			Expect(lastBootDisk(console)).To(Equal("/dev/vdb"), "the reinstalled system of %s", target.Name)
			Expect(rack.status()[target.PrimaryMAC].Phase).To(Equal("booted"))
		})
	})
}

// twoDiskNode is the node of the type that `racker-sim up --disks` gave a
// 4 GB and a 40 GB disk (the UEFI type of the suite's rack).
func (r *simRack) twoDiskNode() simNode {
	GinkgoHelper()
	for _, n := range r.nodes {
		if n.Type == twoDiskType {
			return n
		}
	}
	Fail(fmt.Sprintf("no node of type %s", twoDiskType))
	return simNode{}
}

var (
	installedOn = regexp.MustCompile(`Success! Flatcar Container Linux .* is installed on (/dev/\S+)`)
	bootedFrom  = regexp.MustCompile(`testos: installed system disk=(/dev/\S+)`)
)

// lastInstallDisk is the disk the console's last install went to.
func lastInstallDisk(console string) string { return lastMatch(installedOn, console) }

// lastBootDisk is the disk the console's last boot from disk ran from.
func lastBootDisk(console string) string { return lastMatch(bootedFrom, console) }

func lastMatch(re *regexp.Regexp, s string) string {
	all := re.FindAllStringSubmatch(s, -1)
	if len(all) == 0 {
		return ""
	}
	return strings.TrimRight(all[len(all)-1][1], "\r")
}

// fullEvent is an event with the sender's address.
type fullEvent struct {
	Seq     uint64 `json:"seq"`
	MAC     string `json:"mac"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Source  string `json:"source"`
	// The typed details (docs/boot-contract.md): the iPXE script served,
	// the Ignition config served.
	Script   string `json:"script"`
	Ignition string `json:"ignition"`
}

// fullEvents reads the whole event journal, with each event's source.
func (r *simRack) fullEvents() []fullEvent {
	GinkgoHelper()
	base := r.mgmtURL()
	var all []fullEvent
	after := uint64(0)
	for {
		var page struct {
			Events []fullEvent `json:"events"`
		}
		mustJSON(r.inMgmt(time.Minute, "curl", "-fsS", fmt.Sprintf("%s/api/v1/events?after=%d&wait=0s", base, after)), &page)
		if len(page.Events) == 0 {
			return all
		}
		all = append(all, page.Events...)
		after = page.Events[len(page.Events)-1].Seq
	}
}
