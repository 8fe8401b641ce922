//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// simRack drives one simulated rack through the racker-sim and racker
// command lines, exactly as a user types them.
type simRack struct {
	repo  string
	name  string
	nodes []simNode // the nodes besides the management node, from racker-sim status
}

// simNode is a node as `racker-sim status -o json` reports it.
type simNode struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	PrimaryMAC string `json:"primary_mac"`
	BMCMAC     string `json:"bmc_mac"`
	BMCIP      string `json:"bmc_ip"`
	Power      string `json:"power"`
	Boot       string `json:"boot"`
	BMC        string `json:"bmc"` // running, stopped, none (laptop mode)
	Firmware   string `json:"firmware"`
	ConsoleLog string `json:"console_log"`
}

// rackerNode is a node as `racker status -o json` reports it.
type rackerNode struct {
	PrimaryMAC        string `json:"primary_mac"`
	Hostname          string `json:"hostname"`
	Role              string `json:"role"`
	Phase             string `json:"phase"`
	BMCReachable      bool   `json:"bmc_reachable"`
	Power             string `json:"power"`
	BootDevice        string `json:"boot_device"`
	OS                string `json:"os"`
	IP                string `json:"ip"`
	LastEvent         string `json:"last_event"`
	LastEventAt       string `json:"last_event_at"`
	InstallGeneration int    `json:"install_generation"`
}

// result is a finished command.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// command runs a command with a deadline and returns what it printed. Its
// output also goes to the Ginkgo log, so a failure shows what happened.
func command(timeout time.Duration, name string, args ...string) result {
	return commandIn(timeout, "", nil, name, args...)
}

// commandIn is command with stdin and extra environment variables.
func commandIn(timeout time.Duration, stdin string, env []string, name string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	fmt.Fprintf(GinkgoWriter, "$ %s %s\n", name, strings.Join(args, " "))
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	}
	if err != nil && r.code == 0 {
		r.code = -1
		r.stderr += "\n" + err.Error()
	}
	fmt.Fprintf(GinkgoWriter, "%s", indent(r.String()))
	return r
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ") + "\n"
}

// ownRack brings up a rack of a spec's own (named PREFIX and the suite's
// pid), records the time of its sim up as phase, takes it down when the
// spec's container ends, and returns it with its nodes loaded.
func ownRack(prefix, what, phase string, upArgs ...string) *simRack {
	GinkgoHelper()
	r := &simRack{repo: rack0Repo(), name: fmt.Sprintf("%s%d", prefix, os.Getpid()%10000)}
	By("bringing up the rack " + r.name + ": " + what)
	start := time.Now()
	DeferCleanup(func() {
		By("tearing down the rack " + r.name)
		r.sim("down")
	})
	r.sim(append([]string{"up"}, upArgs...)...)
	phases.add(phase, time.Since(start))
	r.nodes = r.simStatus()
	return r
}

func (r *simRack) bin(name string) string { return filepath.Join(r.repo, "bin", name) }

// sim runs racker-sim for this rack and expects success.
func (r *simRack) sim(args ...string) result {
	GinkgoHelper()
	res := r.trySim(15*time.Minute, args...)
	Expect(res.code).To(Equal(0), "racker-sim %s: %s", strings.Join(args, " "), res)
	return res
}

func (r *simRack) trySim(timeout time.Duration, args ...string) result {
	args = append([]string{args[0], "--name", r.name}, args[1:]...)
	return command(timeout, r.bin("racker-sim"), args...)
}

// racker runs racker inside the management node, as an operator would there.
func (r *simRack) racker(timeout time.Duration, args ...string) result {
	return r.inMgmt(timeout, append([]string{"racker"}, args...)...)
}

// inMgmt runs any command inside the management node (its own programs:
// a Flatcar-shaped machine, with Racker from its installer image).
func (r *simRack) inMgmt(timeout time.Duration, args ...string) result {
	return r.trySim(timeout, append([]string{"exec", "--"}, args...)...)
}

// inMgmtInput is inMgmt with stdin.
func (r *simRack) inMgmtInput(timeout time.Duration, stdin string, args ...string) result {
	full := append([]string{"exec", "--name", r.name, "--"}, args...)
	return commandIn(timeout, stdin, nil, r.bin("racker-sim"), full...)
}

// onMgmtNet runs a program of this host inside the management node's
// network namespace only: a tool on a laptop plugged into the rack's
// management network, not something the node itself has (ipmitool, Go).
func (r *simRack) onMgmtNet(timeout time.Duration, env []string, args ...string) result {
	return commandIn(timeout, "", env, "ip", append([]string{"netns", "exec", r.name + "-mgmt"}, args...)...)
}

// serving describes the process that answers racker serve's HTTP port in
// the management node: the executable it runs and what it says its
// version is. That process must be racker-serve's main process.
func (r *simRack) serving() (exe, version string) {
	GinkgoHelper()
	script := `pid=$(ss -Hltnp 'sport = :8080' | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2)
test -n "$pid" || { echo "nothing listens on :8080" >&2; exit 1; }
test "$pid" = "$(systemctl show -p MainPID --value racker-serve.service)" || { echo "the listener $pid is not racker-serve's main process" >&2; exit 1; }
readlink /proc/$pid/exe; /proc/$pid/exe version`
	var res result
	Eventually(func() int { res = r.inMgmt(time.Minute, "sh", "-c", script); return res.code }).
		WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal(0), "racker serve does not answer on :8080")
	lines := strings.SplitN(strings.TrimSpace(res.stdout), "\n", 2)
	Expect(lines).To(HaveLen(2), res.String())
	return lines[0], lines[1]
}

// load reads the rack's nodes from racker-sim status.
func (r *simRack) load() {
	GinkgoHelper()
	r.nodes = r.simStatus()
	Expect(r.nodes).To(HaveLen(3), "the rack has 3 nodes besides the management node")
	firmware := map[string]int{}
	for _, n := range r.nodes {
		firmware[n.Firmware]++
	}
	Expect(firmware).To(HaveKey(ContainSubstring("efi")), "at least one node boots with UEFI: %v", firmware)
}

func (r *simRack) simStatus() []simNode {
	GinkgoHelper()
	res := r.sim("status", "-o", "json")
	var doc struct {
		Name  string    `json:"name"`
		Nodes []simNode `json:"nodes"`
	}
	Expect(json.Unmarshal([]byte(res.stdout), &doc)).To(Succeed(), res.stdout)
	var out []simNode
	for _, n := range doc.Nodes {
		if n.Type != "management" && !strings.HasSuffix(n.Name, "mgmt") {
			out = append(out, n)
		}
	}
	return out
}

// status is `racker status -o json` inside the management node, by primary MAC.
func (r *simRack) status() map[string]rackerNode {
	GinkgoHelper()
	res := r.racker(time.Minute, "status", "-o", "json")
	Expect(res.code).To(Equal(0), res.String())
	var doc struct {
		Nodes []rackerNode `json:"nodes"`
	}
	Expect(json.Unmarshal([]byte(res.stdout), &doc)).To(Succeed(), res.stdout)
	out := map[string]rackerNode{}
	for _, n := range doc.Nodes {
		out[n.PrimaryMAC] = n
	}
	return out
}

// console returns what a node's serial console has printed so far (nothing
// before its first power-on).
func (r *simRack) console(n simNode) string {
	GinkgoHelper()
	b, err := os.ReadFile(n.ConsoleLog)
	if os.IsNotExist(err) {
		return ""
	}
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}
