package vbmc

// These tests check the vBMC's Redfish service with OpenStack's sushy
// (Debian's python3-sushy, the library Ironic drives Redfish BMCs with):
// a client neither Racker nor the simulator wrote, so the two cannot share
// a misreading of the standard. testdata/sushy_client.py holds the
// scenarios; the machine behind the BMC is the in-memory memMachine, whose
// start log shows which device each boot used.

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
)

// debianPython is Debian's interpreter: the python3 on PATH may be a
// pyenv shim that does not see Debian's packages.
const debianPython = "/usr/bin/python3"

// requireSushy skips (fails in CI) when python3-sushy is missing.
func requireSushy(t *testing.T) {
	t.Helper()
	testenv.RequireFile(t, debianPython)
	if out, err := exec.Command(debianPython, "-c", "import sushy, requests").CombinedOutput(); err != nil {
		testenv.Missing(t, "Debian's python3-sushy is not installed (make deps installs it): "+strings.TrimSpace(string(out)))
	}
}

// pythonEnv is the test's environment without REQUESTS_CA_BUNDLE and
// CURL_CA_BUNDLE: python3-requests lets them override a session's
// verify=False (its long-standing merge_environment_settings quirk), which
// would make sushy check the vBMC's self-signed certificate after all.
func pythonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") && !strings.HasPrefix(kv, "CURL_CA_BUNDLE=") {
			env = append(env, kv)
		}
	}
	return env
}

// sushy runs one scenario against b and fails the test when it fails.
func (b *bmcUnderTest) sushy(t *testing.T, scenario string, extra ...string) string {
	t.Helper()
	args := append([]string{"testdata/sushy_client.py", scenario, "https://" + b.redfish.String(), testUser, b.passFile}, extra...)
	cmd := exec.Command(debianPython, args...)
	cmd.Env = pythonEnv()
	timer := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() }) // a hang guard, not a speed check
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	t.Logf("sushy %s:\n%s", scenario, out)
	if err != nil {
		t.Fatalf("sushy scenario %s failed: %v", scenario, err)
	}
	return string(out)
}

func TestSushyPower(t *testing.T) {
	requireSushy(t)
	m := newMemMachine()
	b, _ := redfishBMC(t, Config{Machine: m})
	b.sushy(t, "power")
	if on, _ := m.PoweredOn(t.Context()); on {
		t.Fatal("the machine is on after sushy's ForceOff")
	}
	// On, ForceRestart (stop + start), then On again after the shutdown.
	if n := len(m.startLog()); n != 3 {
		t.Fatalf("the machine started %d times, want 3 (On, ForceRestart, On)", n)
	}
}

func TestSushyBootOverride(t *testing.T) {
	requireSushy(t)
	m := newMemMachine()
	b, _ := redfishBMC(t, Config{Machine: m})
	out := b.sushy(t, "override")
	if !strings.Contains(out, "ok: boot after a target-only change") {
		t.Fatalf("the scenario ended early:\n%s", out)
	}
	// Once PXE, then default; continuous disk twice; continuous PXE; default.
	if got, want := devices(m.startLog()), "[pxe default disk disk pxe default]"; got != want {
		t.Fatalf("boots = %s, want %s", got, want)
	}
}

func TestSushyWrongPassword(t *testing.T) {
	requireSushy(t)
	m := newMemMachine()
	b, c := redfishBMC(t, Config{Machine: m})
	b.sushy(t, "wrong-password")
	// Refused logins leave no session behind.
	if n := c.must("GET", rfSessions, nil, 200)["Members@odata.count"]; n != float64(0) {
		t.Fatalf("%v sessions after refused logins, want 0", n)
	}
}

func TestSushyExpiredSession(t *testing.T) {
	requireSushy(t)
	b, _ := redfishBMC(t, Config{Machine: newMemMachine(), SessionTimeout: time.Second})
	b.sushy(t, "expired-session", "1")
}
