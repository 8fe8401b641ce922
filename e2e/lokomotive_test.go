//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// A Lokomotive rack (issue 15): racker bootstrap --provision lokomotive
// with lokoctl standing in for the real one (e2e/lokoctl-standin: the real
// lokoctl cannot reach its Terraform providers on these machines). The
// stand-in registers both nodes in the boot services' matchbox through its
// gRPC API, with the client bundle Racker made, exactly as Lokomotive's
// bare-metal Terraform module does; Racker then PXE-boots them through
// their BMCs, they chain into matchbox's profiles, Lokomotive's own
// installer (its install template, run by the test OS: Flatcar's
// flatcar-install -b …/matchbox/assets/flatcar) writes the OS, and the
// installed systems take their configs from matchbox. The rack is its own
// (2 nodes, one disk each: Lokomotive installs to the smallest disk), as
// the shared rack's nodes are installed by Racker's own profile.
var _ = Describe("a Lokomotive rack", Ordered, Label("lokomotive"), func() {
	var loko *simRack
	BeforeAll(func() {
		By("building the lokoctl stand-in")
		standin := filepath.Join(GinkgoT().TempDir(), "lokoctl")
		build := exec.Command("go", "build", "-o", standin, "./e2e/lokoctl-standin")
		build.Dir, build.Env = rack0Repo(), append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "%s", out)
		bin, err := os.ReadFile(standin)
		Expect(err).NotTo(HaveOccurred())

		loko = ownRack("lk", "the Lokomotive rack (2 nodes, BIOS and UEFI, one disk each)", "lokomotive: sim up",
			"--nodes", "2", "--types", "bios,uefi", "--uefi-types", "uefi", "--os", "testos", "--disks", "10G")
		Expect(loko.nodes).To(HaveLen(2))

		By("installing lokoctl (the stand-in) and a terraform on the management node's PATH (/opt/bin)")
		res := loko.inMgmtInput(time.Minute, string(bin), "sh", "-c", "cat > /opt/bin/lokoctl && chmod 0755 /opt/bin/lokoctl")
		Expect(res.code).To(Equal(0), res.String())
		res = loko.inMgmtInput(time.Minute, "#!/bin/sh\necho 'Terraform v0.13.6'\n", "sh", "-c", "cat > /opt/bin/terraform && chmod 0755 /opt/bin/terraform")
		Expect(res.code).To(Equal(0), res.String())
	})

	It("registers the nodes in matchbox, PXE-boots them through matchbox's profiles, and shows them ready", func() {
		start := time.Now()
		res := loko.racker(15*time.Minute, bootstrapArgs("--provision", "lokomotive", "--public-ips=")...)
		Expect(res.code).To(Equal(0), res.String())
		took := time.Since(start)
		Expect(res.stdout).To(ContainSubstring("lokoctl | Apply complete! 2 node(s) registered in matchbox."), res.String())
		reg := strings.Index(res.stdout, "lokoctl registered 2 of 2 node(s) in matchbox")
		Expect(reg).To(BeNumerically(">=", 0), res.String())
		Expect(res.stdout).To(ContainSubstring("bootstrap: done, 2 node(s) booted (lokomotive profile)"), res.String())

		By("each node chained to matchbox, ran Lokomotive's installer and took its installed config from matchbox")
		evs := loko.fullEvents()
		st := loko.status()
		for _, n := range loko.nodes {
			var scripts, ignitions []string
			for _, e := range evs {
				if e.MAC != n.PrimaryMAC {
					continue
				}
				if e.Script != "" {
					scripts = append(scripts, e.Script)
				}
				if e.Ignition != "" {
					ignitions = append(ignitions, e.Ignition)
				}
			}
			Expect(scripts).To(ContainElement("matchbox"), "%s: iPXE scripts served %v", n.Name, scripts)
			Expect(scripts).NotTo(ContainElement("install"), "%s: Racker's own install was served", n.Name)
			Expect(ignitions).To(ContainElements("matchbox_install", "matchbox_node"), "%s: %v", n.Name, ignitions)
			console := loko.console(n)
			Expect(console).To(ContainSubstring("running Flatcar's own flatcar-install"), n.Name)
			Expect(console).To(ContainSubstring("/matchbox/assets/flatcar"), n.Name)
			Expect(console).To(ContainSubstring("os=installed"), n.Name)
			Expect(loko.installs(n)).To(Equal(1), "%s installed once", n.Name)

			s := st[n.PrimaryMAC]
			Expect(s.Phase).To(Equal("ready"), "%s: %+v", n.Name, s)
			Expect(s.BootDevice).To(Equal("disk"), "%s: %+v", n.Name, s)
		}
		fmt.Fprintf(os.Stdout, "\nLokomotive rack: bootstrap of 2 nodes through matchbox %s\n", took.Round(time.Second))
		AddReportEntry("lokomotive bootstrap", took.Round(time.Second).String())
	})
})
