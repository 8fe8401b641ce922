//go:build e2e

package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// lifecycleSpecs: the rack after its first day. A server is added and only
// it is provisioned; a broken one is swapped for a blank machine with new
// MACs that takes its place; the added one is retired and taken out. It
// runs last: it changes the shared rack's machines (n1 gets new MACs), and
// leaves it with the same three servers, provisioned.
func lifecycleSpecs() {
	Context("lifecycle", Label("lifecycle"), func() {
		It("adds a server, replaces a broken one and retires one on a running rack", func() {
			rack.ensureProvisioned()
			before := rack.status()
			bootsBefore := map[string]int{}
			for _, n := range rack.nodes {
				bootsBefore[n.Name] = rack.boots(n)
			}

			By("racker-sim add, then racker bootstrap: only the new server is provisioned")
			rack.sim("add", "--types", "bios")
			added := rack.newNode()
			res := rack.racker(15*time.Minute, bootstrapArgs()...)
			Expect(res.code).To(Equal(0), res.String())
			st := rack.status()
			Expect(st[added.PrimaryMAC].Phase).To(Equal("booted"))
			Expect(rack.console(added)).To(ContainSubstring("hostname=" + st[added.PrimaryMAC].Hostname))
			for _, n := range rack.nodes {
				Expect(rack.boots(n)).To(Equal(bootsBefore[n.Name]), "%s was not rebooted by the addition", n.Name)
				Expect(st[n.PrimaryMAC].Hostname).To(Equal(before[n.PrimaryMAC].Hostname))
				Expect(st[n.PrimaryMAC].IP).To(Equal(before[n.PrimaryMAC].IP))
				Expect(st[n.PrimaryMAC].Role).To(Equal(before[n.PrimaryMAC].Role), "an addition changes no role")
			}

			By("racker-sim replace n1, then the racker replace it prints")
			old := rack.nodes[0]
			res = rack.sim("replace", old.Name)
			cmd := regexp.MustCompile(`racker replace (\S+) (\S+) (\S+) (\S+)`).FindStringSubmatch(res.stdout)
			Expect(cmd).NotTo(BeNil(), "racker-sim replace prints the racker replace to run:\n%s", res.stdout)
			res = rack.racker(15*time.Minute, append([]string{"replace", cmd[1], cmd[2], cmd[3], cmd[4]}, provisionFlags...)...)
			Expect(res.code).To(Equal(0), res.String())
			st = rack.status()
			Expect(st).NotTo(HaveKey(old.PrimaryMAC), "the old machine is gone from racker status")
			repl := st[cmd[2]]
			Expect(repl.Phase).To(Equal("booted"))
			Expect(repl.Hostname).To(Equal(before[old.PrimaryMAC].Hostname))
			Expect(repl.IP).To(Equal(before[old.PrimaryMAC].IP))
			Expect(repl.Role).To(Equal(before[old.PrimaryMAC].Role))

			By("racker retire the added server, then racker-sim remove it")
			res = rack.racker(5*time.Minute, "retire", st[added.PrimaryMAC].Hostname)
			Expect(res.code).To(Equal(0), res.String())
			for _, n := range rack.simStatus() {
				if n.Name == added.Name {
					Expect(n.Power).To(Equal("off"), "a retired server is powered off")
				}
			}
			Expect(rack.status()).NotTo(HaveKey(added.PrimaryMAC), "the retired server is gone from racker status")
			Expect(rack.planHostnames()).NotTo(ContainElement(st[added.PrimaryMAC].Hostname), "and from the plan")
			rack.sim("remove", added.Name)
			rack.load()
			Expect(rack.nodes[0].PrimaryMAC).To(Equal(cmd[2]))
		})
	})
}

// newNode is the server racker-sim status lists that rack.nodes does not.
func (r *simRack) newNode() simNode {
	GinkgoHelper()
	known := map[string]bool{}
	for _, n := range r.nodes {
		known[n.Name] = true
	}
	for _, n := range r.simStatus() {
		if !known[n.Name] {
			return n
		}
	}
	Fail("racker-sim status lists no new server")
	return simNode{}
}

// planHostnames are the hostnames of `racker plan -o json`.
func (r *simRack) planHostnames() []string {
	GinkgoHelper()
	res := r.racker(time.Minute, "plan", "-o", "json")
	Expect(res.code).To(Equal(0), res.String())
	var p struct {
		Nodes []struct {
			Hostname string `json:"hostname"`
		} `json:"nodes"`
	}
	Expect(json.Unmarshal([]byte(res.stdout), &p)).To(Succeed(), res.stdout)
	var out []string
	for _, n := range p.Nodes {
		out = append(out, strings.TrimSpace(n.Hostname))
	}
	return out
}
