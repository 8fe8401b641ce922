//go:build e2e

package e2e

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/racker/racker/netenv"
)

// releaseRegistry is where the update spec publishes releases: an OCI
// registry listening on the management node's own loopback (inside its
// network namespace), as a local mirror would.
const releaseRegistry = "127.0.0.1:5000/racker"

// startRegistry serves an in-memory OCI registry inside the management
// node's network namespace until the spec ends.
func (r *simRack) startRegistry() {
	GinkgoHelper()
	var ln net.Listener
	Expect(netenv.Do(r.name+"-mgmt", func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:5000")
		return err
	})).To(Succeed())
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(GinkgoWriter, "registry: ", 0)))}
	go srv.Serve(ln)
	DeferCleanup(srv.Close)
}

// installedVersion is what the installed racker on the management node says.
func (r *simRack) installedVersion() string {
	GinkgoHelper()
	res := r.inMgmt(time.Minute, "/opt/bin/racker", "version")
	Expect(res.code).To(Equal(0), res.String())
	return res.stdout
}

// e2eChangelog is the release notes of the update spec's releases.
const e2eChangelog = `# Changelog

## [2.0.0] - 2026-12-20

### Removed
- **Breaking:** a flag nobody uses.

## [1.1.0] - 2026-12-10

### Added
- The 1.1.0 feature.

## [1.0.1] - 2026-12-05

### Fixed
- The 1.0.1 fix.

## [1.0.0] - 2026-12-01

### Added
- The first release.
`

// hostUnit is where the host's systemd would keep a racker-serve unit: an
// install inside the management node must never write it.
const hostUnit = "/etc/systemd/system/racker-serve.service"

// fileStamp says whether a host file exists and when it last changed.
func fileStamp(p string) string {
	st, err := os.Stat(p)
	if err != nil {
		return "absent"
	}
	return st.ModTime().String()
}

func updateSpecs() {
	Context("update", Label("update"), func() {
		It("moves the management node between releases from a local registry, the new version serving each time", func() {
			rack.ensureProvisioned()
			rack.startRegistry()
			hostUnitBefore := fileStamp(hostUnit)
			// A release needs its changelog section; these test releases
			// carry one written here instead of the repository's.
			changes := GinkgoT().TempDir() + "/CHANGELOG.md"
			Expect(os.WriteFile(changes, []byte(e2eChangelog), 0o644)).To(Succeed())
			// Releases are signed. The installed release (from the installer
			// image, make image) pins the key it was signed with, so these
			// releases are signed with that same key (SIGN_KEY's default),
			// as a vendor signs every release with one key.
			key := rack.repo + "/bin/release-signing.pem"
			Expect(key).To(BeAnExistingFile(), "make image writes the signing key the installer image is signed with")
			By("publishing releases 1.0.0, 1.0.1, 1.1.0 and 2.0.0, built on this host as make image builds them and pushed over the management network")
			// 1.0.x carry lokoctl and terraform built from their sources
			// (make image WITH=lokoctl,terraform); 1.1.0 and 2.0.0 do not.
			for _, v := range []string{"1.0.0", "1.0.1", "1.1.0", "2.0.0"} {
				args := []string{"release", "image", "--manifest", rack.repo + "/release/conf.yaml",
					"--changelog", changes, "--version", v, "--registry", releaseRegistry, "--push", "--sign-key", key, "--out", GinkgoT().TempDir() + "/racker.oci.tar"}
				if strings.HasPrefix(v, "1.0.") {
					args = append(args, "--with", "lokoctl,terraform")
				}
				res := rack.onMgmtNet(20*time.Minute, nil, append([]string{rack.bin("racker")}, args...)...)
				Expect(res.code).To(Equal(0), res.String())
			}
			// The release's tools run on the management node, next to racker.
			tools := func(want bool, release string) {
				GinkgoHelper()
				for name, says := range map[string]string{"lokoctl": "v0.9.0", "terraform": "Terraform v0.13.6"} {
					res := rack.inMgmt(time.Minute, "/opt/bin/"+name, "version")
					if !want {
						Expect(res.code).NotTo(Equal(0), "%s still runs after switching to %s, built without it: %s", name, release, res)
						continue
					}
					Expect(res.code).To(Equal(0), res.String())
					Expect(res.stdout).To(HavePrefix(says), "%s version on %s", name, release)
					link := rack.inMgmt(time.Minute, "readlink", "-f", "/opt/bin/"+name)
					Expect(link.stdout).To(Equal("/opt/racker/versions/"+release+"/bin/"+name+"\n"), "%s is %s's", name, release)
				}
			}
			step := func(want string, args ...string) string {
				GinkgoHelper()
				res := rack.racker(10*time.Minute, args...)
				Expect(res.code).To(Equal(0), res.String())
				Expect(rack.installedVersion()).To(ContainSubstring(want), "after racker %s", strings.Join(args, " "))
				// Not the process from before: the one answering on racker
				// serve's port runs the new version, from its version folder.
				exe, version := rack.serving()
				Expect(exe).To(Equal("/opt/racker/versions/"+want+"/bin/racker"), "after racker %s", strings.Join(args, " "))
				Expect(version).To(ContainSubstring(want), "after racker %s", strings.Join(args, " "))
				return res.stdout
			}
			step("1.0.0", "get", "1.0.0", "--registry", releaseRegistry)
			tools(true, "1.0.0")
			out := step("1.0.1", "update") // same major.minor: not 1.1.0
			Expect(out).To(ContainSubstring("- The 1.0.1 fix."), "update shows the changes before it switches")
			Expect(strings.Index(out, "The 1.0.1 fix.")).To(BeNumerically("<", strings.Index(out, "racker 1.0.1 installed")), out)
			tools(true, "1.0.1")
			out = step("2.0.0", "upgrade", "--yes") // newest overall, a major version
			Expect(out).To(ContainSubstring("crosses a major version; breaking changes:"))
			tools(false, "2.0.0")
			step("1.0.1", "rollback")
			tools(true, "1.0.1")

			By("checking the rack is still served and provisioned")
			res := rack.inMgmt(time.Minute, "curl", "-fsS", rack.mgmtURL()+"/healthz")
			Expect(res.code).To(Equal(0), res.String())
			st := rack.status()
			for _, n := range rack.nodes {
				Expect(st[n.PrimaryMAC].Phase).To(Equal("booted"), "node %s", n.Name)
			}
			check := rack.racker(time.Minute, "version", "--check")
			Expect(check.code).To(Equal(0), check.String())
			Expect(check.stdout).To(ContainSubstring("2.0.0"), "version --check names the newer release:\n%s", check)
			fmt.Fprintln(GinkgoWriter, check.stdout)
			Expect(fileStamp(hostUnit)).To(Equal(hostUnitBefore), "the install in the management node touched the host's %s", hostUnit)
		})
	})
}
