package testos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mapFetcher is a unit-test fake: sources answered from a map (data: URLs
// decoded for real).
type mapFetcher map[string]string

func (m mapFetcher) Fetch(_ context.Context, src string) ([]byte, error) {
	if strings.HasPrefix(src, "data:") {
		return DecodeDataURL(src)
	}
	if s, ok := m[src]; ok {
		return []byte(s), nil
	}
	return nil, fmt.Errorf("no such source %s", src)
}

func TestDecodeDataURL(t *testing.T) {
	cases := map[string]string{
		"data:,hello%20world%0A": "hello world\n",
		"data:,a+b":              "a+b",
		"data:text/plain;charset=utf-8,%23!%2Fbin%2Fsh": "#!/bin/sh",
		"data:;base64,cm9sZT13b3JrZXIK":                 "role=worker\n",
		"data:text/plain;base64,aGk":                    "hi",
		"data:,":                                        "",
	}
	for in, want := range cases {
		got, err := DecodeDataURL(in)
		if err != nil || string(got) != want {
			t.Errorf("DecodeDataURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"http://x", "data:nocomma", "data:;base64,!!!", "data:,%zz"} {
		if _, err := DecodeDataURL(bad); err == nil {
			t.Errorf("DecodeDataURL(%q) accepted a bad URL", bad)
		}
	}
}

func TestParseConfigVersion(t *testing.T) {
	for _, v := range []string{"1", "4.0.0", ""} {
		if _, err := ParseConfig([]byte(`{"ignition":{"version":"` + v + `"}}`)); err == nil {
			t.Errorf("a config of version %q was accepted", v)
		}
	}
	if _, err := ParseConfig([]byte(`{"ignition":`)); err == nil {
		t.Error("broken JSON was accepted")
	}
	c, err := ParseConfig([]byte("  {\"ignition\":{\"version\":\"3.4.0\"},\"unknown\":1}\n"))
	if err != nil || c.Ignition.Version != "3.4.0" {
		t.Errorf("ParseConfig = %+v, %v", c, err)
	}
}

func TestResolveFollowsReplaceAndMerge(t *testing.T) {
	f := mapFetcher{
		"http://mgmt/ignition?phase=boot": `{"ignition":{"version":"3.4.0","config":{"merge":[{"source":"http://mgmt/snippet"}]}},
			"storage":{"files":[{"path":"/etc/hostname","contents":{"source":"data:,node-1"}}]}}`,
		"http://mgmt/snippet": `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/snippet","contents":{"source":"data:,x"}}]}}`,
		"http://mgmt/loop":    `{"ignition":{"version":"3.4.0","config":{"replace":{"source":"http://mgmt/loop"}}}}`,
	}
	stub, _ := ParseConfig([]byte(`{"ignition":{"version":"3.4.0","config":{"replace":{"source":"http://mgmt/ignition?phase=boot"}}},
		"storage":{"files":[{"path":"/ignored","contents":{"source":"data:,stub"}}]}}`))
	var said []string
	c, err := Resolve(context.Background(), f, stub, func(s string) { said = append(said, s) })
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, file := range c.Storage.Files {
		paths = append(paths, file.Path)
	}
	if got := strings.Join(paths, ","); got != "/etc/snippet,/etc/hostname" {
		t.Errorf("files after replace+merge = %s, want the merged snippet first, then the config's own, and not the stub's", got)
	}
	if len(said) != 2 || !strings.Contains(said[0], "replace") {
		t.Errorf("console lines = %q", said)
	}

	loop, _ := ParseConfig([]byte(f["http://mgmt/loop"]))
	if _, err := Resolve(context.Background(), f, loop, func(string) {}); err == nil || !strings.Contains(err.Error(), "chained") {
		t.Errorf("a self-replacing config: err = %v", err)
	}
	missing, _ := ParseConfig([]byte(`{"ignition":{"version":"3.4.0","config":{"replace":{"source":"http://mgmt/none"}}}}`))
	if _, err := Resolve(context.Background(), f, missing, func(string) {}); err == nil {
		t.Error("a missing replace source was not an error")
	}
}

func TestApplyWritesFilesUsersAndUnits(t *testing.T) {
	root := t.TempDir()
	c, err := ParseConfig([]byte(`{"ignition":{"version":"3.4.0"},
	  "storage":{
	    "directories":[{"path":"/var/lib/x","mode":448}],
	    "files":[
	      {"path":"/opt/racker/install.sh","mode":493,"contents":{"source":"data:,%23!%2Fbin%2Fsh%0Aexit%200%0A"}},
	      {"path":"/etc/hostname","contents":{"source":"data:,node-1"},"append":[{"source":"data:,%0A"}]},
	      {"path":"/etc/../../escape","contents":{"source":"data:,no"}},
	      {"path":"/etc/gz","contents":{"source":"data:;base64,H4sIAAAAAAAA/8pIzcnJBwQAAP//hqYQNgUAAAA=","compression":"gzip"}}]},
	  "passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA one","ssh-ed25519 BBBB two"]},{"name":"nokeys"}]},
	  "systemd":{"units":[
	    {"name":"a.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"},
	    {"name":"b.service","enabled":false,"contents":"[Service]\nExecStart=/bin/false\n[Install]\nWantedBy=multi-user.target\n"},
	    {"name":"c.service","enabled":true,"mask":true},
	    {"name":"d.service","enabled":true,"dropins":[{"name":"install.conf","contents":"[Install]\nRequiredBy=network-online.target\n"}]},
	    {"name":"e.service","enabled":true,"contents":"[Service]\nExecStart=/bin/true\n"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	var said []string
	if err := Apply(context.Background(), root, c, mapFetcher{}, func(s string) { said = append(said, s) }); err != nil {
		t.Fatal(err)
	}
	check := func(path, content string, mode os.FileMode) {
		t.Helper()
		st, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), mode)
		}
		if content != "" {
			b, _ := os.ReadFile(filepath.Join(root, path))
			if string(b) != content {
				t.Errorf("%s = %q, want %q", path, b, content)
			}
		}
	}
	check("opt/racker/install.sh", "#!/bin/sh\nexit 0\n", 0o755)
	check("etc/hostname", "node-1\n", 0o644)
	check("escape", "no", 0o644) // ".." cannot leave root
	check("etc/gz", "hello", 0o644)
	check("home/core/.ssh/authorized_keys", "ssh-ed25519 AAAA one\nssh-ed25519 BBBB two\n", 0o600)
	check("etc/systemd/system/a.service", "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n", 0o644)
	if st, err := os.Stat(filepath.Join(root, "var/lib/x")); err != nil || !st.IsDir() {
		t.Errorf("directory /var/lib/x: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "home/nokeys")); err == nil {
		t.Error("a user without keys got a home folder")
	}
	// Enabled as systemctl enable does: links in the [Install] targets'
	// folders, found again by a later boot.
	if dest, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/a.service")); err != nil || dest != "/etc/systemd/system/a.service" {
		t.Errorf("a.service enable link: %q, %v", dest, err)
	}
	if got := strings.Join(EnabledUnits(root), ","); got != "a.service,d.service" {
		t.Errorf("enabled units = %s, want a.service,d.service (b disabled, c masked, e has no [Install])", got)
	}
	if !strings.Contains(strings.Join(said, "\n"), "unit e.service has no [Install] WantedBy=") {
		t.Errorf("enabling a unit without [Install] is not reported: %q", said)
	}
}

func TestParseCmdline(t *testing.T) {
	got := ParseCmdline(`BOOT_IMAGE=/vmlinuz flatcar.first_boot=yes ignition.config.url=http://172.24.213.1:8080/ignition?mac=00:11:22:33:44:10&phase=install console=ttyS0,115200n8 quiet x="a b"` + "\n")
	want := map[string]string{
		"ignition.config.url": "http://172.24.213.1:8080/ignition?mac=00:11:22:33:44:10&phase=install",
		"flatcar.first_boot":  "yes",
		"console":             "ttyS0,115200n8",
		"quiet":               "",
		"x":                   "a b",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if macOf(got["ignition.config.url"]) != "00:11:22:33:44:10" {
		t.Errorf("macOf = %q", macOf(got["ignition.config.url"]))
	}
}

// A spec 2.3.0 config, as Lokomotive's ct provider renders its install
// template, reads as the spec 3 config it means, as Flatcar's Ignition
// translates it; what spec 3 cannot express without a filesystem map is
// refused with the file named.
func TestParseConfigTranslatesSpec2(t *testing.T) {
	c, err := ParseConfig([]byte(`{"ignition":{"version":"2.3.0","config":{"append":[{"source":"http://m/extra.ign"}]}},
		"storage":{"files":[{"filesystem":"root","path":"/opt/installer","mode":320,"contents":{"source":"data:,echo%20hi"}},
			{"filesystem":"root","path":"/etc/motd","append":true,"contents":{"source":"data:,more"}}],
			"directories":[{"filesystem":"root","path":"/opt/bin","mode":493}]},
		"systemd":{"units":[{"name":"installer.service","enable":true,"contents":"[Service]\nExecStart=/opt/installer\n"},
			{"name":"sshd.socket","dropins":[{"name":"10-sshd-port.conf","contents":"[Socket]\nListenStream=2222\n"}]},
			{"name":"locksmithd.service","mask":true}]},
		"passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA k"]}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Ignition.Version, "3.") || len(c.Ignition.Config.Merge) != 1 || ptrOr(c.Ignition.Config.Merge[0].Source) != "http://m/extra.ign" {
		t.Errorf("ignition section = %+v", c.Ignition)
	}
	if len(c.Storage.Files) != 2 || c.Storage.Files[0].Path != "/opt/installer" || *c.Storage.Files[0].Mode != 0o500 ||
		ptrOr(c.Storage.Files[0].Contents.Source) != "data:,echo%20hi" {
		t.Fatalf("files = %+v", c.Storage.Files)
	}
	if f := c.Storage.Files[1]; f.Contents.Source != nil || len(f.Append) != 1 || ptrOr(f.Append[0].Source) != "data:,more" {
		t.Errorf("a 2.x append file = %+v, want its contents appended", f)
	}
	if len(c.Storage.Directories) != 1 || c.Storage.Directories[0].Path != "/opt/bin" {
		t.Errorf("directories = %+v", c.Storage.Directories)
	}
	u := c.Systemd.Units
	if len(u) != 3 || u[0].Enabled == nil || !*u[0].Enabled || u[0].Contents == nil || len(u[1].Dropins) != 1 || u[1].Enabled != nil ||
		u[2].Mask == nil || !*u[2].Mask {
		t.Errorf("units = %+v", u)
	}
	if len(c.Passwd.Users) != 1 || c.Passwd.Users[0].SSHAuthorizedKeys[0] != "ssh-ed25519 AAAA k" {
		t.Errorf("users = %+v", c.Passwd.Users)
	}
	_, err = ParseConfig([]byte(`{"ignition":{"version":"2.2.0"},"storage":{"files":[{"filesystem":"oem","path":"/grub.cfg"}]}}`))
	if err == nil || !strings.Contains(err.Error(), "/grub.cfg") || !strings.Contains(err.Error(), `"oem"`) {
		t.Errorf("a file on filesystem oem: %v, want a refusal naming it", err)
	}
}
