package ignition

import (
	"encoding/base64"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/ignition/v2/config/v3_4"
	"github.com/coreos/ignition/v2/config/v3_4/types"
)

const (
	testMAC   = "00:11:22:33:44:10"
	testBase  = "http://172.24.213.1:8080"
	testToken = "0123456789abcdef0123456789abcdef"
)

func parse(t *testing.T, raw []byte) types.Config {
	t.Helper()
	cfg, rpt, err := v3_4.Parse(raw)
	if err != nil {
		t.Fatalf("Ignition rejects the config: %v %s\n%s", err, rpt.String(), raw)
	}
	if cfg.Ignition.Version != "3.4.0" {
		t.Fatalf("version %q", cfg.Ignition.Version)
	}
	return cfg
}

func fileData(t *testing.T, cfg types.Config, path string) (string, int) {
	t.Helper()
	for _, f := range cfg.Storage.Files {
		if f.Path == path {
			src := *f.Contents.Source
			b64, ok := strings.CutPrefix(src, "data:;base64,")
			if !ok {
				t.Fatalf("%s: source %q is not a base64 data URL", path, src)
			}
			b, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				t.Fatal(err)
			}
			return string(b), *f.Mode
		}
	}
	t.Fatalf("no file %s in config", path)
	return "", 0
}

func unitText(t *testing.T, cfg types.Config, name string) string {
	t.Helper()
	for _, u := range cfg.Systemd.Units {
		if u.Name == name {
			if u.Enabled == nil || !*u.Enabled {
				t.Errorf("unit %s is not enabled", name)
			}
			return *u.Contents
		}
	}
	t.Fatalf("no unit %s", name)
	return ""
}

func TestInstallConfigLayout(t *testing.T) {
	raw, err := Install(InstallParams{MAC: "00-11-22-33-44-10", BaseURL: testBase + "/", OS: "testos", Version: "current", Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, raw)
	script, mode := fileData(t, cfg, "/opt/racker/install.sh")
	if mode != 0o755 {
		t.Errorf("install.sh mode %o", mode)
	}
	for _, want := range []string{"#!/bin/sh", "MAC='" + testMAC + "'", "EVENTS='" + testBase + "/api/v1/events'",
		"BASE='" + testBase + "/assets/testos'", "VERSION='current'", "flatcar-install -s -i /opt/racker/boot.ign", "WIPE_ALL='no'", "systemctl reboot",
		"TOKEN='" + testToken + "'", `-H "Authorization: Bearer $TOKEN"`} {
		if !strings.Contains(script, want) {
			t.Errorf("install.sh lacks %q", want)
		}
	}
	stub, _ := fileData(t, cfg, "/opt/racker/boot.ign")
	stubCfg := parse(t, []byte(stub))
	if got := *stubCfg.Ignition.Config.Replace.Source; got != testBase+"/ignition?mac="+testMAC+"&phase=boot" {
		t.Errorf("boot stub replace source %q", got)
	}
	if h := stubCfg.Ignition.Config.Replace.HTTPHeaders; len(h) != 1 || h[0].Name != "Authorization" || h[0].Value == nil || *h[0].Value != "Bearer "+testToken {
		t.Errorf("boot stub presents no token: %+v", h)
	}
	u := unitText(t, cfg, "racker-install.service")
	if !strings.Contains(u, "Type=oneshot") || !strings.Contains(u, "ExecStart=/opt/racker/install.sh\n") {
		t.Errorf("install unit:\n%s", u)
	}
}

func TestInstallRejectsUnsafeValues(t *testing.T) {
	bad := []InstallParams{
		{MAC: "zz", BaseURL: testBase, OS: "testos", Version: "current", Token: testToken},
		{MAC: testMAC, BaseURL: "http://x/'; rm -rf /", OS: "testos", Version: "current", Token: testToken},
		{MAC: testMAC, BaseURL: testBase, OS: "test os", Version: "current", Token: testToken},
		{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "current", Disk: "/dev/sda; reboot", Token: testToken},
		{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "current"},
		{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "current", Token: "abc'; reboot; echo 0123456789"},
	}
	for _, p := range bad {
		if _, err := Install(p); err == nil {
			t.Errorf("Install(%+v) accepted", p)
		}
	}
}

func bootParams() BootParams {
	return BootParams{
		MAC: testMAC, BaseURL: testBase, Hostname: "racker-controller-1",
		Address: netip.MustParsePrefix("172.24.213.10/24"),
		SSHKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl racker\n"},
		Labels:  map[string]string{"role": "controller", "node_type": "red", "storage": "false"},
		Token:   testToken,
	}
}

func TestBootConfigLayout(t *testing.T) {
	raw, err := Boot(bootParams())
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, raw)
	if h, _ := fileData(t, cfg, "/etc/hostname"); h != "racker-controller-1\n" {
		t.Errorf("hostname %q", h)
	}
	nw, _ := fileData(t, cfg, "/etc/systemd/network/00-internal.network")
	if !strings.Contains(nw, "MACAddress="+testMAC) || !strings.Contains(nw, "Address=172.24.213.10/24") {
		t.Errorf("network file:\n%s", nw)
	}
	if l, _ := fileData(t, cfg, "/etc/racker/labels"); l != "node_type=red\nrole=controller\nstorage=false\n" {
		t.Errorf("labels %q", l)
	}
	if len(cfg.Passwd.Users) != 1 || cfg.Passwd.Users[0].Name != "core" || len(cfg.Passwd.Users[0].SSHAuthorizedKeys) != 1 ||
		strings.HasSuffix(string(cfg.Passwd.Users[0].SSHAuthorizedKeys[0]), "\n") {
		t.Errorf("users %+v", cfg.Passwd.Users)
	}
	u := unitText(t, cfg, "racker-booted.service")
	want := `ExecStart=/usr/bin/curl -fsS -X POST -H "Content-Type: application/json" -H "Authorization: Bearer ` + testToken + `" --data-binary '{"mac":"` + testMAC + `","event":"booted"}' ` + testBase + "/api/v1/events\n"
	if !strings.Contains(u, want) {
		t.Errorf("booted unit lacks\n%s\ngot\n%s", want, u)
	}
}

func TestBootConfigMergesSnippets(t *testing.T) {
	p := bootParams()
	p.Snippets = []Snippet{
		{Name: "types/red.ign", JSON: []byte(`{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,red"}},{"path":"/etc/type","contents":{"source":"data:,red"}}]}}`)},
		{Name: "nodes/x.ign", JSON: []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","contents":{"source":"data:,node"}}]}}`)},
	}
	raw, err := Boot(p)
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, raw)
	got := map[string]string{}
	for _, f := range cfg.Storage.Files {
		got[f.Path] = *f.Contents.Source
	}
	if got["/etc/motd"] != "data:,node" || got["/etc/type"] != "data:,red" || got["/etc/hostname"] == "" {
		t.Errorf("merged files %v", got)
	}
	p.Snippets = []Snippet{{Name: "nodes/bad.ign", JSON: []byte(`{"ignition":{"version":"9.9.9"}}`)}}
	if _, err := Boot(p); err == nil || !strings.Contains(err.Error(), "nodes/bad.ign") {
		t.Errorf("bad snippet: %v, want an error naming it", err)
	}
}

func TestBootConfigNeedsSSHKey(t *testing.T) {
	p := bootParams()
	p.SSHKeys = nil
	if _, err := Boot(p); err == nil || !strings.Contains(err.Error(), "gen-ssh-key") {
		t.Errorf("Boot without keys: %v", err)
	}
}

// The install script run by a real /bin/sh against a fake /sys/block tree
// and stub commands (fakes: flatcar-install, wipefs, curl, systemctl only
// record their arguments). PATH holds nothing but the stubs and cat, so no
// real wipefs can ever be reached.
func TestInstallScriptRuns(t *testing.T) {
	for _, tc := range []struct {
		name    string
		p       InstallParams
		install string
		wiped   []string
	}{
		{"smallest", InstallParams{}, "-s -i /opt/racker/boot.ign -b " + testBase + "/assets/testos -V current", nil},
		{"chosen disk", InstallParams{Disk: "/dev/vdb"}, "-d /dev/vdb -i", nil},
		{"wipe all, smallest", InstallParams{WipeAll: true}, "-d /dev/vdb -i", []string{"/dev/sda1", "/dev/sda", "/dev/vda"}},
		{"wipe all, chosen", InstallParams{WipeAll: true, Disk: "/dev/vda"}, "-d /dev/vda -i", []string{"/dev/sda1", "/dev/sda", "/dev/vdb"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			p.MAC, p.BaseURL, p.OS, p.Version, p.Token = testMAC, testBase, "testos", "current", testToken
			p, err := p.check()
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			sys := filepath.Join(dir, "sys")
			// vdb is the smallest; sr0 and the removable sdz are never touched.
			for name, size := range map[string]string{"sda": "4000", "vda": "3000", "vdb": "2000", "sdz": "10"} {
				os.MkdirAll(filepath.Join(sys, name), 0o755)
				os.WriteFile(filepath.Join(sys, name, "size"), []byte(size+"\n"), 0o644)
				rem := "0"
				if name == "sdz" {
					rem = "1"
				}
				os.WriteFile(filepath.Join(sys, name, "removable"), []byte(rem+"\n"), 0o644)
			}
			os.MkdirAll(filepath.Join(sys, "sda", "sda1"), 0o755)
			bin := filepath.Join(dir, "bin")
			os.MkdirAll(bin, 0o755)
			log := filepath.Join(dir, "log")
			for _, c := range []string{"flatcar-install", "wipefs", "curl", "systemctl"} {
				os.WriteFile(filepath.Join(bin, c), []byte("#!/bin/sh\necho \""+c+" $*\" >> "+log+"\n"), 0o755)
			}
			catPath, err := exec.LookPath("cat")
			if err != nil {
				t.Fatal(err)
			}
			os.Symlink(catPath, filepath.Join(bin, "cat"))
			script := strings.ReplaceAll(installScript(p), "/sys/block", sys)
			cmd := exec.Command("/bin/sh", "-c", script)
			cmd.Env = []string{"PATH=" + bin}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("install.sh: %v\n%s", err, out)
			}
			b, _ := os.ReadFile(log)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			var wiped []string
			var install string
			for _, l := range lines {
				if w, ok := strings.CutPrefix(l, "wipefs -a "); ok {
					wiped = append(wiped, w)
				}
				if i, ok := strings.CutPrefix(l, "flatcar-install "); ok {
					install = i
				}
			}
			if !strings.HasPrefix(install, tc.install) {
				t.Errorf("flatcar-install %q, want prefix %q", install, tc.install)
			}
			if strings.Join(wiped, " ") != strings.Join(tc.wiped, " ") {
				t.Errorf("wiped %v, want %v", wiped, tc.wiped)
			}
			if !strings.Contains(lines[0], `"event":"installing"`) || !strings.Contains(lines[len(lines)-2], `"event":"installed"`) || lines[len(lines)-1] != "systemctl reboot" {
				t.Errorf("call order:\n%s", b)
			}
		})
	}
}

func TestInstallScriptReportsFailure(t *testing.T) {
	p, _ := InstallParams{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "current", Disk: "/dev/vda", Token: testToken}.check()
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	os.WriteFile(filepath.Join(dir, "flatcar-install"), []byte("#!/bin/sh\nexit 3\n"), 0o755)
	for _, c := range []string{"curl", "systemctl", "sleep"} {
		os.WriteFile(filepath.Join(dir, c), []byte("#!/bin/sh\necho \""+c+" $*\" >> "+log+"\n"), 0o755)
	}
	cmd := exec.Command("/bin/sh", "-c", installScript(p))
	cmd.Env = []string{"PATH=" + dir}
	if err := cmd.Run(); err == nil {
		t.Fatal("install.sh succeeded although flatcar-install failed")
	}
	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), `"event":"failed","message":"flatcar-install -d /dev/vda failed"`) || strings.Contains(string(b), "systemctl") ||
		!strings.Contains(string(b), "Authorization: Bearer "+testToken) {
		t.Errorf("calls:\n%s", b)
	}
}

func TestStateDirInputs(t *testing.T) {
	dir := t.TempDir()
	if _, err := SSHKeys(dir); err == nil || !strings.Contains(err.Error(), "gen-ssh-key") {
		t.Errorf("missing key: %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "ssh"), 0o700)
	os.WriteFile(filepath.Join(dir, SSHPublicKeyPath), []byte("ssh-ed25519 AAAA racker\n\n"), 0o644)
	keys, err := SSHKeys(dir)
	if err != nil || len(keys) != 1 || keys[0] != "ssh-ed25519 AAAA racker" {
		t.Errorf("keys %q, %v", keys, err)
	}
	if s, err := Snippets(dir, "red", testMAC); err != nil || len(s) != 0 {
		t.Errorf("no snippets: %v %v", s, err)
	}
	os.MkdirAll(filepath.Join(dir, NodeSnippetDir), 0o755)
	os.MkdirAll(filepath.Join(dir, TypeSnippetDir), 0o755)
	os.WriteFile(filepath.Join(dir, NodeSnippetDir, testMAC+".ign"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(dir, TypeSnippetDir, "red.ign"), []byte("{}"), 0o644)
	s, err := Snippets(dir, "red", testMAC)
	if err != nil || len(s) != 2 || s[0].Name != "ignition/types/red.ign" || s[1].Name != "ignition/nodes/"+testMAC+".ign" {
		t.Errorf("snippets %+v, %v", s, err)
	}
}
