//go:build e2e

package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// collectArtifacts saves what a person debugging a failed spec needs: serial
// console logs, Racker's event log and state, racker status, the libvirt
// domain XML and the vBMC and simulator logs. It returns the folder.
func (r *simRack) collectArtifacts(spec string) string {
	base := os.Getenv("E2E_ARTIFACTS")
	if base == "" {
		base = filepath.Join(r.repo, "e2e", "artifacts")
	}
	slug := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(spec, "-")
	dir := filepath.Join(base, time.Now().UTC().Format("20060102-150405")+"-"+strings.Trim(slug, "-"))
	os.MkdirAll(dir, 0o755)
	save := func(name string, content string) {
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}

	save("racker-sim-status.json", r.trySim(time.Minute, "status", "-o", "json").String())
	save("racker-status.txt", r.racker(time.Minute, "status").String())
	save("racker-status.json", r.racker(time.Minute, "status", "-o", "json").String())
	save("racker-state.txt", r.inMgmt(time.Minute, "sh", "-c", "cd /opt/racker-state && for f in $(find . -type f -size -4M); do echo \"=== $f\"; cat \"$f\"; echo; done").String())

	for _, n := range r.nodes {
		if b, err := os.ReadFile(n.ConsoleLog); err == nil {
			save("console-"+n.Name+".log", string(b))
		}
	}
	domains := command(time.Minute, "virsh", "-c", "qemu:///system", "list", "--all", "--name")
	for _, d := range strings.Fields(domains.stdout) {
		if strings.HasPrefix(d, r.name+"-") {
			save("domain-"+d+".xml", command(time.Minute, "virsh", "-c", "qemu:///system", "dumpxml", d).stdout)
		}
	}
	// Every log the simulator keeps (vBMCs, racker serve) lives in its folder.
	simDir := filepath.Join("/var/lib/racker-sim", r.name)
	filepath.WalkDir(simDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".log") {
			if b, err := os.ReadFile(path); err == nil {
				rel, _ := filepath.Rel(simDir, path)
				save("sim-"+strings.ReplaceAll(rel, "/", "_"), string(b))
			}
		}
		return nil
	})
	return dir
}
