package ignition

import (
	"encoding/base64"
	"net/netip"
	"os"
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

// testKey stands for a release's armored signing key (its bytes are only
// carried, never parsed, by this package).
var testKey = []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBFqUFawBEAC\n-----END PGP PUBLIC KEY BLOCK-----\n")

func TestInstallConfigLayout(t *testing.T) {
	raw, err := Install(InstallParams{MAC: "00-11-22-33-44-10", BaseURL: testBase + "/", OS: "testos", Version: "testos-1", SigningKey: testKey, Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	cfg := parse(t, raw)
	script, mode := fileData(t, cfg, "/opt/racker/install.sh")
	if mode != 0o755 {
		t.Errorf("install.sh mode %o", mode)
	}
	for _, want := range []string{"#!/bin/sh", "MAC='" + testMAC + "'", "EVENTS='" + testBase + "/api/v1/events'",
		"BASE='" + testBase + "/assets/testos'", "VERSION='testos-1'", "MIN_BYTES='10000000001'", "DISK_PATH=''",
		`flatcar-install -d "$DEV/$NAME" -i /opt/racker/boot.ign -b "$BASE" -V "$VERSION" -k "$KEY"`, "WIPE_ALL='no'", "systemctl reboot",
		"TOKEN='" + testToken + "'", `-H "Authorization: Bearer $TOKEN"`} {
		if !strings.Contains(script, want) {
			t.Errorf("install.sh lacks %q", want)
		}
	}
	if key, mode := fileData(t, cfg, SigningKeyPath); key != string(testKey) || mode != 0o644 {
		t.Errorf("signing key %q (mode %o)", key, mode)
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
		{MAC: "zz", BaseURL: testBase, OS: "testos", Version: "current", SigningKey: testKey, Token: testToken},
		{MAC: testMAC, BaseURL: "http://x/'; rm -rf /", OS: "testos", Version: "current", SigningKey: testKey, Token: testToken},
		{MAC: testMAC, BaseURL: testBase, OS: "test os", Version: "current", SigningKey: testKey, Token: testToken},
		{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "current", Disk: "/dev/sda; reboot", SigningKey: testKey, Token: testToken},
		{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "current", Disk: "/dev/disk/by-id/x'y", SigningKey: testKey, Token: testToken},
		{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "current", Disk: "sda", SigningKey: testKey, Token: testToken},
		{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "current", Token: testToken},    // no signing key
		{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "current", SigningKey: testKey}, // no token
		{MAC: testMAC, BaseURL: testBase, OS: "testos", Version: "current", SigningKey: testKey, Token: "abc'; reboot; echo 0123456789"},
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
