//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// uiSpecs: racker serve's rack view, opened in Debian's Chromium through
// racker-sim ui, during one run of Racker and after it: the run provisions
// some nodes and fails another's install (racker-sim fault install-fail),
// so one run shows the phases changing live, a node's story and a failed
// node's reason. On a fresh rack (make e2e LABELS=ui) the run is the
// bootstrap itself; after the other specs, which provisioned the rack, it
// reprovisions only the failing node (one install of the suite's budget).
// The spec leaves that node excluded (a later bootstrap takes it again).
func uiSpecs() {
	Context("rack view", Label("ui"), func() {
		It("shows every node live in a browser during a run and after it, a node's story on click, a failed node's reason", func() {
			art := artifactDir("rack-view")
			url := rack.forwardUI()
			page := newPage()
			shot := func(name string) {
				GinkgoHelper()
				png, err := chromedp.Run(page, chromedp.FullScreenshot(100))
				Expect(err).NotTo(HaveOccurred())
				Expect(os.WriteFile(filepath.Join(art, name+".png"), png, 0o644)).To(Succeed())
				fmt.Fprintf(GinkgoWriter, "screenshot: %s\n", filepath.Join(art, name+".png"))
			}
			By("opening " + url)
			Expect(chromedp.Do(page, chromedp.Navigate(url))).To(Succeed())
			pagePoll(page, `document.documentElement.dataset.live === "1"`, time.Minute)
			drawn := pagePhases(page)
			for _, n := range rack.nodes {
				Expect(drawn).To(HaveKey(n.PrimaryMAC), "node %s is drawn", n.Name)
			}
			Expect(drawn).To(HaveLen(len(rack.nodes)+1), "every server and the management node")
			_, err := chromedp.Run(page, chromedp.Evaluate[bool](`window.notReloaded = true`))
			Expect(err).NotTo(HaveOccurred())

			failing := rack.nodes[2]
			rack.sim("fault", failing.Name, "install-fail")
			DeferCleanup(func() { rack.sim("fault", failing.Name, "install-ok") })
			var run *background
			var watched []simNode // the nodes the run provisions
			if rack.anyBooted() {
				By("reprovisioning " + failing.Name + " (whose install fails) and watching the page")
				run = rack.startRacker(append([]string{"reprovision", failing.PrimaryMAC, "--yes", "--on-failure", "exclude"}, provisionFlags...)...)
			} else {
				watched = []simNode{rack.nodes[0], rack.nodes[1]}
				By("running racker bootstrap (" + failing.Name + "'s install fails) and watching the page")
				run = rack.startRacker(bootstrapArgs("--on-failure", "exclude")...)
			}
			seen := map[string]map[string]bool{}
			during := false
			for running := true; running; {
				select {
				case <-run.done:
					running = false
				case <-time.After(2 * time.Second):
				}
				for mac, ph := range pagePhases(page) {
					if seen[mac] == nil {
						seen[mac] = map[string]bool{}
					}
					seen[mac][ph] = true
					if !during && (ph == "installing" || ph == "netbooting") {
						during = true
						shot("1-during-run")
					}
				}
			}
			res := run.wait(time.Minute)
			Expect(res.code).NotTo(Equal(0), "%s's install failed, so the run exits non-zero: %s", failing.Name, res)
			st := rack.statusFull()
			Expect(st[failing.PrimaryMAC].Phase).To(Equal("excluded"), res.String())
			for _, n := range watched {
				Expect(st[n.PrimaryMAC].Phase).To(Equal("booted"), "%s: %s", n.Name, res)
				pagePoll(page, fmt.Sprintf(`document.querySelector('.unit[data-mac=%q]').classList.contains('p-booted')`, n.PrimaryMAC), time.Minute)
			}
			pagePoll(page, fmt.Sprintf(`document.querySelector('.unit[data-mac=%q]').classList.contains('p-excluded')`, failing.PrimaryMAC), time.Minute)
			notReloaded, err := chromedp.Run(page, chromedp.Evaluate[bool](`window.notReloaded === true`))
			Expect(err).NotTo(HaveOccurred())
			Expect(notReloaded).To(BeTrue(), "the page was never reloaded")
			for _, n := range append(watched, failing) {
				var phases []string
				for p := range seen[n.PrimaryMAC] {
					phases = append(phases, p)
				}
				sort.Strings(phases)
				Expect(len(phases)).To(BeNumerically(">=", 3), "the page showed %s in phases %v as they changed", n.Name, phases)
			}
			for mac, ph := range pagePhases(page) {
				if s, ok := st[mac]; ok {
					Expect(ph).To(Equal(s.Phase), "the page and racker status agree on %s", mac)
				}
			}
			Expect(during).To(BeTrue(), "the page showed a node netbooting or installing while the run went on")
			shot("2-after-run")

			By("clicking a node: its transitions and console tail")
			n := rack.nodes[0] // provisioned by this run or an earlier one
			openNode(page, n.PrimaryMAC)
			trans := pageText(page, "#d-trans")
			Expect(trans).To(ContainSubstring("installing"))
			Expect(trans).To(ContainSubstring("booted"))
			console := pageText(page, "#d-console")
			if rack.hasConsoleLog(st[n.PrimaryMAC].Hostname) {
				Expect(console).To(ContainSubstring("testos"), "the recorded console's tail")
			} else {
				Expect(pageText(page, "#d-cnote")).To(ContainSubstring("No console recorded"))
				Expect(console).To(ContainSubstring("booted"), "the boot-services events stand in for the console")
			}
			shot("3-node-panel")

			By("clicking the failed node: its reason")
			reason := st[failing.PrimaryMAC].Reason
			Expect(reason).To(ContainSubstring("the node reported a failure"))
			openNode(page, failing.PrimaryMAC)
			Expect(pageText(page, "#d-reason")).To(Equal(reason))
			shot("4-failed-node")
		})
	})
}

// rackerNodeFull is racker status -o json with the failure fields.
type rackerNodeFull struct {
	rackerNode
	Reason string `json:"reason"`
}

func (r *simRack) statusFull() map[string]rackerNodeFull {
	GinkgoHelper()
	res := r.racker(time.Minute, "status", "-o", "json")
	Expect(res.code).To(Equal(0), res.String())
	var doc struct {
		Nodes []rackerNodeFull `json:"nodes"`
	}
	Expect(json.Unmarshal([]byte(res.stdout), &doc)).To(Succeed())
	out := map[string]rackerNodeFull{}
	for _, n := range doc.Nodes {
		out[n.PrimaryMAC] = n
	}
	return out
}

// anyBooted says whether an earlier spec provisioned the rack.
func (r *simRack) anyBooted() bool {
	GinkgoHelper()
	st := r.status()
	for _, n := range r.nodes {
		if st[n.PrimaryMAC].Phase == "booted" || st[n.PrimaryMAC].Phase == "ready" {
			return true
		}
	}
	return false
}

// hasConsoleLog says whether bootstrap recorded the node's console
// (STATE/console/HOSTNAME.log).
func (r *simRack) hasConsoleLog(host string) bool {
	return r.inMgmt(time.Minute, "test", "-s", "/opt/racker-state/console/"+host+".log").code == 0
}

// forwardUI runs racker-sim ui on a free port of this machine and returns
// the URL it prints.
func (r *simRack) forwardUI() string {
	GinkgoHelper()
	cmd := exec.Command(r.bin("racker-sim"), "ui", "--name", r.name, "--listen", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	cmd.Stderr = GinkgoWriter
	Expect(cmd.Start()).To(Succeed())
	DeferCleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	Expect(err).NotTo(HaveOccurred(), "racker-sim ui printed no URL")
	fmt.Fprint(GinkgoWriter, "racker-sim ui: "+line)
	m := regexp.MustCompile(`http://\S+/`).FindString(line)
	Expect(m).NotTo(BeEmpty(), line)
	return m
}

// newPage starts Debian's Chromium, headless (no sandbox as root, no
// background networking: this machine has no network beyond the rack).
func newPage() context.Context {
	GinkgoHelper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			Fail("chromium is missing (make deps installs it)")
		}
		Skip("chromium is missing (make deps installs it); this spec runs in CI")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(GinkgoT().TempDir()), chromedp.WindowSize(1500, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	DeferCleanup(func() { cancel(); cancelA() })
	Expect(chromedp.Do(ctx)).To(Succeed())
	return ctx
}

func pagePoll(page context.Context, js string, timeout time.Duration) {
	GinkgoHelper()
	_, err := chromedp.Run(page, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(250*time.Millisecond)))
	Expect(err).NotTo(HaveOccurred(), "waiting in the page for: %s", js)
}

// pagePhases reads each unit's phase off the drawing.
func pagePhases(page context.Context) map[string]string {
	GinkgoHelper()
	m, err := chromedp.Run(page, chromedp.Evaluate[map[string]string](
		`Object.fromEntries([...document.querySelectorAll('#rack .unit')].map(u => [u.dataset.mac, u.querySelector('[data-f=phase]').textContent]))`))
	Expect(err).NotTo(HaveOccurred())
	return m
}

func pageText(page context.Context, sel string) string {
	GinkgoHelper()
	s, err := chromedp.Run(page, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).textContent`, sel)))
	Expect(err).NotTo(HaveOccurred())
	return strings.TrimSpace(s)
}

// openNode clicks a node's unit and waits for its panel.
func openNode(page context.Context, mac string) {
	GinkgoHelper()
	Expect(chromedp.Do(page, chromedp.Click(chromedp.CSS(fmt.Sprintf(`.unit[data-mac=%q] a`, mac))))).To(Succeed())
	pagePoll(page, fmt.Sprintf(`document.querySelector('#detail').dataset.loaded === %q`, mac), 30*time.Second)
}

// artifactDir is where a spec keeps what it shows (screenshots), beside the
// artifacts of failed specs: E2E_ARTIFACTS, else e2e/artifacts.
func artifactDir(name string) string {
	GinkgoHelper()
	base := os.Getenv("E2E_ARTIFACTS")
	if base == "" {
		base = filepath.Join(rack.repo, "e2e", "artifacts")
	}
	dir := filepath.Join(base, time.Now().UTC().Format("20060102-150405")+"-"+name)
	Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	AddReportEntry("screenshots", dir)
	return dir
}
