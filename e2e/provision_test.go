//go:build e2e

package e2e

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// faultAtStartSpecs: a BMC that is down when bootstrap starts.
func faultAtStartSpecs() {
	Context("a BMC down at start", Label("faults"), func() {
		It("excludes that node with a clear reason under --on-failure exclude and provisions the rest", func() {
			dead := rack.nodes[0]
			rack.sim("fault", dead.Name, "bmc-down")
			DeferCleanup(func() { rack.sim("fault", dead.Name, "bmc-up") })

			res := rack.racker(25*time.Minute, bootstrapArgs("--on-failure", "exclude", "--bmc-timeout", "45s")...)
			Expect(res.code).NotTo(Equal(0), "a node failed, so bootstrap must exit non-zero:\n%s", res)
			out := res.stdout + res.stderr
			Expect(out).To(ContainSubstring(dead.PrimaryMAC))
			Expect(out).To(MatchRegexp(`(?i)bmc`), "the reason names the BMC")

			st := rack.status()
			Expect(st[dead.PrimaryMAC].Phase).To(Equal("excluded"))
			for _, n := range rack.nodes[1:] {
				Expect(st[n.PrimaryMAC].Phase).To(Equal("booted"), "node %s", n.Name)
			}
			for _, n := range rack.simStatus() {
				if n.Name == dead.Name {
					Expect(n.Power).To(Equal("off"), "an excluded node is left powered off")
				}
			}
		})
	})
}

// bootstrapSpecs: the whole rack provisioned, surviving a kill -9.
func bootstrapSpecs() {
	Context("bootstrap", Label("bootstrap"), func() {
		It("resumes after kill -9 mid-way and installs no node twice", func() {
			target := rack.nodes[0]
			if rack.status()[target.PrimaryMAC].Phase == "booted" {
				Skip("every node is already provisioned (the fault spec did not run first)")
			}
			installsBefore := map[string]int{}
			for _, n := range rack.nodes {
				installsBefore[n.PrimaryMAC] = rack.installs(n)
			}
			run := rack.startRacker(bootstrapArgs("--on-failure", "retry")...)
			rack.waitPhase(target.PrimaryMAC, 10*time.Minute, "netbooting", "installing", "installed")
			By("killing racker bootstrap with SIGKILL while " + target.Name + " provisions")
			kill := rack.inMgmt(time.Minute, "pkill", "-KILL", "-f", "racker bootstrap")
			Expect(kill.code).To(Equal(0), kill.String())
			Expect(run.wait(time.Minute).code).NotTo(Equal(0))

			res := rack.racker(25*time.Minute, bootstrapArgs("--on-failure", "retry")...)
			Expect(res.code).To(Equal(0), res.String())

			evs := rack.events()
			for _, n := range rack.nodes {
				Expect(count(evs, n.PrimaryMAC, "installed")).To(Equal(1), "node %s installed once in all", n.Name)
			}
			Expect(rack.installs(target)-installsBefore[target.PrimaryMAC]).To(Equal(1), "the console shows one install of %s", target.Name)
			for _, n := range rack.nodes[1:] {
				Expect(rack.installs(n)).To(Equal(installsBefore[n.PrimaryMAC]), "booted node %s was not reinstalled", n.Name)
			}
		})

		It("leaves every node booted, installed on disk and booting from disk", func() {
			rack.ensureProvisioned()
			st := rack.status()
			api := rack.apiNodes()
			for _, n := range rack.nodes {
				By("checking " + n.Name)
				Expect(st[n.PrimaryMAC].Phase).To(Equal("booted"))
				// The BMC, read over IPMI: persistent boot from disk.
				valid, persistent, device := rack.bootFlags(n)
				Expect(valid && persistent).To(BeTrue(), "boot flags of %s are valid and persistent", n.Name)
				Expect(device).To(Equal(byte(0x08)), "boot device of %s is the disk", n.Name)
				// The installed OS's own console: it booted from its disk and took its hostname.
				console := rack.console(n)
				Expect(console).To(ContainSubstring("testos: first boot: Ignition config from the OEM partition"))
				Expect(console).To(ContainSubstring("hostname=" + st[n.PrimaryMAC].Hostname))
				// The boot services agree.
				Expect(api[n.PrimaryMAC].Target).To(Equal("disk"))
				Expect(api[n.PrimaryMAC].Phase).To(Equal("booted"))
			}
		})
	})
}

// reprovisionSpecs: one node reinstalled, the others untouched.
func reprovisionSpecs() {
	Context("reprovision", Label("reprovision"), func() {
		It("reinstalls one node, rewriting its disk, and does not reboot the others", func() {
			rack.ensureProvisioned()
			target := rack.nodes[1] // the UEFI node
			others := []simNode{rack.nodes[0], rack.nodes[2]}
			before := rack.status()
			bootsBefore := map[string]int{}
			for _, n := range others {
				bootsBefore[n.Name] = rack.boots(n)
			}
			installsBefore := rack.installs(target)

			res := rack.racker(15*time.Minute, append([]string{"reprovision", target.PrimaryMAC, "--yes"}, provisionFlags...)...)
			Expect(res.code).To(Equal(0), res.String())

			after := rack.status()
			Expect(after[target.PrimaryMAC].Phase).To(Equal("booted"))
			Expect(after[target.PrimaryMAC].InstallGeneration).To(BeNumerically(">", before[target.PrimaryMAC].InstallGeneration))
			Expect(rack.installs(target)).To(Equal(installsBefore+1), "the console shows a new install to disk")
			for _, n := range others {
				Expect(rack.boots(n)).To(Equal(bootsBefore[n.Name]), "%s did not reboot", n.Name)
				Expect(after[n.PrimaryMAC].InstallGeneration).To(Equal(before[n.PrimaryMAC].InstallGeneration))
			}
		})
	})
}

// installFaultSpecs: a failing install and a cable pulled mid-install.
func installFaultSpecs() {
	Context("install faults", Label("faults"), func() {
		It("retries a failed install and completes it", func() {
			rack.ensureProvisioned()
			target := rack.nodes[2]
			failedBefore := count(rack.events(), target.PrimaryMAC, "failed")
			rack.sim("fault", target.Name, "install-fail")
			DeferCleanup(func() { rack.sim("fault", target.Name, "install-ok") })

			run := rack.startRacker(append([]string{"reprovision", target.PrimaryMAC, "--yes"}, provisionFlags...)...)
			Eventually(func() int { return count(rack.events(), target.PrimaryMAC, "failed") }).
				WithTimeout(10 * time.Minute).WithPolling(5 * time.Second).Should(BeNumerically(">", failedBefore))
			By("the install failed; fixing the fault")
			rack.sim("fault", target.Name, "install-ok")
			res := run.wait(20 * time.Minute)
			Expect(res.code).To(Equal(0), res.String())
			Expect(rack.status()[target.PrimaryMAC].Phase).To(Equal("booted"))
		})

		It("detects a link down during the install by its timeout and retries", func() {
			rack.ensureProvisioned()
			target := rack.nodes[0]
			run := rack.startRacker(append([]string{"reprovision", target.PrimaryMAC, "--yes"}, provisionFlags...)...)
			rack.waitPhase(target.PrimaryMAC, 10*time.Minute, "installing")
			rack.sim("fault", target.Name, "link-down")
			DeferCleanup(func() { rack.sim("fault", target.Name, "link-up") })
			By("waiting for Racker to give up on the stalled install")
			Eventually(func() string { return rack.status()[target.PrimaryMAC].Phase }).
				WithTimeout(8 * time.Minute).WithPolling(3 * time.Second).ShouldNot(BeElementOf("installing", "installed"))
			rack.sim("fault", target.Name, "link-up")
			res := run.wait(20 * time.Minute)
			Expect(res.code).To(Equal(0), res.String())
			Expect(res.stdout).To(ContainSubstring("no progress in phase installing"), "the run reports the stalled install it recovered from")
			Expect(rack.status()[target.PrimaryMAC].Phase).To(Equal("booted"))
		})
	})
}
