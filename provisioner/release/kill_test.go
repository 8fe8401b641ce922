package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// TestMain doubles as the installer process that TestKilledInstall kills:
// with RACKER_TEST_KILL_AT set, the test binary installs one release and
// SIGKILLs itself at that step — no deferred cleanup, no flush, as with a
// power cut or `kill -9`.
func TestMain(m *testing.M) {
	if os.Getenv("RACKER_TEST_DETECT") != "" {
		_, err := DetectHost()
		fmt.Println("detect:", err)
		os.Exit(0)
	}
	if step := os.Getenv("RACKER_TEST_KILL_AT"); step != "" {
		os.Exit(killedInstall(Step(step)))
	}
	os.Exit(m.Run())
}

func killedInstall(step Step) int {
	in := &Installer{Layout: DefaultLayout(os.Getenv("RACKER_TEST_ROOT"), "/opt/racker", "/opt/racker-state")}
	in.hook = func(s Step) error {
		if s == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}
	reg, err := OpenRegistry(os.Getenv("RACKER_TEST_REGISTRY"))
	if err == nil {
		img, digest, ierr := reg.Image(context.Background(), os.Getenv("RACKER_TEST_VERSION"))
		if err = ierr; err == nil {
			_, err = in.Install(context.Background(), Source{Image: img, Digest: digest.String()}, Options{})
		}
	}
	fmt.Fprintln(os.Stderr, "install finished without being killed:", err)
	return 3
}

// An install killed (SIGKILL) at each step leaves a working version current:
// the old one before the switch, the new one, whole, after it. A later
// install completes and cleans up.
func TestKilledInstall(t *testing.T) {
	reg := newTestRegistry(t)
	reg.publish(t, testRelease{version: "1.0.0"}, testRelease{version: "1.0.1"})
	for _, step := range allSteps {
		t.Run(string(step), func(t *testing.T) {
			root := t.TempDir()
			in := testInstaller(t, root)
			_, err := installFrom(t, in, reg.ref, "1.0.0", Options{})
			must(t, err)

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "RACKER_TEST_KILL_AT="+string(step), "RACKER_TEST_ROOT="+root,
				"RACKER_TEST_REGISTRY="+reg.ref, "RACKER_TEST_VERSION=1.0.1")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the installer was not killed at %s: %v: %s", step, err, out)
			}
			want := "1.0.0"
			if switchedBy(step) {
				want = "1.0.1"
			}
			assertCurrent(t, in, want)

			_, err = installFrom(t, in, reg.ref, "1.0.1", Options{})
			must(t, err)
			assertCurrent(t, in, "1.0.1")
			assertNoLeftovers(t, in)
		})
	}
}
