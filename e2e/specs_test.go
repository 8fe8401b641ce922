//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
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
	reprovisionSpecs()
	installFaultSpecs()
	rogueSpecs()
	updateSpecs()
})

func factorySpecs() {
	Context("factory", Label("factory"), func() {
		It("passes racker factory check", func() {
			res := rack.racker(time.Minute, "factory", "check")
			Expect(res.code).To(Equal(0), res.String())
			Expect(res.stdout).To(ContainSubstring("rack OK"))
			Expect(res.stdout).To(ContainSubstring("nodes: 3 besides the management node"))
		})

		It("rejects a broken nodes.csv, naming its line", func() {
			oem := copyOEM()
			csv := readFile(filepath.Join(oem, "nodes.csv"))
			lines := strings.Split(csv, "\n")
			// Break the BMC MAC of the second data row, wherever the header is.
			row := dataRows(lines)[1]
			fields := strings.Split(lines[row], ",")
			fields[1] = " 00:11:22:33:44:zz"
			lines[row] = strings.Join(fields, ",")
			Expect(os.WriteFile(filepath.Join(oem, "nodes.csv"), []byte(strings.Join(lines, "\n")), 0o600)).To(Succeed())

			res := rack.racker(time.Minute, "factory", "check", "--oem-dir", oem)
			Expect(res.code).To(Equal(1), res.String())
			Expect(res.stderr).To(ContainSubstring("nodes.csv:%d: BMC MAC: invalid MAC", row+1))
		})

		It("clears state with factory reset", func() {
			state := GinkgoT().TempDir()
			Expect(rack.racker(time.Minute, "plan", "--state-dir", state).code).To(Equal(0))
			Expect(filepath.Join(state, "plan.json")).To(BeAnExistingFile())
			res := rack.racker(time.Minute, "factory", "reset", "--state-dir", state)
			Expect(res.code).NotTo(Equal(0), "reset without a terminal must ask for --yes")
			Expect(filepath.Join(state, "plan.json")).To(BeAnExistingFile())
			res = rack.racker(time.Minute, "factory", "reset", "--yes", "--state-dir", state)
			Expect(res.code).To(Equal(0), res.String())
			Expect(os.ReadDir(state)).To(BeEmpty())
		})
	})
}

// copyOEM copies the management node's OEM folder to a temporary folder the
// management node can read too.
func copyOEM() string {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	for _, f := range []string{"nodes.csv", "ipmi_user", "ipmi_password"} {
		res := rack.inMgmt(time.Minute, "cat", "/usr/share/oem/"+f)
		Expect(res.code).To(Equal(0), res.String())
		Expect(os.WriteFile(filepath.Join(dir, f), []byte(res.stdout), 0o600)).To(Succeed())
	}
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

func readFile(path string) string {
	GinkgoHelper()
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

// mustJSON decodes a command's JSON output.
func mustJSON(res result, v any) {
	GinkgoHelper()
	Expect(res.code).To(Equal(0), res.String())
	Expect(json.Unmarshal([]byte(res.stdout), v)).To(Succeed(), res.stdout)
}
