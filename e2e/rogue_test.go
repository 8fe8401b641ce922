//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// stateBound is the stated bound on the management node's state folder
// after the rogue's 200,000-packet flood (docs/security.md): the journal
// is compacted and what a flood may record is rate-limited, so it stays a
// few MiB whatever is sent.
const stateBound = 16 << 20

// floodGrowthBound is what the flood itself may add to the state folder.
const floodGrowthBound = 2 << 20

// rogueReport is what `racker-sim rogue …` prints.
type rogueReport struct {
	Requests int         `json:"requests"`
	Codes    map[int]int `json:"codes"`
	Errors   int         `json:"errors"`
	Ignition int         `json:"ignition"`
	Tokens   int         `json:"tokens"`
	Accepted int         `json:"accepted"`
	Views    int         `json:"views"`
	Packets  int         `json:"packets"`
}

// gotNothing: the attack got no config, no token, no accepted callback
// and no management view.
func (r rogueReport) gotNothing(what string) {
	GinkgoHelper()
	Expect(r.Ignition).To(BeZero(), "%s: Ignition configs served to the rogue host: %+v", what, r)
	Expect(r.Tokens).To(BeZero(), "%s: tokens served to the rogue host: %+v", what, r)
	Expect(r.Accepted).To(BeZero(), "%s: callbacks accepted from the rogue host: %+v", what, r)
	Expect(r.Views).To(BeZero(), "%s: management views served to the rogue host: %+v", what, r)
}

// rogue runs racker-sim rogue ARGS against the boot services and decodes
// its report (nil for commands that report nothing).
func (r *simRack) rogue(timeout time.Duration, args ...string) map[string]rogueReport {
	GinkgoHelper()
	full := append([]string{"rogue", "--server", r.nodeURL()}, args...)
	res := r.trySim(timeout, full...)
	Expect(res.code).To(Equal(0), res.String())
	if strings.TrimSpace(res.stdout) == "" {
		return nil
	}
	var one rogueReport
	if json.Unmarshal([]byte(res.stdout), &one) == nil && one.Codes != nil || one.Packets > 0 {
		return map[string]rogueReport{"": one}
	}
	var many map[string]rogueReport
	Expect(json.Unmarshal([]byte(res.stdout), &many)).To(Succeed(), res.stdout)
	return many
}

// nodeURL is the boot services as the nodes reach them: the management
// node's internal address.
func (r *simRack) nodeURL() string {
	GinkgoHelper()
	var p struct {
		Management struct {
			IP string `json:"ip"`
		} `json:"management"`
	}
	mustJSON(r.racker(time.Minute, "plan", "-o", "json"), &p)
	return "http://" + p.Management.IP + ":8080"
}

// stateBytes is the size of the management node's state folder.
func (r *simRack) stateBytes() int64 {
	GinkgoHelper()
	res := r.inMgmt(time.Minute, "du", "-sb", "/opt/racker-state")
	Expect(res.code).To(Equal(0), res.String())
	n, err := strconv.ParseInt(strings.Fields(res.stdout)[0], 10, 64)
	Expect(err).NotTo(HaveOccurred())
	return n
}

// nodeSnapshot is what a rogue must not change: each node's phase at the
// orchestrator and at the boot services, and its install generation.
func (r *simRack) nodeSnapshot() map[string]string {
	GinkgoHelper()
	out := map[string]string{}
	st, api := r.status(), r.apiNodes()
	for _, n := range r.nodes {
		out[n.PrimaryMAC] = fmt.Sprintf("%s/%s/gen%d/%s", st[n.PrimaryMAC].Phase, api[n.PrimaryMAC].Phase,
			api[n.PrimaryMAC].InstallGeneration, api[n.PrimaryMAC].Target)
	}
	return out
}

func rogueSpecs() {
	Context("a rogue host on the internal network", Label("faults", "rogue"), func() {
		It("gets no Ignition and no token, moves no node, and the rack provisions as usual", func() {
			rack.sim("fault", "rogue", "on")
			DeferCleanup(func() { rack.sim("fault", "rogue", "off") })
			st := rack.status()
			var macs, pairs []string
			for _, n := range rack.nodes {
				macs = append(macs, n.PrimaryMAC)
				pairs = append(pairs, n.PrimaryMAC+"="+st[n.PrimaryMAC].IP, n.BMCMAC+"="+n.BMCIP)
			}
			mgmt := netip.MustParseAddr(strings.TrimSuffix(strings.TrimPrefix(rack.nodeURL(), "http://"), ":8080"))
			own := mgmt.As4()
			own[3] = 250
			rack.rogue(time.Minute, "take", "own", netip.AddrFrom4(own).String()+"/24")
			attack := func(when string, discovers int) {
				GinkgoHelper()
				rack.rogue(5*time.Minute, "fetch-configs", strings.Join(macs, ","))[""].gotNothing(when + ": fetch-configs")
				rack.rogue(5*time.Minute, "callbacks", strings.Join(macs, ","))[""].gotNothing(when + ": callbacks")
				rack.rogue(time.Minute, "dhcp-request", strings.Join(pairs, ","))
				flood := rack.rogue(20*time.Minute, "flood", "--discovers", strconv.Itoa(discovers), "--http", "200")
				flood["http"].gotNothing(when + ": junk HTTP")
				Expect(flood["dhcp"].Packets).To(BeNumerically(">=", discovers*9/10), "the flood was sent")
			}

			By("attacking while the rack provisions")
			before := map[string]int{}
			for _, n := range rack.nodes {
				before[n.PrimaryMAC] = rack.installs(n)
			}
			provisioned := true
			for _, n := range rack.nodes {
				provisioned = provisioned && (st[n.PrimaryMAC].Phase == "booted" || st[n.PrimaryMAC].Phase == "ready")
			}
			var run *background
			installing := rack.nodes
			if provisioned { // the suite's earlier specs provisioned the rack: reinstall one node
				installing = rack.nodes[:1]
				run = rack.startRacker(append([]string{"reprovision", installing[0].PrimaryMAC, "--yes"}, provisionFlags...)...)
			} else {
				run = rack.startRacker(bootstrapArgs()...)
			}
			rounds := 0
			for done := false; !done; {
				attack("during provisioning", 2000)
				rounds++
				select {
				case <-run.done:
					done = true
				case <-time.After(5 * time.Second):
				}
			}
			res := run.wait(25 * time.Minute)
			Expect(res.code).To(Equal(0), "provisioning under attack:\n%s", res.stdout)
			fmt.Fprintf(GinkgoWriter, "%d attack rounds during provisioning\n", rounds)
			st = rack.status()
			for _, n := range rack.nodes {
				Expect(st[n.PrimaryMAC].Phase).To(Equal("booted"), "node %s", n.Name)
			}
			for _, n := range installing {
				Expect(rack.installs(n)).To(Equal(before[n.PrimaryMAC]+1), "node %s installed once", n.Name)
			}

			By("attacking the provisioned rack: nothing moves, the state folder stays bounded")
			snap := rack.nodeSnapshot()
			size := rack.stateBytes()
			attack("after provisioning", 200000)
			Expect(rack.nodeSnapshot()).To(Equal(snap), "a node's phase or generation changed")
			after := rack.stateBytes()
			fmt.Fprintf(GinkgoWriter, "state folder: %d bytes before the flood, %d after 200,000 DISCOVERs and junk HTTP\n", size, after)
			AddReportEntry("state folder after the flood", fmt.Sprintf("%d bytes (before: %d; bound %d)", after, size, stateBound))
			Expect(after).To(BeNumerically("<", stateBound))
			Expect(after - size).To(BeNumerically("<", floodGrowthBound))

			By("taking a powered-off node's MAC and address")
			victim := rack.nodes[0]
			Expect(rack.racker(2*time.Minute, "power", victim.PrimaryMAC, "off").code).To(Equal(0))
			DeferCleanup(func() { rack.racker(2*time.Minute, "power", victim.PrimaryMAC, "on") })
			Eventually(func() string {
				for _, s := range rack.simStatus() {
					if s.Name == victim.Name {
						return s.Power
					}
				}
				return ""
			}).WithTimeout(2 * time.Minute).WithPolling(3 * time.Second).Should(Equal("off"))
			snap = rack.nodeSnapshot()
			rack.rogue(time.Minute, "take", victim.PrimaryMAC, st[victim.PrimaryMAC].IP+"/24")
			rack.rogue(time.Minute, "dhcp-request", victim.PrimaryMAC+"="+st[victim.PrimaryMAC].IP)
			rack.rogue(5*time.Minute, "fetch-configs", victim.PrimaryMAC)[""].gotNothing("with the victim's address")
			rack.rogue(5*time.Minute, "callbacks", victim.PrimaryMAC)[""].gotNothing("with the victim's address")
			Expect(rack.nodeSnapshot()).To(Equal(snap), "a node's phase or generation changed")
			rack.rogue(time.Minute, "release")
		})
	})
}
