package unitd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeFile writes content to root/p, creating folders.
func writeFile(t *testing.T, root, p, content string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The racker-serve unit as the installer writes it, with the drop-in the
// simulator writes: the drop-in's empty ExecStart= resets the list, so the
// unit has one command (the drop-in's), and the rest comes through.
func TestLoadUnitAppliesDropInsInSystemdOrder(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "/etc/systemd/system/racker-serve.service", `# comment
[Unit]
Description=Racker boot services
After=network-online.target

[Service]
Type=simple
ExecStart=/opt/bin/racker serve --log-format json
ExecReload=/bin/kill -HUP $MAINPID
Environment=A=1 "B=two words"
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=always
RestartSec=2
AmbientCapabilities=CAP_NET_BIND_SERVICE
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
`)
	writeFile(t, root, "/etc/systemd/system/racker-serve.service.d/10-sim.conf", "[Service]\nExecStart=\nExecStart=/opt/bin/racker serve \\\n  --log-format json --os testos\n")
	writeFile(t, root, "/usr/lib/systemd/system/racker-serve.service.d/20-env.conf", "[Service]\nEnvironment=B=override\n")
	// The same drop-in name in /usr/lib is masked by /etc's.
	writeFile(t, root, "/usr/lib/systemd/system/racker-serve.service.d/10-sim.conf", "[Service]\nExecStart=/bin/false\n")

	u, err := LoadUnit(root, "racker-serve.service", UnitDirs)
	if err != nil {
		t.Fatal(err)
	}
	if u.Path != "/etc/systemd/system/racker-serve.service" {
		t.Errorf("fragment %s", u.Path)
	}
	wantDropIns := []string{"/etc/systemd/system/racker-serve.service.d/10-sim.conf", "/usr/lib/systemd/system/racker-serve.service.d/20-env.conf"}
	if !slices.Equal(u.DropIns, wantDropIns) {
		t.Errorf("drop-ins %v, want %v", u.DropIns, wantDropIns)
	}
	if !slices.Equal(u.ExecStart, []string{"/opt/bin/racker serve    --log-format json --os testos"}) {
		t.Errorf("ExecStart %q", u.ExecStart)
	}
	if !slices.Equal(u.Environment, []string{"A=1", "B=two words", "B=override"}) {
		t.Errorf("Environment %q", u.Environment)
	}
	if u.Restart != "always" || u.RestartSec != 2*time.Second || u.TimeoutStop != 30*time.Second || u.KillSignal != syscall.SIGTERM {
		t.Errorf("restart/stop settings: %+v", u)
	}
	if !u.HasInstall || !slices.Equal(u.WantedBy, []string{"multi-user.target"}) {
		t.Errorf("[Install]: %v %v", u.HasInstall, u.WantedBy)
	}
	if !slices.Equal(u.Ignored, []string{"AmbientCapabilities", "LimitNOFILE"}) {
		t.Errorf("ignored settings %v", u.Ignored)
	}
	if err := u.Check(); err != nil {
		t.Errorf("check: %v", err)
	}
	env, _, err := NewManager(root, nil).environment(u)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := parseCommand(u.ExecReload[0], map[string]string{"MAINPID": "42"})
	if err != nil || !slices.Equal(cmd.argv, []string{"/bin/kill", "-HUP", "42"}) {
		t.Errorf("ExecReload expands to %q (%v)", cmd.argv, err)
	}
	if env["B"] != "override" || env["PATH"] != servicePath {
		t.Errorf("environment %v", env)
	}
}

// What systemd refuses to start is refused here too.
func TestCheckRefusesWhatSystemdRefuses(t *testing.T) {
	root := t.TempDir()
	cases := map[string]string{
		"two.service":     "[Service]\nExecStart=/bin/true\nExecStart=/bin/true\n",
		"none.service":    "[Service]\nExecReload=/bin/true\n",
		"reset.service":   "[Service]\nExecStart=/bin/true\nExecStart=\n",
		"oneshot.service": "[Service]\nType=oneshot\nExecStart=/bin/true\nRestart=always\n",
	}
	for name, text := range cases {
		writeFile(t, root, "/etc/systemd/system/"+name, text)
		u, err := LoadUnit(root, name, UnitDirs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := u.Check(); err == nil || !strings.Contains(err.Error(), "Refusing") {
			t.Errorf("%s: check says %v", name, err)
		}
	}
	for name, text := range map[string]string{
		"forking.service": "[Service]\nType=forking\nExecStart=/bin/true\n",
		"restart.service": "[Service]\nExecStart=/bin/true\nRestart=sometimes\n",
		"env.service":     "[Service]\nExecStart=/bin/true\nEnvironment=NOEQUALS\n",
		"span.service":    "[Service]\nExecStart=/bin/true\nRestartSec=soon\n",
		"user.service":    "[Service]\nExecStart=/bin/true\nUser=core\n",
	} {
		writeFile(t, root, "/etc/systemd/system/"+name, text)
		if _, err := LoadUnit(root, name, UnitDirs); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s loaded: %v", name, err)
		}
	}
	if _, err := LoadUnit(root, "missing.service", UnitDirs); err == nil || !errNotFound(err) {
		t.Errorf("missing unit: %v", err)
	}
	if _, err := LoadUnit(root, "x.socket", UnitDirs); err == nil {
		t.Error("a socket unit was accepted")
	}
}

func TestParseCommandExpandsVariables(t *testing.T) {
	env := map[string]string{"OPTS": "--a  --b", "EMPTY": "", "DIR": "/opt"}
	for line, want := range map[string][]string{
		"/bin/x $OPTS ${DIR}/bin":     {"/bin/x", "--a", "--b", "/opt/bin"},
		"-/bin/x $EMPTY y":            {"/bin/x", "y"},
		`/bin/sh -c "echo 100%% $$"`:  {"/bin/sh", "-c", "echo 100% $$"},
		"/bin/x ${MISSING}z $MISSING": {"/bin/x", "z"},
	} {
		c, err := parseCommand(line, env)
		if err != nil || !slices.Equal(c.argv, want) {
			t.Errorf("%s: %q (%v), want %q", line, c.argv, err, want)
		}
	}
	if c, _ := parseCommand("-/bin/x", env); !c.ignoreFailed {
		t.Error("the - prefix was lost")
	}
}

func TestParseTimespan(t *testing.T) {
	for in, want := range map[string]time.Duration{"2": 2 * time.Second, "100ms": 100 * time.Millisecond,
		"1min 30s": 90 * time.Second, "0.5s": 500 * time.Millisecond} {
		if got, err := ParseTimespan(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "soon", "5 parsecs"} {
		if _, err := ParseTimespan(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
