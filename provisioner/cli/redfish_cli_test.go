package cli

// The node commands over Redfish, against the simulator's virtual BMC
// in-process on loopback (only the tests import the simulator): bmc diag
// and its ipmi alias, certificate pins in the state folder and --insecure,
// the console's fallback to IPMI SOL and its error on a Redfish-only BMC,
// and the node types' bmc_protocol with auto's remembered choice. Some
// vBMCs listen on the real BMC ports (443, 623) of their own loopback
// address, as the console's fallback and auto look there.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/plan"
	"github.com/racker/racker/simulator/vbmc"
)

// redfishRack is the example rack with a password the vBMC accepts (IPMI
// 2.0 passwords have 20 bytes at most; the vBMC is as strict).
func redfishRack(t *testing.T) (oem, state string) {
	t.Helper()
	oem, state = exampleRack(t)
	if err := os.WriteFile(filepath.Join(oem, "ipmi_password"), []byte("redfish-test-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return oem, state
}

// onRealPorts has the vBMC listen on 623 and 443 of a loopback address
// of its own, as a BMC does.
func onRealPorts(t *testing.T, addr string, protocols ...vbmc.Protocol) func(*vbmc.Config) {
	testenv.RequireRoot(t) // ports below 1024
	return func(c *vbmc.Config) {
		c.Static = netip.MustParsePrefix(addr + "/8")
		c.Port, c.RedfishPort = 0, 0
		c.Protocols = protocols
	}
}

func TestBMCDiagOverRedfishWithPinsAndInsecure(t *testing.T) {
	oem, state := redfishRack(t)
	_, rf, _, _ := startConsoleVBMCWith(t, oem, func(c *vbmc.Config) {
		c.Protocols, c.RedfishPort = []vbmc.Protocol{vbmc.ProtocolRedfish}, -1
	})
	racker := func(args ...string) (int, string, string) {
		t.Helper()
		code, out, errs := run(t, "", append(append(args, "--bmc", "redfish://"+rf), rackFlags(oem, state)...)...)
		if strings.Contains(out+errs, "redfish-test-pass") {
			t.Fatalf("racker %s printed the password", strings.Join(args, " "))
		}
		return code, out, errs
	}
	code, out, errs := racker("bmc", "diag", "-o", "wide")
	if code != 0 {
		t.Fatalf("bmc diag: exit %d: %s", code, errs)
	}
	for _, want := range []string{"driver:      redfish", "protocol:    Redfish", "manufacturer: Racker", "model:", "serial:", "BIOS:",
		"boot mode:", "TLS:         pinned sha256:", "power:       off", "SOL:         false"} {
		if !strings.Contains(out, want) {
			t.Errorf("bmc diag lacks %q:\n%s", want, out)
		}
	}
	// The pin is in the state folder, under the BMC's address.
	pinsPath := filepath.Join(state, bmcPinsFile)
	var pins struct {
		BMCs map[string]struct{ Key string } `json:"bmcs"`
	}
	b, err := os.ReadFile(pinsPath)
	if err != nil || json.Unmarshal(b, &pins) != nil || !strings.HasPrefix(pins.BMCs[rf].Key, "sha256:") {
		t.Fatalf("%s: %s, %v", pinsPath, b, err)
	}
	// racker ipmi diag is the same command.
	if code, out, errs := racker("ipmi", "diag", "-o", "json"); code != 0 || !strings.Contains(out, `"driver": "redfish"`) {
		t.Fatalf("ipmi diag: exit %d: %s%s", code, out, errs)
	}
	if code, out, errs := racker("power", "status"); code != 0 || out != "off\n" {
		t.Fatalf("power status: exit %d: %q %s", code, out, errs)
	}
	// Another certificate than the pinned one: refused, naming the pin
	// file; --insecure skips the check (and says what it costs).
	e := pins.BMCs[rf]
	realKey := e.Key
	e.Key = "sha256:" + strings.Repeat("00", 32)
	pins.BMCs[rf] = e
	b, _ = json.Marshal(pins)
	os.WriteFile(pinsPath, b, 0o600)
	code, _, errs = racker("bmc", "diag")
	if code == 0 || !strings.Contains(errs, "is pinned") || !strings.Contains(errs, pinsPath) || !strings.Contains(errs, "racker bmc forget") {
		t.Fatalf("a changed certificate: exit %d: %s", code, errs)
	}
	code, out, errs = racker("bmc", "diag", "--insecure")
	if code != 0 || !strings.Contains(out, "driver:      redfish") || !strings.Contains(errs, "insecure") {
		t.Fatalf("--insecure: exit %d: %s%s", code, out, errs)
	}
	// The BMC was replaced, say: racker bmc forget drops the old pin (and
	// says so), and the next command pins the key the BMC shows.
	code, out, errs = racker("bmc", "forget")
	if code != 0 || !strings.Contains(out, "forgot "+rf+": TLS key sha256:0000") {
		t.Fatalf("bmc forget: exit %d: %s%s", code, out, errs)
	}
	if code, out, errs := racker("bmc", "forget"); code != 0 || !strings.Contains(out, "nothing was kept") {
		t.Fatalf("bmc forget, twice: exit %d: %s%s", code, out, errs)
	}
	code, out, errs = racker("bmc", "diag", "-o", "wide")
	if code != 0 || !strings.Contains(out, "TLS:         pinned "+realKey) {
		t.Fatalf("bmc diag after forget: exit %d: %s%s", code, out, errs)
	}
}

// racker bmc forget NODE forgets by the node's BMC address and MAC, and
// only those; nothing is contacted (no BMC runs here).
func TestBMCForgetANode(t *testing.T) {
	oem, state := exampleRack(t)
	env := &Env{OEMDir: oem, StateDir: state, MgmtMAC: "00:11:22:33:44:00", Stdout: io.Discard, Stderr: io.Discard}
	_, p, err := env.MakePlan(&PlanFlags{subnet: plan.DefaultSubnet.String()}, false)
	if err != nil {
		t.Fatal(err)
	}
	w, other := p.Servers()[0], p.Servers()[1]
	mine, theirs := w.BMCIP.String(), other.BMCIP.String()
	writeBMCMemory(t, state, []string{mine + ":443", theirs + ":443"}, []string{mine + ":623", w.BMCMAC, other.BMCMAC})
	code, out, errs := run(t, "", append([]string{"bmc", "forget", w.Hostname, "-o", "json", "--boot-services", "http://127.0.0.1:1"}, rackFlags(oem, state)...)...)
	if code != 0 {
		t.Fatalf("bmc forget: exit %d: %s", code, errs)
	}
	var gone []struct{ File, Key, What string }
	if err := json.Unmarshal([]byte(out), &gone); err != nil || len(gone) != 3 {
		t.Fatalf("bmc forget -o json: %v\n%s", err, out)
	}
	pins, protos := readBMCMemory(t, state)
	if strings.Join(pins, " ") != theirs+":443" || strings.Join(protos, " ") != other.BMCMAC {
		t.Errorf("after forgetting %s: pins %v, protocols %v; want only %s's", w.Hostname, pins, protos, other.Hostname)
	}
	if code, _, errs := run(t, "", append([]string{"bmc", "forget", "racker-worker-99"}, rackFlags(oem, state)...)...); code == 0 || !strings.Contains(errs, "not in the rack") {
		t.Errorf("bmc forget of an unknown node: exit %d: %s", code, errs)
	}
}

func TestConsoleOverRedfishFallsBackToIPMISOL(t *testing.T) {
	oem, state := redfishRack(t)
	const addr = "127.77.23.9"
	_, rf, port, _ := startConsoleVBMCWith(t, oem, onRealPorts(t, addr, vbmc.ProtocolIPMI, vbmc.ProtocolRedfish))
	args := append([]string{"console", "--bmc", "redfish://" + rf}, rackFlags(oem, state)...)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	var stdout, stderr lockedBuffer
	exit := make(chan int, 1)
	go func() { exit <- Main(context.Background(), args, stdinR, &stdout, &stderr) }()
	waitFor(t, "the console attached", func() bool { return strings.Contains(stderr.String(), "[connected") })
	port.print(t, "Flatcar login: ")
	waitFor(t, "the node's output over SOL", func() bool { return strings.Contains(stdout.String(), "Flatcar login: ") })
	io.WriteString(stdinW, "core\r")
	waitFor(t, "typed text on the serial port", func() bool { return strings.Contains(port.typed.String(), "core\r") })
	io.WriteString(stdinW, "~.")
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("console exit %d: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("~. did not end the console")
	}
}

func TestConsoleOnARedfishOnlyBMCSaysThereIsNone(t *testing.T) {
	oem, state := redfishRack(t)
	const addr = "127.77.23.10"
	startConsoleVBMCWith(t, oem, onRealPorts(t, addr, vbmc.ProtocolRedfish))
	start := time.Now()
	code, _, errs := run(t, "", append([]string{"console", "--bmc", "redfish://" + addr}, rackFlags(oem, state)...)...)
	if code == 0 || !strings.Contains(errs, "no serial console is available") || !strings.Contains(errs, "does not answer IPMI") ||
		!strings.Contains(errs, "ipmi://"+addr) {
		t.Fatalf("console on a Redfish-only BMC: exit %d: %s", code, errs)
	}
	t.Logf("said so in %s", time.Since(start).Round(time.Millisecond))
}

// TestBMCProtocolOfNodeTypes: node-types.json's bmc_protocol picks the
// driver per node; auto asks Redfish first and remembers what answered
// in STATE/bmc-protocols.json under the BMC's MAC; --bmc-driver wins.
func TestBMCProtocolOfNodeTypes(t *testing.T) {
	oem, state := redfishRack(t)
	const redAddr, purpleAddr = "127.77.23.11", "127.77.23.12"
	startConsoleVBMCWith(t, oem, onRealPorts(t, redAddr, vbmc.ProtocolIPMI, vbmc.ProtocolRedfish))
	startConsoleVBMCWith(t, oem, onRealPorts(t, purpleAddr, vbmc.ProtocolIPMI))
	// The boot services' node view, faked for this test: the BMCs' leases.
	boot := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leases := map[string]string{"00:11:22:33:44:10": redAddr, "00:11:22:33:44:20": purpleAddr}
		mac := strings.TrimPrefix(r.URL.Path, "/api/v1/nodes/")
		if leases[mac] == "" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(api.Node{PrimaryMAC: mac, BMCIP: netip.MustParseAddr(leases[mac])})
	}))
	defer boot.Close()
	os.MkdirAll(state, 0o700)
	types := filepath.Join(state, "node-types.json")
	os.WriteFile(types, []byte(`{"red": {"bmc_protocol": "auto"}, "purple": {"bmc_protocol": "auto", "install_disk": ">=20GB"}}`), 0o644)
	diag := func(node string, extra ...string) (int, string, string) {
		t.Helper()
		return run(t, "", append(append([]string{"bmc", "diag", node, "--boot-services", boot.URL}, extra...), rackFlags(oem, state)...)...)
	}
	if code, out, errs := diag("00:11:22:33:44:10"); code != 0 || !strings.Contains(out, "driver:      redfish") {
		t.Fatalf("red (auto, both protocols): exit %d: %s%s", code, out, errs)
	}
	if code, out, errs := diag("00:11:22:33:44:20"); code != 0 || !strings.Contains(out, "driver:      ipmi") {
		t.Fatalf("purple (auto, IPMI only): exit %d: %s%s", code, out, errs)
	}
	var chosen map[string]struct{ Protocol string }
	b, _ := os.ReadFile(filepath.Join(state, "bmc-protocols.json"))
	if err := json.Unmarshal(b, &chosen); err != nil || chosen["00:11:22:33:44:11"].Protocol != "redfish" || chosen["00:11:22:33:44:21"].Protocol != "ipmi" {
		t.Fatalf("bmc-protocols.json: %s (%v)", b, err)
	}
	// --bmc-driver wins over the node type.
	if code, out, errs := diag("00:11:22:33:44:10", "--bmc-driver", "ipmi"); code != 0 || !strings.Contains(out, "driver:      ipmi") {
		t.Fatalf("--bmc-driver ipmi: exit %d: %s%s", code, out, errs)
	}
	// An explicit redfish type on an IPMI-only BMC fails, naming Redfish.
	os.WriteFile(types, []byte(`{"purple": {"bmc_protocol": "redfish"}}`), 0o644)
	if code, _, errs := diag("00:11:22:33:44:20"); code == 0 || !strings.Contains(errs, "redfish://"+purpleAddr) {
		t.Fatalf("purple (redfish, IPMI only): exit %d: %s", code, errs)
	}
	os.WriteFile(types, []byte(`{"purple": {"bmc_protocol": "snmp"}}`), 0o644)
	if code, _, errs := diag("00:11:22:33:44:20"); code == 0 || !strings.Contains(errs, types) || !strings.Contains(errs, "type purple") {
		t.Fatalf("a bad bmc_protocol: exit %d: %s", code, errs)
	}
	if code, _, errs := diag("00:11:22:33:44:20", "--bmc-driver", "telnet"); code == 0 || !strings.Contains(errs, "--bmc-driver") {
		t.Fatalf("a bad --bmc-driver: exit %d: %s", code, errs)
	}
}

// TestProvisionReachesEachNodeByItsTypesProtocol: bootstrap and
// reprovision open each node's BMC over its type's bmc_protocol, at the
// address the boot services report (here none: the planned one).
func TestProvisionReachesEachNodeByItsTypesProtocol(t *testing.T) {
	oem, state := redfishRack(t)
	os.MkdirAll(state, 0o700)
	os.WriteFile(filepath.Join(state, "node-types.json"), []byte(`{"purple": {"bmc_protocol": "redfish"}}`), 0o644)
	env := &Env{Stdout: io.Discard, Stderr: io.Discard, OEMDir: oem, StateDir: state, MgmtMAC: "00:11:22:33:44:00", LogFormat: "text"}
	var pf PlanFlags
	pf.subnet = "172.24.213.0/24"
	inv, p, err := env.MakePlan(&pf, false)
	if err != nil {
		t.Fatal(err)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	defer down.Close()
	targets, err := bmcTargetsFor(env, inv, p, "", false, false, api.NewClient(down.URL))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := targets.opts.Pins.(interface{ String() string }); !ok || targets.opts.Insecure {
		t.Errorf("options: pins %T, insecure %v; want the state folder's pins", targets.opts.Pins, targets.opts.Insecure)
	}
	for _, n := range specsFor(p, nil, nil) {
		u, err := targets.urlFor(context.Background(), n)
		want := map[string]string{"red": "ipmi://", "purple": "redfish://"}[n.Type]
		if err != nil || !strings.HasPrefix(u, want) {
			t.Errorf("node %s (%s): %q, %v; want %s…", n.PrimaryMAC, n.Type, u, err, want)
		}
	}
	if _, err := bmcTargetsFor(env, inv, p, "snmp", false, false, api.NewClient(down.URL)); err == nil || !strings.Contains(err.Error(), "--bmc-driver") {
		t.Errorf("--bmc-driver snmp: %v", err)
	}
}
