package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/cluster"
)

// Without lokoctl, --provision lokomotive fails before any node is touched,
// and says to use --provision flatcar.
func TestBootstrapLokomotiveWithoutLokoctl(t *testing.T) {
	oem, state := exampleRack(t)
	t.Setenv("PATH", t.TempDir())
	code, out, errs := run(t, "", append([]string{"bootstrap", "--provision", "lokomotive", "--bmc-driver", "fake"}, rackFlags(oem, state)...)...)
	if code == 0 || !strings.Contains(errs, "lokoctl is not installed") || !strings.Contains(errs, "--provision flatcar") {
		t.Fatalf("exit %d, want non-zero naming --provision flatcar\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("the state folder was made: the rack was touched (%v)", err)
	}
	for _, mac := range []string{"00:11:22:33:44:10", "00:11:22:33:44:20"} {
		if acts := bmc.Fake(fakeBMCName(mac)).Actions(); len(acts) > 0 {
			t.Errorf("%s's BMC was driven: %v", mac, acts)
		}
		bmc.ForgetFake(fakeBMCName(mac))
	}
}

// The lokomotive profile runs lokoctl in the configuration folder once
// every node is booted; bootstrap exits non-zero while lokoctl fails (the
// profile was not applied) and 0 once it succeeds. lokoctl and terraform
// here are stand-in scripts on PATH (a unit-test fake: the real lokoctl
// cannot reach its Terraform providers on these machines); the conformance
// module checks the configuration against Lokomotive's own code.
func TestBootstrapLokomotiveExitsNonZeroUntilApplied(t *testing.T) {
	flags, url := bootRig(t)
	drive := []string{"--boot-services", url, "--bmc-driver", "fake", "--os", "testos", "--bmc-timeout", "2s",
		"--exclude", "00:11:22:33:44:60", "--provision", "lokomotive"}
	bin := t.TempDir()
	t.Setenv("PATH", bin+":/usr/bin:/bin")
	record := filepath.Join(bin, "ran")
	lokoctl := func(exit int) {
		script := "#!/bin/sh\necho \"$PWD $*\" >> " + record + "\necho lokoctl stand-in says hello\nexit " + string(rune('0'+exit)) + "\n"
		if err := os.WriteFile(filepath.Join(bin, "lokoctl"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(bin, "terraform"), []byte("#!/bin/sh\necho 'Terraform v0.13.6'\n"), 0o755)

	lokoctl(1)
	code, out, errs := run(t, "", append(append([]string{"bootstrap"}, drive...), flags...)...)
	if code == 0 || !strings.Contains(errs, "lokomotive profile was not applied") || !strings.Contains(errs, `step "lokoctl cluster apply --confirm --verbose"`) {
		t.Fatalf("lokoctl failed, bootstrap exit %d; want non-zero saying the profile was not applied and naming the step\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if !strings.Contains(out, cluster.LokoctlPrefix+"lokoctl stand-in says hello") || !strings.Contains(out, "2 booted") ||
		strings.Index(out, "2 booted") > strings.Index(out, cluster.LokoctlPrefix) {
		t.Errorf("lokoctl's output is not shown, or the nodes did not boot first:\n%s", out)
	}
	ran, _ := os.ReadFile(record)
	state := flags[3]
	if want := filepath.Join(state, cluster.LokomotiveDir) + " cluster apply --confirm --verbose\n"; string(ran) != want {
		t.Errorf("lokoctl ran as %q, want %q", ran, want)
	}
	if _, err := os.Stat(filepath.Join(state, cluster.LokomotiveDir, cluster.LokocfgFile)); err != nil {
		t.Errorf("no configuration for lokoctl: %v", err)
	}
	// lokoctl's Terraform is pointed at the boot services' matchbox: its
	// HTTP endpoints under /matchbox, its gRPC API on the management
	// address, and the client bundle the boot services make.
	vars, _ := os.ReadFile(filepath.Join(state, cluster.LokomotiveDir, cluster.LokocfgVarFile))
	bundle := filepath.Join(state, api.MatchboxClientDir)
	for _, want := range []string{
		// The nodes' URL (the management address and HTTP port), not the
		// management views' URL this test drives bootstrap with.
		`matchbox_http_endpoint = "http://127.0.0.1:8080/matchbox"`,
		`matchbox_endpoint = "127.0.0.1:8081"`,
		`matchbox_ca_path = "` + filepath.Join(bundle, api.MatchboxCAFile) + `"`,
		`matchbox_client_cert_path = "` + filepath.Join(bundle, api.MatchboxClientCertFile) + `"`,
		`matchbox_client_key_path = "` + filepath.Join(bundle, api.MatchboxClientKeyFile) + `"`,
	} {
		if !strings.Contains(strings.Join(strings.Fields(string(vars)), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("%s lacks %s:\n%s", cluster.LokocfgVarFile, want, vars)
		}
	}

	lokoctl(0)
	code, out, errs = run(t, "", append(append([]string{"bootstrap"}, drive...), flags...)...)
	if code != 0 || !strings.Contains(out, "bootstrap: done") {
		t.Fatalf("lokoctl succeeded, bootstrap exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}

	// Every node excluded: nothing to provision, and no cluster either.
	// Leaving more nodes out than the rack was planned with is a replan.
	all := append(drive, "--exclude", "00:11:22:33:44:10,00:11:22:33:44:20", "--replan", "--yes")
	code, out, errs = run(t, "", append(append([]string{"bootstrap"}, all...), flags...)...)
	if code == 0 || !strings.Contains(errs, "lokomotive profile was not applied") {
		t.Errorf("no nodes: bootstrap --provision lokomotive exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}
