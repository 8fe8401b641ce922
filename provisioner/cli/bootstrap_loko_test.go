package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/racker/racker/provisioner/bmc"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/cluster"
	"github.com/racker/racker/provisioner/images"
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

// The lokomotive profile starts lokoctl in the configuration folder before
// any node is touched; a lokoctl that fails, or ends without registering
// every node in matchbox, makes bootstrap exit non-zero (the profile was
// not applied) with no BMC driven. lokoctl and terraform here are shell
// scripts on PATH (unit-test fakes).
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
	untouched := func() {
		t.Helper()
		for _, mac := range []string{"00:11:22:33:44:10", "00:11:22:33:44:20"} {
			if acts := bmc.Fake(fakeBMCName(mac)).Actions(); len(acts) > 0 {
				t.Errorf("%s's BMC was driven before lokoctl registered the nodes: %v", mac, acts)
			}
		}
	}

	lokoctl(1)
	code, out, errs := run(t, "", append(append([]string{"bootstrap"}, drive...), flags...)...)
	if code == 0 || !strings.Contains(errs, "lokomotive profile was not applied") || !strings.Contains(errs, `step "lokoctl cluster apply --confirm --verbose"`) {
		t.Fatalf("lokoctl failed, bootstrap exit %d; want non-zero saying the profile was not applied and naming the step\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if !strings.Contains(out, cluster.LokoctlPrefix+"lokoctl stand-in says hello") {
		t.Errorf("lokoctl's output is not shown:\n%s", out)
	}
	untouched()
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
		// The release the boot services serve, by its concrete version.
		`os_version = "current"`,
	} {
		if !strings.Contains(strings.Join(strings.Fields(string(vars)), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("%s lacks %s:\n%s", cluster.LokocfgVarFile, want, vars)
		}
	}

	// lokoctl succeeds without registering anything in matchbox.
	lokoctl(0)
	code, out, errs = run(t, "", append(append([]string{"bootstrap"}, drive...), flags...)...)
	if code == 0 || !strings.Contains(errs, "matchbox selects only 0 of the 2 node(s)") || !strings.Contains(errs, "racker-worker-0 (00:11:22:33:44:20)") {
		t.Fatalf("lokoctl registered nothing, bootstrap exit %d; want non-zero naming the nodes\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	untouched()

	// Every node excluded: nothing to provision, and no cluster either.
	// Leaving more nodes out than the rack was planned with is a replan.
	all := append(drive, "--exclude", "00:11:22:33:44:10,00:11:22:33:44:20", "--replan", "--yes")
	code, out, errs = run(t, "", append(append([]string{"bootstrap"}, all...), flags...)...)
	if code == 0 || !strings.Contains(errs, "lokomotive profile was not applied") {
		t.Errorf("no nodes: bootstrap --provision lokomotive exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}

// Images signed with a key of the mirror's own (racker serve --image-key)
// would fail every Lokomotive install after the download, as its install
// profiles run flatcar-install without -k: bootstrap refuses before lokoctl
// runs or any node is touched, naming the key and the ways out.
func TestBootstrapLokomotiveRefusesImagesItsInstallsCannotVerify(t *testing.T) {
	flags, url, _ := bootRigWith(t, false, func(r *images.Release) { r.OtherKey = "0123456789ABCDEF0123456789ABCDEF01234567" })
	bin := t.TempDir()
	t.Setenv("PATH", bin+":/usr/bin:/bin")
	ran := filepath.Join(bin, "ran")
	os.WriteFile(filepath.Join(bin, "lokoctl"), []byte("#!/bin/sh\ntouch "+ran+"\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "terraform"), []byte("#!/bin/sh\necho 'Terraform v0.13.6'\n"), 0o755)
	drive := []string{"--boot-services", url, "--bmc-driver", "fake", "--os", "testos", "--bmc-timeout", "2s",
		"--exclude", "00:11:22:33:44:60", "--provision", "lokomotive"}
	code, out, errs := run(t, "", append(append([]string{"bootstrap"}, drive...), flags...)...)
	if code == 0 || !strings.Contains(errs, "lokomotive profile was not applied") || !strings.Contains(errs, "0123456789ABCDEF0123456789ABCDEF01234567") ||
		!strings.Contains(errs, "without -k") || !strings.Contains(errs, "--provision flatcar --replan") {
		t.Fatalf("bootstrap exit %d; want non-zero naming the key and the ways out\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("lokoctl ran")
	}
	for _, mac := range []string{"00:11:22:33:44:10", "00:11:22:33:44:20"} {
		if acts := bmc.Fake(fakeBMCName(mac)).Actions(); len(acts) > 0 {
			t.Errorf("%s's BMC was driven: %v", mac, acts)
		}
	}
	// The same rack and images install as plain Flatcar, whose install
	// config passes the key to flatcar-install.
	plain := append(append([]string{"bootstrap"}, drive[:len(drive)-1]...), "flatcar", "--replan", "--yes")
	if code, out, errs := run(t, "", append(plain, flags...)...); code != 0 {
		t.Errorf("--provision flatcar: exit %d\n%s\n%s", code, out, errs)
	}
}

// The whole Lokomotive path with the lokoctl stand-in (e2e/lokoctl-standin,
// built here: it registers every node through matchbox's gRPC API as
// Lokomotive's Terraform does): bootstrap waits for the registrations,
// then PXE-boots the nodes, which chain to matchbox; their installs make
// no callbacks, and the installed systems' first fetch of their own
// configs marks them booted; bootstrap exits 0 once lokoctl has.
func TestBootstrapLokomotiveThroughMatchbox(t *testing.T) {
	flags, url, mbPort := bootRigWith(t, true)
	lokoctlStandIn(t)
	drive := []string{"--boot-services", url, "--bmc-driver", "fake", "--os", "testos", "--bmc-timeout", "2s",
		"--exclude", "00:11:22:33:44:60", "--provision", "lokomotive", "--matchbox-port", strconv.Itoa(mbPort)}
	code, out, errs := run(t, "", append(append([]string{"bootstrap"}, drive...), flags...)...)
	if code != 0 || !strings.Contains(out, "bootstrap: done, 2 node(s) booted (lokomotive profile)") {
		t.Fatalf("bootstrap exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	reg, booted := strings.Index(out, "lokoctl registered 2 of 2 node(s) in matchbox"), strings.Index(out, "2 booted")
	if reg < 0 || booted < reg || !strings.Contains(out, cluster.LokoctlPrefix+"Apply complete! 2 node(s) registered in matchbox.") {
		t.Errorf("the nodes booted before lokoctl registered them, or its output is missing:\n%s", out)
	}
	nodes, err := api.NewClient(url).Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.PrimaryMAC == "00:11:22:33:44:60" {
			continue
		}
		if !n.Matchbox || n.Phase != api.PhaseBooted || n.Target != api.TargetDisk {
			t.Errorf("%s: matchbox %v, phase %s, target %s; want a matchbox node booted with target disk", n.Hostname, n.Matchbox, n.Phase, n.Target)
		}
	}
}

// lokoctlStandIn builds e2e/lokoctl-standin as lokoctl, with a terraform
// script beside it, into a folder put first on PATH, and returns it.
func lokoctlStandIn(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "lokoctl"), "github.com/racker/racker/e2e/lokoctl-standin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the lokoctl stand-in: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(bin, "terraform"), []byte("#!/bin/sh\necho 'Terraform v0.13.6'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	return bin
}
