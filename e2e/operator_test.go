//go:build e2e

package e2e

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// operatorSpecs: a failure explained after the fact, with the commands an
// operator has (issue 16): racker status -o json, racker describe, racker
// events, the console log Racker recorded, and /metrics.
func operatorSpecs() {
	Context("explaining a failure afterwards", Label("operator"), func() {
		It("shows why an install failed: the reason in status, the failed transition in describe, the install's output in the console log", func() {
			rack.ensureProvisioned()
			target := rack.nodes[2]
			rack.sim("fault", target.Name, "install-fail")
			DeferCleanup(func() { rack.sim("fault", target.Name, "install-ok") })

			By("reprovisioning " + target.Name + " with its install image download broken")
			res := rack.racker(20*time.Minute, append([]string{"reprovision", target.PrimaryMAC, "--yes", "--on-failure", "exclude"}, provisionFlags...)...)
			Expect(res.code).NotTo(Equal(0), "the install failed, so reprovision must exit non-zero:\n%s", res)

			By("racker status -o json carries the reason")
			var st struct {
				Nodes []struct {
					PrimaryMAC     string `json:"primary_mac"`
					Hostname       string `json:"hostname"`
					Phase          string `json:"phase"`
					Reason         string `json:"reason"`
					InPhaseSeconds int64  `json:"in_phase_seconds"`
				} `json:"nodes"`
			}
			mustJSON(rack.racker(time.Minute, "status", "-o", "json"), &st)
			host := ""
			for _, n := range st.Nodes {
				if n.PrimaryMAC == target.PrimaryMAC {
					host = n.Hostname
					Expect(n.Phase).To(Equal("excluded"))
					Expect(n.Reason).To(ContainSubstring("the node reported a failure"), "status -o json: %+v", n)
					Expect(n.Reason).To(ContainSubstring("flatcar-install"))
				}
			}
			Expect(host).NotTo(BeEmpty(), "status lists %s", target.PrimaryMAC)

			By("racker describe shows the transition that failed, with its cause")
			d := rack.racker(2*time.Minute, "describe", host)
			Expect(d.code).To(Equal(0), d.String())
			Expect(d.stdout).To(MatchRegexp(`installing → excluding\s+the node reported a failure`), d.stdout)
			Expect(d.stdout).To(ContainSubstring("Reason:"))
			Expect(d.stdout).To(MatchRegexp(`BMC:\n\s+ipmi at \S+, lanplus`), "describe asks the node's BMC")

			By("the console log under the state folder holds the failing install's output")
			log := rack.inMgmt(time.Minute, "cat", "/opt/racker-state/console/"+host+".log")
			Expect(log.code).To(Equal(0), log.String())
			Expect(log.stdout).To(ContainSubstring("--- racker:"), "the recorder's own lines")
			Expect(log.stdout).To(ContainSubstring("flatcar-install: writing"), "the install started on the console")
			Expect(log.stdout).To(MatchRegexp(`flatcar-install: .*(reset|refused|EOF|failed)`), "the install's error on the console")
			Expect(d.stdout).To(ContainSubstring("flatcar-install"), "describe shows the console's tail")

			By("racker events and /metrics agree")
			var entries []struct {
				Source string `json:"source"`
				Kind   string `json:"kind"`
				To     string `json:"to"`
			}
			mustJSON(rack.racker(time.Minute, "events", host, "-o", "json"), &entries)
			kinds := map[string]bool{}
			for _, e := range entries {
				kinds[e.Source+"/"+e.Kind+"/"+e.To] = true
			}
			Expect(kinds).To(HaveKey("boot-services/failed/"), "the node's failed callback")
			Expect(kinds).To(HaveKey("racker/transition/excluded"))
			metrics := rack.inMgmt(time.Minute, "curl", "-fsS", rack.mgmtURL()+"/metrics")
			Expect(metrics.code).To(Equal(0), metrics.String())
			Expect(metrics.stdout).To(ContainSubstring(`racker_node_phase{mac="` + target.PrimaryMAC + `",phase="failed"} 1`))
			Expect(metrics.stdout).To(MatchRegexp(`racker_install_duration_seconds_count [1-9]`), "earlier installs were timed")

			By("healing the fault: the node installs again")
			rack.sim("fault", target.Name, "install-ok")
			res = rack.racker(20*time.Minute, append([]string{"reprovision", target.PrimaryMAC, "--yes"}, provisionFlags...)...)
			Expect(res.code).To(Equal(0), res.String())
			Expect(rack.status()[target.PrimaryMAC].Phase).To(Equal("booted"))
		})

		It("keeps the rack's choices: a contradicting flag is refused, status -o yaml and plan -o name agree", func() {
			rack.ensureProvisioned()
			res := rack.racker(time.Minute, "plan", "--cluster-name", "renamed")
			Expect(res.code).To(Equal(2), res.String())
			Expect(res.stderr).To(ContainSubstring("--replan"))
			names := rack.racker(time.Minute, "plan", "-o", "name")
			Expect(names.code).To(Equal(0), names.String())
			for _, n := range rack.status() {
				Expect(names.stdout).To(ContainSubstring(n.Hostname + "\n"))
			}
			Expect(strings.Count(rack.racker(time.Minute, "status", "-o", "yaml").stdout, "primary_mac:")).To(Equal(len(rack.nodes)))
		})
	})
}
