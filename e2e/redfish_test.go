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

// A rack of its own with one server whose BMC speaks Redfish only (no
// IPMI, no SOL), as many servers sold today ship: racker-sim marks its
// node type bmc_protocol redfish in Racker's node-types.json, as the
// rack's operator would. Its own rack, so the shared rack's specs keep
// their IPMI BMCs; one node, so it costs a bootstrap and a reprovision.
var _ = Describe("a rack with a Redfish-only BMC", Ordered, Label("redfish"), func() {
	var rf *simRack
	var node simNode

	BeforeAll(func() {
		rf = ownRack("rf", "one server, its BMC Redfish-only", "sim up (redfish rack)",
			"--nodes", "1", "--types", "rfonly", "--bmc-protocols", "rfonly=redfish", "--os", "testos")
		Expect(rf.nodes).To(HaveLen(1))
		node = rf.nodes[0]
	})

	It("bootstraps the node with boot override and power over Redfish", func() {
		types := rf.inMgmt(time.Minute, "cat", "/opt/racker-state/node-types.json")
		Expect(types.code).To(Equal(0), types.String())
		Expect(types.stdout).To(MatchRegexp(`"rfonly":\s*\{\s*"bmc_protocol":\s*"redfish"`))

		res := rf.racker(15*time.Minute, bootstrapArgs()...)
		Expect(res.code).To(Equal(0), res.String())
		Expect(rf.status()[node.PrimaryMAC].Phase).To(Equal("booted"))
		Expect(rf.installs(node)).To(Equal(1))

		// The vBMC serves no IPMI: what it did, it was asked over Redfish.
		log := vbmcLog(node)
		Expect(log).NotTo(ContainSubstring("IPMI listening"))
		Expect(log).To(MatchRegexp(`boot override set over Redfish".* enabled=Once target=Pxe`), "PXE for the next boot only")
		Expect(log).To(MatchRegexp(`boot override set over Redfish".* enabled=Continuous target=Hdd`), "the disk, persistent, after the install")
		Expect(log).To(ContainSubstring("Redfish reset"), "power went through ComputerSystem.Reset")
		// Read back over Redfish, as racker bootdev shows it.
		boot := rf.racker(time.Minute, "bootdev", node.PrimaryMAC)
		Expect(boot.code).To(Equal(0), boot.String())
		Expect(boot.stdout).To(HavePrefix("disk persistent"))
	})

	It("reports Redfish and the server's facts in racker bmc diag", func() {
		res := rf.racker(time.Minute, "bmc", "diag", node.PrimaryMAC, "-o", "json")
		Expect(res.code).To(Equal(0), res.String())
		var d struct {
			Driver, Protocol, Manufacturer, Model, TLS, Power string
			Serial                                            string `json:"serial_number"`
			BIOS                                              string `json:"bios_version"`
			BootMode                                          string `json:"boot_mode"`
			SOL                                               bool   `json:"sol_available"`
		}
		Expect(json.Unmarshal([]byte(res.stdout), &d)).To(Succeed(), res.stdout)
		Expect(d.Driver).To(Equal("redfish"))
		Expect(d.Protocol).To(HavePrefix("Redfish"))
		Expect(d.Manufacturer).NotTo(BeEmpty())
		Expect(d.Model).NotTo(BeEmpty())
		Expect(d.Serial).NotTo(BeEmpty())
		Expect(d.BIOS).NotTo(BeEmpty())
		Expect(d.BootMode).To(Equal("Legacy"))
		Expect(d.TLS).To(HavePrefix("pinned sha256:"), "the certificate pinned on first use")
		Expect(d.Power).To(Equal("on"))
		Expect(d.SOL).To(BeFalse())
		pins := rf.inMgmt(time.Minute, "cat", "/opt/racker-state/bmc-pins.json")
		Expect(pins.code).To(Equal(0), "the pin is kept in the state folder: %s", pins)
		Expect(pins.stdout).To(ContainSubstring(strings.TrimPrefix(d.TLS, "pinned ")))
		// The old name still works.
		Expect(rf.racker(time.Minute, "ipmi", "diag", node.PrimaryMAC).stdout).To(ContainSubstring("driver:      redfish"))
		// No IPMI, so no serial console, said plainly.
		con := rf.racker(time.Minute, "console", node.PrimaryMAC)
		Expect(con.code).NotTo(Equal(0))
		Expect(con.stderr).To(ContainSubstring("no serial console is available"))
	})

	It("reprovisions the node over Redfish", func() {
		before := rf.status()[node.PrimaryMAC]
		pxeBefore := strings.Count(vbmcLog(node), "enabled=Once target=Pxe")
		res := rf.racker(15*time.Minute, append([]string{"reprovision", node.PrimaryMAC, "--yes"}, provisionFlags...)...)
		Expect(res.code).To(Equal(0), res.String())
		after := rf.status()[node.PrimaryMAC]
		Expect(after.Phase).To(Equal("booted"))
		Expect(after.InstallGeneration).To(BeNumerically(">", before.InstallGeneration))
		Expect(rf.installs(node)).To(Equal(2), "the console shows a second install")
		Expect(strings.Count(vbmcLog(node), "enabled=Once target=Pxe")).To(BeNumerically(">", pxeBefore), "PXE set again over Redfish")
	})
})

// vbmcLog is what a server's virtual BMC logged (beside its console log).
func vbmcLog(n simNode) string {
	GinkgoHelper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(n.ConsoleLog), "vbmc.log"))
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}
