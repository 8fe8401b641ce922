package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coreos/ignition/v2/config/v3_4"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/images"
)

const base = "http://172.24.213.1:8080"

func TestIPXEScriptsFollowTheNodeState(t *testing.T) {
	r := newRig(t)
	if code, body := r.get("/boot.ipxe"); code != 200 || body != "#!ipxe\nchain "+base+"/ipxe?mac=${net0/mac}\n" {
		t.Fatalf("boot.ipxe: %d %q", code, body)
	}
	// Outside a boot window a node that should install waits in iPXE.
	if _, body := r.get("/ipxe?mac=" + macA); !strings.Contains(body, "no boot window is open") || strings.Contains(body, "kernel") {
		t.Fatalf("no window: %s", body)
	}
	r.netboot(macA)
	r.netboot(macB)
	wantInstall := "#!ipxe\nkernel " + base + "/assets/testos/current/flatcar_production_pxe.vmlinuz initrd=flatcar_production_pxe_image.cpio.gz flatcar.first_boot=yes ignition.config.url=" + base + "/ignition?mac=" + macA + "&phase=install console=ttyS0,115200n8\n" +
		"initrd " + base + "/assets/testos/current/flatcar_production_pxe_image.cpio.gz\nboot\n"
	if _, body := r.get("/ipxe?mac=00-11-22-33-44-10"); body != wantInstall {
		t.Fatalf("install script:\n%s\nwant\n%s", body, wantInstall)
	}
	if _, body := r.get("/ipxe?mac=00:11:22:33:44:1F"); body != wantInstall {
		t.Errorf("a node's secondary MAC must get its install script:\n%s", body)
	}
	if _, body := r.get("/ipxe?mac=" + macB); !strings.Contains(body, "console=ttyS1,57600n8\n") {
		t.Errorf("node type console not used:\n%s", body)
	}
	if n := r.node(macA); n.Phase != api.PhaseNetbooting || n.Target != api.TargetInstall {
		t.Errorf("after the install script: %+v", n)
	}

	tokA := r.installToken(macA, "127.0.0.1")
	if code := r.callbackWith(nil, macA, api.KindInstalled, "", tokA); code != 204 {
		t.Fatalf("installed callback: %d", code)
	}
	if n := r.node(macA); n.Target != api.TargetDisk || n.Phase != api.PhaseInstalled || n.LastEvent != api.KindInstalled {
		t.Errorf("after installed: %+v", n)
	}
	_, body := r.get("/ipxe?mac=" + macA)
	if !strings.HasPrefix(body, "#!ipxe\n") || !strings.Contains(body, "\nexit\n") || !strings.Contains(body, "sanboot --no-describe --drive 0x80") || strings.Contains(body, "kernel") {
		t.Errorf("installed node got:\n%s", body)
	}
	if n := r.node(macA); n.Phase != api.PhaseInstalled || n.LastEvent != api.KindIPXE {
		t.Errorf("after a disk script the phase must stay installed: %+v", n)
	}
	// C has no window: its iPXE request is recorded, unsolicited, and moves nothing.
	r.get("/ipxe?mac=" + macC)
	if n := r.node(macC); n.Phase != api.PhaseUnknown {
		t.Errorf("an iPXE request outside the window moved C: %+v", n)
	}

	n, err := api.NewClient(r.http.URL).Reinstall(context.Background(), macA, true)
	if err != nil || n.Target != api.TargetInstall || n.InstallGeneration != 1 || !n.WipeAll || n.WindowUntil.IsZero() {
		t.Fatalf("reinstall: %+v %v", n, err)
	}
	if _, body := r.get("/ipxe?mac=" + macA); body != wantInstall {
		t.Errorf("after reinstall:\n%s", body)
	}

	for _, mac := range []string{"00:11:22:33:44:99", "00:11:22:33:44:00" /* management */, bmcA, "$%7Bnet0/mac%7D"} {
		_, body := r.get("/ipxe?mac=" + mac)
		if !strings.Contains(body, "\nsleep 30\nreboot\n") || strings.Contains(body, "kernel") || strings.Contains(body, "${") {
			t.Errorf("machine %s got:\n%s", mac, body)
		}
	}
	evs := r.events(0)
	for _, want := range []struct {
		mac  string
		kind api.EventKind
		msg  string
	}{{macA, api.KindIPXE, "install"}, {macA, api.KindIPXE, "disk"}, {"00:11:22:33:44:99", api.KindIPXE, "unknown"}, {macC, api.KindIPXE, "no_window"}} {
		if !hasEvent(evs, want.mac, want.kind, want.msg) {
			t.Errorf("no %s event %q for %s in %+v", want.kind, want.msg, want.mac, evs)
		}
	}
	for _, e := range evs {
		if e.MAC == macC && !e.Unsolicited {
			t.Errorf("C's iPXE event outside its window is not unsolicited: %+v", e)
		}
	}
}

func TestIPXEWaitsForARelease(t *testing.T) {
	r := newRig(t)
	r.srv.cfg.Release = nil
	r.netboot(macA)
	_, body := r.get("/ipxe?mac=" + macA)
	want := "#!ipxe\necho Racker: no OS release is available yet, asking again in 30 s\nsleep 30\nchain --replace " + base + "/ipxe?mac=" + macA + "\n"
	if body != want {
		t.Errorf("without a release:\n%s\nwant\n%s", body, want)
	}
	code, _, _ := r.do(clientFrom("127.0.0.1"), "GET", "/ignition?mac="+macA+"&phase=install", nil)
	if code != 500 {
		t.Errorf("install config without a release: %d", code)
	}
}

func TestIgnitionServedOnlyToTheNode(t *testing.T) {
	r := newRig(t)
	// Outside a window nothing is served, not even to the node itself.
	if code, body, _ := r.do(clientFrom("127.0.0.1"), "GET", "/ignition?mac="+macA+"&phase=install", nil); code != 403 || bytes.Contains(body, []byte("TOKEN")) {
		t.Fatalf("install config outside a window: %d %s", code, body)
	}
	r.srv.refusals = newLimiter(refusalEvery, globalRefusals) // a fresh budget for 127.0.0.1
	r.netboot(macA)
	r.netboot(macB)
	r.netboot(macC)
	// A asks from its lease, B from its planned address: both valid configs.
	var tokB string
	for _, tc := range []struct{ mac, src, phase, want string }{
		{macA, "127.0.0.1", "install", "DISK_PATH=''\nMIN_BYTES='10000000001'"}, // Flatcar's rule
		{macB, "127.0.0.2", "install", "DISK_PATH='/dev/vdb'"},                  // purple's install disk
		{macB, "127.0.0.2", "boot", "racker-booted.service"},
	} {
		var hdr []string
		if tc.phase == "boot" {
			hdr = []string{api.TokenHeader, api.TokenScheme + tokB}
		}
		code, body, h := r.do(clientFrom(tc.src), "GET", "/ignition?mac="+tc.mac+"&phase="+tc.phase, nil, hdr...)
		if code != 200 {
			t.Fatalf("%s %s from %s: %d %s", tc.mac, tc.phase, tc.src, code, body)
		}
		cfg, rpt, err := v3_4.Parse(body)
		if err != nil {
			t.Fatalf("%s %s: Ignition rejects it: %v %s", tc.mac, tc.phase, err, rpt)
		}
		if tc.phase == "install" {
			script, _ := decodeFile(cfg, "/opt/racker/install.sh")
			if !strings.Contains(script, tc.want) {
				t.Errorf("%s install.sh lacks %q", tc.mac, tc.want)
			}
			if tc.mac == macB {
				tokB = tokenOf(t, body)
			}
		} else if !bytes.Contains(body, []byte(tc.want)) || cfg.Passwd.Users[0].SSHAuthorizedKeys[0] != testPK || !bytes.Contains(body, []byte(tokB)) {
			t.Errorf("%s boot config: %s", tc.mac, body)
		}
		if ct := h.Get("Content-Type"); ct != "application/vnd.coreos.ignition+json" {
			t.Errorf("content type %q", ct)
		}
	}
	// Refused, each from a source of its own (a source that keeps asking
	// gets 429): B's config asked for from A's address, C's from anywhere
	// on loopback, A's from another address, B's boot config again (served
	// once), A's boot config without its token, B's install config again.
	for _, tc := range []struct{ mac, src, phase, token, why string }{
		{macB, "127.0.0.1", "boot", tokB, "not the node's address"},
		{macC, "127.0.0.4", "install", "", "not the node's address"},
		{macA, "127.0.0.3", "boot", "", "not the node's address"},
		{macB, "127.0.0.2", "boot", tokB, "served already"},
		{macA, "127.0.0.5", "install", "", "not the node's address"},
	} {
		var hdr []string
		if tc.token != "" {
			hdr = []string{api.TokenHeader, api.TokenScheme + tc.token}
		}
		code, body, _ := r.do(clientFrom(tc.src), "GET", "/ignition?mac="+tc.mac+"&phase="+tc.phase, nil, hdr...)
		if code != 403 || bytes.Contains(body, []byte("ssh-ed25519")) || !bytes.Contains(body, []byte(tc.why)) {
			t.Errorf("%s's %s config from %s: %d %s, want 403 (%s)", tc.mac, tc.phase, tc.src, code, body, tc.why)
		}
	}
	// A's boot config from A's address, without the token and with B's.
	for _, tok := range []string{"", tokB} {
		var hdr []string
		if tok != "" {
			hdr = []string{api.TokenHeader, api.TokenScheme + tok}
		}
		code, body, _ := r.do(clientFrom("127.0.0.1"), "GET", "/ignition?mac="+macA+"&phase=boot", nil, hdr...)
		if !refused(code) || bytes.Contains(body, []byte("ssh-ed25519")) {
			t.Errorf("A's boot config with token %q: %d %s", tok, code, body)
		}
	}
	evs := r.events(0)
	if !hasEvent(evs, macC, api.KindForbidden, "from 127.0.0.4") || !hasEvent(evs, macA, api.KindForbidden, "from 127.0.0.3") ||
		!hasEvent(evs, macB, api.KindForbidden, "served already") {
		t.Errorf("no forbidden events in %+v", evs)
	}
	if !hasEvent(evs, macB, api.KindIgnition, "boot") {
		t.Errorf("no ignition event in %+v", evs)
	}
	if code, _ := r.get("/ignition?mac=" + macA + "&phase=other"); code != 400 {
		t.Errorf("bad phase: %d", code)
	}
}

// TestRefusalsAreAnsweredOnceAndRecordedBounded: a source that keeps
// asking gets one 403 and one forbidden event, then 429s that write
// nothing; the next event recorded for it says how many were held back.
func TestRefusalsAreAnsweredOnceAndRecordedBounded(t *testing.T) {
	r := newRig(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r.srv.store.now = func() time.Time { return now }
	c := clientFrom("127.0.0.7")
	codes := map[int]int{}
	for i := 0; i < 200; i++ {
		codes[r.callbackWith(c, macA, api.KindInstalled, "", "forged-token-forged-token")]++
	}
	if codes[403] != 1 || codes[429] != 199 {
		t.Fatalf("answers to 200 forged callbacks: %v, want one 403 and 199 429", codes)
	}
	count := func() int {
		n := 0
		for _, e := range r.events(0) {
			if e.Kind == api.KindForbidden {
				n++
			}
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("%d forbidden events for 200 refusals from one source, want 1", n)
	}
	now = now.Add(refusalEvery)
	if code := r.callbackWith(c, macA, api.KindInstalled, "", "forged-token-forged-token"); code != 403 {
		t.Fatalf("after the interval: %d, want 403", code)
	}
	if !hasEvent(r.events(0), macA, api.KindForbidden, "199 more refused") {
		t.Errorf("the second event does not count what was held back: %+v", r.events(0))
	}
	if n := r.node(macA); n.Phase != api.PhaseUnknown || n.Target != api.TargetInstall {
		t.Errorf("forged callbacks moved A: %+v", n)
	}
}

func TestAssetsRangeAndRefusals(t *testing.T) {
	r := newRig(t)
	want, _ := os.ReadFile(filepath.Join(r.release, images.Image))
	code, body, hdr := r.do(nil, "GET", "/assets/testos/current/"+images.Image, nil, "Range", "bytes=1000-1999")
	if code != 206 || !bytes.Equal(body, want[1000:2000]) || hdr.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", len(want)) {
		t.Fatalf("range: %d %d bytes %q", code, len(body), hdr.Get("Content-Range"))
	}
	code, body, _ = r.do(nil, "GET", "/assets/testos/current/"+images.Kernel, nil, "Range", fmt.Sprintf("bytes=%d-", len(want)-10))
	kernel, _ := os.ReadFile(filepath.Join(r.release, images.Kernel))
	if code != 206 || !bytes.Equal(body, kernel[len(kernel)-10:]) {
		t.Errorf("suffix range: %d %d bytes", code, len(body))
	}
	// flatcar-install checks the image and its signature with wget --spider (HEAD).
	code, body, hdr = r.do(nil, "HEAD", "/assets/testos/current/"+images.Image, nil)
	if code != 200 || len(body) != 0 || hdr.Get("Content-Length") != fmt.Sprint(len(want)) {
		t.Errorf("HEAD: %d, %d body bytes, length %q", code, len(body), hdr.Get("Content-Length"))
	}
	ipxe, _ := os.ReadFile(filepath.Join(r.ipxe, "undionly.kpxe"))
	if code, body, _ := r.do(nil, "GET", "/assets/ipxe/undionly.kpxe", nil); code != 200 || !bytes.Equal(body, ipxe) {
		t.Errorf("ipxe binary: %d %d bytes", code, len(body))
	}
	for _, p := range []string{
		"/assets/testos/current/secret.txt", // in the folder but not a release file
		"/assets/testos/other/" + images.Kernel,
		"/assets/ipxe/..%2f..%2fstate%2fssh%2fid_ed25519.pub",
		"/assets/ipxe/../testos/current/secret.txt",
		"/assets/flatcar/other/" + images.Kernel, // flatcar/ names the release served, no other
	} {
		if code, _ := r.get(p); code != 404 {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
	_, metrics := r.get("/metrics")
	if !strings.Contains(metrics, `racker_http_requests_total{code="206",handler="assets"} 2`) || !strings.Contains(metrics, "racker_http_asset_bytes_total") {
		t.Errorf("metrics lack asset counts:\n%s", grepLines(metrics, "racker_"))
	}
}

func grepLines(s, part string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, part) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestEventCallbacksAreValidated(t *testing.T) {
	r := newRig(t)
	r.netboot(macA)
	r.netboot(macC)
	tokA := r.installToken(macA, "127.0.0.1")
	for _, tc := range []struct {
		body, src, token string
		code             int
	}{
		{`{"mac":"` + macA + `","event":"installing"}`, "127.0.0.1", tokA, 204},
		{`{"mac":"` + macA + `","event":"failed","message":"flatcar-install -s failed"}`, "127.0.0.1", tokA, 204},
		{`{"mac":"` + macA + `","event":"installing"`, "127.0.0.1", tokA, 400},
		{`{"mac":"` + macA + `","event":"dhcp"}`, "127.0.0.1", tokA, 400},
		{`{"mac":"nope","event":"booted"}`, "127.0.0.1", tokA, 400},
		{`{"mac":"` + macA + `","event":"failed","message":"` + strings.Repeat("x", 70<<10) + `"}`, "127.0.0.1", tokA, 413},
		{`{"mac":"` + macC + `","event":"installed"}`, "127.0.0.1", tokA, 403},      // C's callback from A's address
		{`{"mac":"00:11:22:33:44:99","event":"installed"}`, "127.0.0.8", tokA, 403}, // not a node
		{`{"mac":"` + macA + `","event":"installed"}`, "127.0.0.9", "", 403},        // A's address is its lease, 127.0.0.1
		{`{"mac":"` + macB + `","event":"installed"}`, "127.0.0.2", "", 403},        // B from its address, no token
		{`{"mac":"` + macB + `","event":"installed"}`, "127.0.0.2", tokA, 429},      // … again, with A's token
	} {
		hdr := []string{"Content-Type", "application/json"}
		if tc.token != "" {
			hdr = append(hdr, api.TokenHeader, api.TokenScheme+tc.token)
		}
		code, body, _ := r.do(clientFrom(tc.src), "POST", "/api/v1/events", []byte(tc.body), hdr...)
		if code != tc.code {
			t.Errorf("%.80s from %s: %d %s, want %d", tc.body, tc.src, code, body, tc.code)
		}
	}
	if n := r.node(macB); n.Phase != api.PhaseUnknown || n.Target != api.TargetInstall {
		t.Errorf("B changed by a refused callback: %+v", n)
	}
	if n := r.node(macA); n.Phase != api.PhaseFailed || n.Target != api.TargetInstall {
		t.Errorf("A after failed: %+v", n)
	}
	if n := r.node(macC); n.Target != api.TargetInstall || n.Phase != api.PhaseUnknown {
		t.Errorf("C changed by a refused callback: %+v", n)
	}
	evs := r.events(0)
	if !hasEvent(evs, macA, api.KindFailed, "flatcar-install -s failed") || !hasEvent(evs, macC, api.KindForbidden, "callback installed") ||
		!hasEvent(evs, macB, api.KindForbidden, "without the node's token") {
		t.Errorf("events %+v", evs)
	}
}

// The booted unit's own command line, run by the real curl, is accepted.
func TestBootedUnitCommandWithRealCurl(t *testing.T) {
	curl := testenv.RequireCommand(t, "curl")
	r := newRig(t)
	r.netboot(macA)
	tok := r.installToken(macA, "127.0.0.1")
	cmd := exec.Command(curl, "-fsS", "-X", "POST", "-H", "Content-Type: application/json", "-H", "Authorization: Bearer "+tok, "--data-binary",
		`{"mac":"`+macA+`","event":"booted"}`, r.http.URL+"/api/v1/events")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	if n := r.node(macA); n.Phase != api.PhaseBooted || n.Target != api.TargetDisk || !n.WindowUntil.IsZero() {
		t.Errorf("after booted (the window closes): %+v", n)
	}
}

func TestJournalSurvivesReopen(t *testing.T) {
	r := newRig(t)
	rec := r.srv.Recorder()
	rec.Record(api.Event{MAC: macA, Kind: api.KindDHCP, Message: "ip=172.24.213.10 arch=0"})
	rec.Record(api.Event{MAC: "00:11:22:33:44:99", Kind: api.KindMachineSeen})
	r.netboot(macA)
	if code := r.callbackWith(nil, macA, api.KindInstalled, "", r.installToken(macA, "127.0.0.1")); code != 204 {
		t.Fatal(code)
	}
	if _, err := api.NewClient(r.http.URL).Reinstall(context.Background(), macB, true); err != nil {
		t.Fatal(err)
	}
	before := r.events(0)
	r.stop()

	// A crash in the middle of a write leaves a torn last line.
	f, _ := os.OpenFile(filepath.Join(r.state, EventsFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":99,"kind":"dhc`)
	f.Close()

	r.start()
	after := r.events(0)
	if len(after) != len(before) || !reflect.DeepEqual(after[len(after)-1], before[len(before)-1]) {
		t.Fatalf("events after reopen differ:\n%+v\n%+v", before, after)
	}
	r.srv.Recorder().Record(api.Event{MAC: macA, Kind: api.KindDHCP})
	evs := r.events(after[len(after)-1].Seq)
	if len(evs) != 1 || evs[0].Seq != after[len(after)-1].Seq+1 {
		t.Errorf("sequence after reopen: %+v", evs)
	}
	if n := r.node(macA); n.Target != api.TargetDisk || n.LastEvent != api.KindDHCP {
		t.Errorf("A after reopen: %+v", n)
	}
	if n := r.node(macB); n.Target != api.TargetInstall || n.InstallGeneration != 1 || !n.WipeAll {
		t.Errorf("B after reopen: %+v", n)
	}
	if n := r.node(macA); n.BMCIP.String() != "172.24.213.211" {
		t.Errorf("A's BMC address is not its lease: %+v", n)
	}
}

// A crash after the journal write but before the targets file was replaced
// still leaves the node installed: the journal is replayed over the file.
func TestInstalledSurvivesLostTargetsFile(t *testing.T) {
	r := newRig(t)
	r.netboot(macA)
	if code := r.callbackWith(nil, macA, api.KindInstalled, "", r.installToken(macA, "127.0.0.1")); code != 204 {
		t.Fatal(code)
	}
	r.stop()
	os.Remove(filepath.Join(r.state, TargetsFile))
	r.start()
	if n := r.node(macA); n.Target != api.TargetDisk {
		t.Errorf("A after losing the targets file: %+v", n)
	}
}

func TestGroupCommitUnderConcurrency(t *testing.T) {
	r := newRig(t)
	const n = 300
	done := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			r.srv.Recorder().Record(api.Event{MAC: bmcA, Kind: api.KindTFTP, Message: fmt.Sprint(i)})
			done <- struct{}{}
		}()
	}
	for i := 0; i < n; i++ {
		<-done
	}
	evs := r.events(0)
	if len(evs) != n {
		t.Fatalf("%d events, want %d", len(evs), n)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	b, _ := os.ReadFile(filepath.Join(r.state, EventsFile))
	if lines := bytes.Count(b, []byte("\n")); lines != n+1 {
		t.Errorf("journal has %d lines, want %d and its header", lines, n)
	}
}

func TestLongPoll(t *testing.T) {
	r := newRig(t)
	c := api.NewClient(r.http.URL)
	got := make(chan []api.Event, 1)
	errc := make(chan error, 1)
	go func() {
		evs, err := c.Events(context.Background(), 0, 30*time.Second)
		errc <- err
		got <- evs
	}()
	r.srv.Recorder().Record(api.Event{MAC: macB, Kind: api.KindDHCP})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if evs := <-got; len(evs) != 1 || evs[0].MAC != macB || evs[0].Seq != 1 {
		t.Errorf("long poll got %+v", evs)
	}
	// Nothing new: the poll ends empty after its wait.
	evs, err := c.Events(context.Background(), 1, time.Millisecond)
	if err != nil || len(evs) != 0 {
		t.Errorf("empty poll: %+v %v", evs, err)
	}
	if code, _ := r.get("/api/v1/events?wait=forever"); code != 400 {
		t.Errorf("bad wait: %d", code)
	}
}

func TestReinstallOnlyFromManagement(t *testing.T) {
	r := newRig(t)
	// Loopback is the management node itself.
	code, _, _ := r.do(clientFrom("127.0.0.2"), "POST", "/api/v1/nodes/"+macA+"/reinstall", []byte(`{"wipe_all":true}`))
	if code != 200 {
		t.Fatalf("reinstall from loopback: %d", code)
	}
	if !r.srv.isAdmin(requestFrom("172.24.213.1:5000")) || r.srv.isAdmin(requestFrom("172.24.213.10:5000")) {
		t.Error("admin check: management address must be admin, a node's must not")
	}
	// A node may not read the management views nor open windows.
	for _, p := range []string{"GET /api/v1/nodes", "GET /api/v1/events", "GET /metrics", "GET /api/v1/nodes/" + macA, "POST /api/v1/nodes/" + macA + "/netboot", "GET /api/v1/release"} {
		method, path, _ := strings.Cut(p, " ")
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, nil)
		req.RemoteAddr = "172.24.213.10:40000"
		r.srv.Handler().ServeHTTP(rec, req)
		if !refused(rec.Code) || strings.Contains(rec.Body.String(), macB) {
			t.Errorf("%s from a node: %d %s", p, rec.Code, rec.Body)
		}
	}
	if code, _, _ := r.do(nil, "POST", "/api/v1/nodes/00:11:22:33:44:99/reinstall", nil); code != 404 {
		t.Errorf("reinstall of an unknown node: %d", code)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	r := newRig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.srv.Serve(ctx, ln) }()
	if err := api.NewClient("http://" + ln.Addr().String()).Healthz(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A long poll in flight must not hold the shutdown.
	pollErr := make(chan error, 1)
	go func() {
		_, err := api.NewClient("http://"+ln.Addr().String()).Events(context.Background(), 0, 60*time.Second)
		pollErr <- err
	}()
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Serve: %v", err)
	}
	<-pollErr
}

func TestTypeSettingsFromStateDir(t *testing.T) {
	dir := t.TempDir()
	if ts, err := ReadTypeSettings(dir); err != nil || ts != nil {
		t.Fatalf("no file: %v %v", ts, err)
	}
	os.WriteFile(filepath.Join(dir, TypesFile), []byte(`{"red":{"console":"ttyS1,57600n8","install_disk":"/dev/sda","bmc_protocol":"auto"}}`), 0o644)
	ts, err := ReadTypeSettings(dir)
	if err != nil || ts["red"] != (TypeSettings{Console: "ttyS1,57600n8", InstallDisk: "/dev/sda"}) {
		t.Fatalf("settings %v %v", ts, err)
	}
	for _, bad := range []string{
		`{"red":{"console":"ttyS1 init=/bin/sh"}}`,
		`{"red":{"install_disk":"sda"}}`,
		`{"red":{"consol":"ttyS1"}}`,
		`{"red":{"bmc_protocol":"redfsh"}}`,
	} {
		os.WriteFile(filepath.Join(dir, TypesFile), []byte(bad), 0o644)
		if _, err := ReadTypeSettings(dir); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	// New reads the file when no settings are given, and the install
	// script then carries the type's console.
	os.WriteFile(filepath.Join(dir, TypesFile), []byte(`{"red":{"console":"ttyS1,57600n8"}}`), 0o644)
	s, err := New(Config{Plan: testPlan(), StateDir: dir, Release: &images.Release{OS: "testos", Version: "current", SigningKey: []byte("k")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.console("red"); got != "ttyS1,57600n8" {
		t.Errorf("console of red %q", got)
	}
	if got := s.console("purple"); got != DefaultConsole {
		t.Errorf("console of purple %q", got)
	}
}

// The management node asks which release the services serve (bootstrap
// writes its version into Lokomotive's configuration), and finds it under
// /assets/flatcar/ too, where Lokomotive's profiles look.
func TestReleaseAnswerAndFlatcarPath(t *testing.T) {
	r := newRig(t)
	rel, err := api.NewClient(r.http.URL).Release(context.Background())
	if err != nil || rel.OS != "testos" || rel.Version != "current" || rel.OtherImageKey != "" {
		t.Fatalf("Release() = %+v, %v", rel, err)
	}
	// Images re-signed with a mirror's key say so (bootstrap refuses them
	// for Lokomotive, whose installs pass no -k).
	r.srv.cfg.Release.OtherKey = "0123ABCD"
	if rel, err := api.NewClient(r.http.URL).Release(context.Background()); err != nil || rel.OtherImageKey != "0123ABCD" {
		t.Errorf("Release() of re-signed images = %+v, %v", rel, err)
	}
	for _, path := range []string{"/assets/testos/current/" + images.Kernel, "/assets/flatcar/current/" + images.Kernel} {
		if code, body := r.get(path); code != 200 || body == "" {
			t.Errorf("%s = %d (%d bytes)", path, code, len(body))
		}
	}
	for _, path := range []string{"/assets/flatcar/other/" + images.Kernel, "/assets/debian/current/" + images.Kernel} {
		if code, _ := r.get(path); code != 404 {
			t.Errorf("%s = %d, want 404", path, code)
		}
	}
	bare, err := New(Config{Plan: testPlan(), StateDir: t.TempDir(), BaseURL: "http://172.24.213.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	hs := httptest.NewServer(bare.Handler())
	defer hs.Close()
	var se *api.StatusError
	if _, err := api.NewClient(hs.URL).Release(context.Background()); !errors.As(err, &se) || se.Code != 404 {
		t.Errorf("Release() without one = %v, want 404", err)
	}
}
