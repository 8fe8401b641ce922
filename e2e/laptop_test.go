//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// laptopFlags are the suite's timeouts for the laptop rack (no UEFI type:
// every laptop node boots SeaBIOS) with the libvirt driver.
var laptopFlags = []string{"--bmc-driver", "libvirt", "--netboot-timeout", "3m", "--install-start-timeout", "3m",
	"--install-timeout", "2m", "--boot-timeout", "4m"}

// Laptop mode (issue 21): a rack of 2 plain libvirt VMs without BMCs
// (racker-sim up --no-bmc), provisioned and reprovisioned by Racker through
// libvirt (--bmc-driver libvirt), the way the README tells a new user to.
// It has a rack of its own: the shared rack has BMCs.
var _ = Describe("laptop mode", Ordered, Label("laptop"), func() {
	var lap *simRack
	BeforeAll(func() {
		lap = ownRack("lap", "the laptop rack (--no-bmc, 2 nodes)", "laptop: sim up", "--nodes", "2", "--no-bmc", "--os", "testos")
		Expect(lap.nodes).To(HaveLen(2))
		for _, n := range lap.nodes {
			Expect(n.BMC).To(Equal("none"), "node %s has no vBMC", n.Name)
		}
		csv := lap.inMgmt(time.Minute, "cat", "/usr/share/oem/nodes.csv")
		Expect(csv.stdout).To(ContainSubstring("no BMC (laptop mode: libvirt domain "+lap.name+"-n1)"), csv.String())
	})

	It("bootstraps 2 nodes over libvirt, then reprovisions one; every node ends booted from disk", func() {
		start := time.Now()
		res := lap.racker(15*time.Minute, append([]string{"bootstrap", "--os", "testos"}, laptopFlags...)...)
		Expect(res.code).To(Equal(0), res.String())
		tookBootstrap := time.Since(start)

		By("racker status shows power and boot device as libvirt reported them")
		st := lap.status()
		for _, n := range lap.nodes {
			s := st[n.PrimaryMAC]
			Expect(s.Phase).To(Equal("booted"), "%s: %+v", n.Name, s)
			Expect(s.Power).To(Equal("on"), "%s: %+v", n.Name, s)
			Expect(s.BootDevice).To(Equal("disk"), "%s: %+v", n.Name, s)
			Expect(lap.installs(n)).To(Equal(1), "%s installed once", n.Name)
		}

		By("the domains run, boot from disk, and say so through racker's libvirt driver")
		for _, n := range lap.simStatus() {
			Expect(n.Power).To(Equal("on"), "%s: a guest reboot must not leave the domain off", n.Name)
			Expect(n.Boot).To(Equal("disk"), n.Name)
			p := lap.racker(time.Minute, "power", n.PrimaryMAC, "status", "--bmc-driver", "libvirt")
			Expect(p.code).To(Equal(0), p.String())
			Expect(strings.TrimSpace(p.stdout)).To(Equal("on"), p.String())
			b := lap.racker(time.Minute, "bootdev", n.PrimaryMAC, "--bmc-driver", "libvirt")
			Expect(b.code).To(Equal(0), b.String())
			Expect(strings.TrimSpace(b.stdout)).To(HavePrefix("disk persistent"), b.String())
		}

		target := lap.nodes[1]
		By("reprovisioning " + target.Name + " over libvirt")
		gen := lap.apiNodes()[target.PrimaryMAC].InstallGeneration
		start = time.Now()
		res = lap.racker(15*time.Minute, append([]string{"reprovision", target.PrimaryMAC, "--yes"}, laptopFlags...)...)
		Expect(res.code).To(Equal(0), res.String())
		tookReprovision := time.Since(start)
		st = lap.status()
		Expect(st[target.PrimaryMAC].Phase).To(Equal("booted"))
		Expect(st[target.PrimaryMAC].BootDevice).To(Equal("disk"))
		Expect(lap.apiNodes()[target.PrimaryMAC].InstallGeneration).To(BeNumerically(">", gen))
		Expect(lap.installs(target)).To(Equal(2), "%s installed again", target.Name)
		Expect(st[lap.nodes[0].PrimaryMAC].Phase).To(Equal("booted"), "the other node is untouched")
		Expect(lap.installs(lap.nodes[0])).To(Equal(1), "the other node is not reinstalled")
		for _, n := range lap.simStatus() {
			Expect(n.Power).To(Equal("on"), n.Name)
			Expect(n.Boot).To(Equal("disk"), n.Name)
		}
		fmt.Fprintf(os.Stdout, "\nlaptop mode: bootstrap of 2 nodes %s, reprovision of 1 node %s\n",
			tookBootstrap.Round(time.Second), tookReprovision.Round(time.Second))
		AddReportEntry("laptop bootstrap", tookBootstrap.Round(time.Second).String())
		AddReportEntry("laptop reprovision", tookReprovision.Round(time.Second).String())
	})

	It("names the node and the domain tried when a domain is missing", func() {
		res := lap.racker(time.Minute, "power", "--bmc", "libvirt:///"+lap.name+"-n9", "status")
		Expect(res.code).NotTo(Equal(0), res.String())
		Expect(res.stderr).To(ContainSubstring(`finding domain "`+lap.name+`-n9"`), res.String())
	})
})

// rack0Repo is the repository root (the suite runs in e2e/).
func rack0Repo() string {
	GinkgoHelper()
	wd, err := os.Getwd()
	Expect(err).NotTo(HaveOccurred())
	return strings.TrimSuffix(wd, "/e2e")
}
