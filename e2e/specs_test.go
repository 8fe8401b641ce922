//go:build e2e

package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The specs run in this order on one rack; each states what it needs, so a
// label subset (make e2e LABELS=reprovision) still works: bootstrap is
// idempotent and is re-run where a spec needs a provisioned rack.
var _ = Describe("a simulated rack", Ordered, func() {
	factorySpecs()
	faultAtStartSpecs()
	bootstrapSpecs()
	strictSpecs()
	reprovisionSpecs()
	installFaultSpecs()
	rogueSpecs()
	operatorSpecs()
	updateSpecs()
	lifecycleSpecs()
	uiSpecs()
})

func factorySpecs() {
	Context("factory", Label("factory"), func() {
		It("runs Racker on a Flatcar-shaped management node, installed only from its installer image", func() {
			// The node has no iPXE, QEMU, dnsmasq or Go of the host's, and a read-only /usr.
			res := rack.inMgmt(time.Minute, "sh", "-c", `for p in /usr/lib/ipxe /usr/bin/qemu-system-x86_64 /usr/sbin/dnsmasq /usr/bin/go /usr/bin/ipmitool; do
  test -e $p && echo "unexpected: $p"; done; touch /usr/racker-sim-probe 2>/dev/null && echo "unexpected: /usr is writable"; echo checked`)
			Expect(res.code).To(Equal(0), res.String())
			Expect(res.stdout).To(Equal("checked\n"), "the management node has things a Flatcar host has not")
			// racker serve runs from the installed unit, out of /opt/racker/versions.
			exe, version := rack.serving()
			Expect(exe).To(MatchRegexp(`^/opt/racker/versions/[^/]+/bin/racker$`))
			Expect(version).To(ContainSubstring(filepath.Base(filepath.Dir(filepath.Dir(exe)))))
			res = rack.inMgmt(time.Minute, "systemctl", "is-enabled", "racker-serve.service")
			Expect(res.code).To(Equal(0), res.String())
			Expect(rack.inMgmt(time.Minute, "readlink", "/opt/bin/racker").stdout).To(Equal("../racker/current/bin/racker\n"))
		})

		It("passes racker factory check", func() {
			res := rack.racker(time.Minute, "factory", "check")
			Expect(res.code).To(Equal(0), res.String())
			Expect(res.stdout).To(ContainSubstring("rack OK"))
			Expect(res.stdout).To(ContainSubstring("nodes: 3 besides the management node"))
		})

		It("rejects a broken nodes.csv, naming its line", func() {
			oem := copyOEM()
			csv := rack.inMgmt(time.Minute, "cat", oem+"/nodes.csv").stdout
			lines := strings.Split(csv, "\n")
			// Break the BMC MAC of the second data row, wherever the header is.
			row := dataRows(lines)[1]
			fields := strings.Split(lines[row], ",")
			fields[1] = " 00:11:22:33:44:zz"
			lines[row] = strings.Join(fields, ",")
			res := rack.inMgmtInput(time.Minute, strings.Join(lines, "\n"), "sh", "-c", "cat > "+oem+"/nodes.csv")
			Expect(res.code).To(Equal(0), res.String())

			res = rack.racker(time.Minute, "factory", "check", "--oem-dir", oem)
			Expect(res.code).To(Equal(1), res.String())
			Expect(res.stderr).To(ContainSubstring("nodes.csv:%d: BMC MAC: invalid MAC", row+1))
		})

		It("clears state with factory reset", func() {
			state := mgmtTempDir()
			exists := func(p string) bool { return rack.inMgmt(time.Minute, "test", "-e", p).code == 0 }
			Expect(rack.racker(time.Minute, "plan", "--state-dir", state).code).To(Equal(0))
			Expect(exists(state + "/plan.json")).To(BeTrue())
			res := rack.racker(time.Minute, "factory", "reset", "--state-dir", state)
			Expect(res.code).NotTo(Equal(0), "reset without a terminal must ask for --yes")
			Expect(exists(state + "/plan.json")).To(BeTrue())
			res = rack.racker(time.Minute, "factory", "reset", "--yes", "--state-dir", state)
			Expect(res.code).To(Equal(0), res.String())
			Expect(rack.inMgmt(time.Minute, "ls", "-A", state).stdout).To(BeEmpty())
		})
	})
}

// copyOEM copies the management node's OEM folder to a temporary folder in
// the management node, and returns its path there.
func copyOEM() string {
	GinkgoHelper()
	dir := mgmtTempDir()
	res := rack.inMgmt(time.Minute, "sh", "-c", "cp -p /usr/share/oem/nodes.csv /usr/share/oem/ipmi_user /usr/share/oem/ipmi_password "+dir)
	Expect(res.code).To(Equal(0), res.String())
	return dir
}

// mgmtTempDir makes a temporary folder in the management node (on its
// /tmp), removed when the spec ends.
func mgmtTempDir() string {
	GinkgoHelper()
	res := rack.inMgmt(time.Minute, "mktemp", "-d")
	Expect(res.code).To(Equal(0), res.String())
	dir := strings.TrimSpace(res.stdout)
	DeferCleanup(func() { rack.inMgmt(time.Minute, "rm", "-rf", dir) })
	return dir
}

// dataRows returns the indexes of nodes.csv lines that hold a node.
func dataRows(lines []string) []int {
	var out []int
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(strings.ToLower(t), "primary") {
			continue
		}
		out = append(out, i)
	}
	return out
}

// mustJSON decodes a command's JSON output.
func mustJSON(res result, v any) {
	GinkgoHelper()
	Expect(res.code).To(Equal(0), res.String())
	Expect(json.Unmarshal([]byte(res.stdout), v)).To(Succeed(), res.stdout)
}
