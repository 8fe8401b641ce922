//go:build e2e

// Package e2e is the end-to-end suite: it brings up a simulated rack with
// racker-sim (management node + 3 nodes, one UEFI), drives it with racker as a
// user would, and asserts on what a user would check. The management node
// is Flatcar-shaped and gets Racker only from its installer image (the
// newest bin/racker-VERSION.oci.tar): commands run there with its own
// programs (racker-sim exec), and tools Flatcar lacks (ipmitool, Go) run
// from this host in its network namespace. Run it with `make e2e` (root,
// libvirtd, QEMU); `make e2e LABELS=bootstrap` runs a subset. The redfish
// label brings up a second, one-server rack whose BMC speaks Redfish only
// (redfish_test.go).
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "racker e2e")
}

// rack is the simulated rack shared by every spec.
var rack *simRack

// twoDiskType is the node type whose servers get a 4 GB and a 40 GB disk
// (the others two of 10 GB): Flatcar's disk rule must pick the 40 GB one.
const twoDiskType = "uefi"

var _ = BeforeSuite(func() {
	if os.Geteuid() != 0 {
		Fail("the e2e suite needs root (network namespaces, bridges, libvirt)")
	}
	repo, err := filepath.Abs("..")
	Expect(err).NotTo(HaveOccurred())
	for _, f := range []string{"bin/racker", "bin/racker-sim", "bin/testos/current/flatcar_production_image.bin.bz2", "bin/mgmtos/.stamp"} {
		Expect(filepath.Join(repo, f)).To(BeAnExistingFile(), "%s is missing: `make e2e` builds it", f)
	}
	images, _ := filepath.Glob(filepath.Join(repo, "bin", "racker-*.oci.tar"))
	Expect(images).NotTo(BeEmpty(), "no installer image bin/racker-VERSION.oci.tar: `make e2e` builds it (make image)")
	if f := GinkgoLabelFilter(); f == "laptop" || f == "lokomotive" {
		return // those specs bring their own racks; do not build the shared one
	}
	rack = &simRack{
		repo: repo,
		name: fmt.Sprintf("e2e%d", os.Getpid()%10000),
	}
	By("bringing up the simulated rack " + rack.name)
	start := time.Now()
	DeferCleanup(func() {
		By("tearing down the simulated rack " + rack.name)
		rack.sim("down")
	})
	rack.sim("up", "--nodes", "3", "--types", "bios,uefi", "--uefi-types", "uefi", "--os", "testos",
		"--disks", twoDiskType+"=4G,40G")
	phases.add("sim up", time.Since(start))
	rack.load()
})

var _ = ReportAfterEach(func(r SpecReport) {
	phases.add(r.LeafNodeText, r.RunTime)
	if r.Failed() && rack != nil {
		dir := rack.collectArtifacts(r.LeafNodeText)
		fmt.Fprintf(GinkgoWriter, "artifacts of the failed spec %q: %s\n", r.LeafNodeText, dir)
		AddReportEntry("artifacts", dir)
	}
})

var _ = ReportAfterSuite("wall time per phase", func(r Report) {
	phases.print(os.Stdout, r.RunTime)
})
