//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// provisionFlags are the flags every bootstrap and reprovision of the suite
// takes: the simulated rack's UEFI type, and timeouts short enough that a
// fault is noticed within the suite's budget (TCG VMs are slow, but a
// power-on to booted takes under two minutes).
var provisionFlags = []string{"--uefi-types", "uefi", "--netboot-timeout", "3m", "--install-start-timeout", "3m",
	"--install-timeout", "2m", "--boot-timeout", "4m"}

func bootstrapArgs(extra ...string) []string {
	return append(append([]string{"bootstrap", "--os", "testos"}, provisionFlags...), extra...)
}

// background is a command running inside the management node.
type background struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	res  result
}

type lockedWriter struct{ b *background }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	GinkgoWriter.Write(p)
	return w.b.out.Write(p)
}

// startInMgmt starts racker inside the management node without waiting.
func (r *simRack) startRacker(args ...string) *background {
	GinkgoHelper()
	full := append([]string{"exec", "--name", r.name, "--", "racker"}, args...)
	b := &background{cmd: exec.Command(r.bin("racker-sim"), full...), done: make(chan struct{})}
	b.cmd.Stdout, b.cmd.Stderr = lockedWriter{b}, lockedWriter{b}
	fmt.Fprintf(GinkgoWriter, "$ racker-sim %s &\n", strings.Join(full, " "))
	Expect(b.cmd.Start()).To(Succeed())
	go func() {
		b.cmd.Wait()
		b.mu.Lock()
		b.res = result{code: b.cmd.ProcessState.ExitCode(), stdout: b.out.String()}
		b.mu.Unlock()
		close(b.done)
	}()
	DeferCleanup(func() { b.cmd.Process.Kill(); <-b.done })
	return b
}

// wait waits for the command to end and returns its result.
func (b *background) wait(timeout time.Duration) result {
	GinkgoHelper()
	select {
	case <-b.done:
	case <-time.After(timeout):
		Fail(fmt.Sprintf("still running after %s", timeout))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.res
}

// event is one boot-services event (GET /api/v1/events).
type event struct {
	Seq     uint64 `json:"seq"`
	MAC     string `json:"mac"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// mgmtURL is the boot services' management views, on the management
// node's loopback (the internal address is bound to the PXE interface,
// which the management node's own connections never arrive on).
func (r *simRack) mgmtURL() string { return "http://127.0.0.1:8080" }

// events reads the whole event journal through the events API.
func (r *simRack) events() []event {
	GinkgoHelper()
	base := r.mgmtURL()
	var all []event
	after := uint64(0)
	for {
		var page struct {
			Events []event `json:"events"`
		}
		mustJSON(r.inMgmt(time.Minute, "curl", "-fsS", fmt.Sprintf("%s/api/v1/events?after=%d&wait=0s", base, after)), &page)
		if len(page.Events) == 0 {
			return all
		}
		all = append(all, page.Events...)
		after = page.Events[len(page.Events)-1].Seq
	}
}

// count counts a node's events of a kind.
func count(evs []event, mac, kind string) int {
	n := 0
	for _, e := range evs {
		if e.MAC == mac && e.Kind == kind {
			n++
		}
	}
	return n
}

// waitPhase polls racker status until the node is in one of phases.
func (r *simRack) waitPhase(mac string, timeout time.Duration, phases ...string) {
	GinkgoHelper()
	Eventually(func() string { return r.status()[mac].Phase }).WithTimeout(timeout).WithPolling(3*time.Second).
		Should(BeElementOf(phases), "node %s never reached %v", mac, phases)
}

// bootFlags reads a node's boot flags over IPMI with ipmitool on the
// management network, as an operator would check them: (valid,
// persistent, device byte). Flatcar has no ipmitool: it runs from this
// host in the management node's network namespace.
func (r *simRack) bootFlags(n simNode) (valid, persistent bool, device byte) {
	GinkgoHelper()
	user := strings.TrimSpace(r.inMgmt(time.Minute, "cat", "/usr/share/oem/ipmi_user").stdout)
	password := strings.TrimSpace(r.inMgmt(time.Minute, "cat", "/usr/share/oem/ipmi_password").stdout)
	ip := ""
	for _, s := range r.simStatus() {
		if s.Name == n.Name {
			ip = s.BMCIP
		}
	}
	Expect(ip).NotTo(BeEmpty(), "BMC of %s has no address", n.Name)
	res := r.onMgmtNet(time.Minute, []string{"IPMI_PASSWORD=" + password}, "ipmitool", "-I", "lanplus", "-H", ip, "-U", user, "-E",
		"chassis", "bootparam", "get", "5")
	Expect(res.code).To(Equal(0), res.String())
	m := regexp.MustCompile(`Boot parameter data: ([0-9a-fA-F]{10})`).FindStringSubmatch(res.stdout)
	Expect(m).NotTo(BeNil(), res.stdout)
	var b [5]byte
	fmt.Sscanf(m[1], "%02x%02x%02x%02x%02x", &b[0], &b[1], &b[2], &b[3], &b[4])
	return b[0]&0x80 != 0, b[0]&0x40 != 0, b[1]
}

// nodeAPI is a node as the boot services see it (GET /api/v1/nodes).
type nodeAPI struct {
	PrimaryMAC        string `json:"primary_mac"`
	Target            string `json:"target"`
	InstallGeneration int    `json:"install_generation"`
	Phase             string `json:"phase"`
}

func (r *simRack) apiNodes() map[string]nodeAPI {
	GinkgoHelper()
	var doc struct {
		Nodes []nodeAPI `json:"nodes"`
	}
	mustJSON(r.inMgmt(time.Minute, "curl", "-fsS", r.mgmtURL()+"/api/v1/nodes"), &doc)
	out := map[string]nodeAPI{}
	for _, n := range doc.Nodes {
		out[n.PrimaryMAC] = n
	}
	return out
}

// ensureProvisioned runs bootstrap when a node is not booted yet, so a spec
// run alone (make e2e LABELS=…) starts from a provisioned rack.
func (r *simRack) ensureProvisioned() {
	GinkgoHelper()
	st := r.status()
	for _, n := range r.nodes {
		if st[n.PrimaryMAC].Phase != "booted" && st[n.PrimaryMAC].Phase != "ready" {
			res := r.racker(25*time.Minute, bootstrapArgs()...)
			Expect(res.code).To(Equal(0), res.String())
			return
		}
	}
}

// boots counts how often a node's OS started, from its serial console.
func (r *simRack) boots(n simNode) int { return strings.Count(r.console(n), "testos: starting") }

// installs counts the installs a node's console shows (flatcar-install's
// last line, Flatcar's own or the test OS's stand-in).
func (r *simRack) installs(n simNode) int {
	return strings.Count(r.console(n), "Success! Flatcar Container Linux")
}
