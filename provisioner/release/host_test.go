package release

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
)

// detectIn runs DetectHost in a child process started by argv (unshare,
// setpriv…) that believes it is in a container, and returns what it said.
func detectIn(t *testing.T, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], append(argv[1:], os.Args[0], "-test.run=^$")...)
	cmd.Env = append(os.Environ(), "RACKER_TEST_DETECT=1", "container=docker")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v: %s", argv, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The installer refuses clearly when the container lacks --pid host or
// --privileged, and when it cannot tell the host from itself.
func TestDetectHostRefusals(t *testing.T) {
	testenv.RequireRoot(t)
	unshare := testenv.RequireCommand(t, "unshare")
	setpriv := testenv.RequireCommand(t, "setpriv")

	// Without --pid host the installer is pid 1 of its own pid namespace.
	out := detectIn(t, unshare, "--pid", "--fork", "--mount-proc")
	if !strings.Contains(out, "as pid 1") || !strings.Contains(out, "--privileged --pid host") {
		t.Errorf("as pid 1: %s", out)
	}
	// Without --privileged it has no CAP_SYS_ADMIN.
	out = detectIn(t, setpriv, "--bounding-set=-all", "--inh-caps=-all")
	if !strings.Contains(out, "unprivileged container") {
		t.Errorf("without capabilities: %s", out)
	}
	// Sharing pid 1's mount namespace, /proc/1/root is not another host.
	self, _ := os.Readlink("/proc/self/ns/mnt")
	host, _ := os.Readlink("/proc/1/ns/mnt")
	if self == host {
		out = detectIn(t, "env")
		if !strings.Contains(out, "shares pid 1's mount namespace") {
			t.Errorf("same mount namespace: %s", out)
		}
	}
}
