package vbmc

// These tests speak HTTP to the vBMC's Redfish service with Go's own client
// (the wire, status codes, headers); sushy_test.go drives it with
// OpenStack's sushy, a client neither Racker nor the simulator wrote. The
// machine is the in-memory memMachine.

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/internal/testenv"
)

// rfClient is a bare HTTPS client for the vBMC (certificate not checked:
// the server is what is tested here).
type rfClient struct {
	t     *testing.T
	base  string
	token string // X-Auth-Token when set, else Basic user/password
	user  string
	pass  string
	http  *http.Client
}

func newRFClient(t *testing.T, b *bmcUnderTest) *rfClient {
	return &rfClient{t: t, base: "https://" + b.redfish.String(), user: testUser, pass: testPassword,
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
}

// do sends a request; body, when not nil, is sent as JSON.
func (c *rfClient) do(method, path string, body any, hdr ...string) (*http.Response, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("X-Auth-Token", c.token)
	} else if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp, m
}

func (c *rfClient) must(method, path string, body any, want int) map[string]any {
	c.t.Helper()
	resp, m := c.do(method, path, body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: HTTP %d, want %d: %v", method, path, resp.StatusCode, want, m)
	}
	return m
}

func bootOf(m map[string]any) string {
	b, _ := m["Boot"].(map[string]any)
	return b["BootSourceOverrideEnabled"].(string) + "/" + b["BootSourceOverrideTarget"].(string) + "/" + b["BootSourceOverrideMode"].(string)
}

func redfishBMC(t *testing.T, cfg Config) (*bmcUnderTest, *rfClient) {
	cfg.Protocols = []Protocol{ProtocolIPMI, ProtocolRedfish}
	b := startBMC(t, cfg)
	return b, newRFClient(t, b)
}

func TestRedfishNeedsAuthenticationButTheRoot(t *testing.T) {
	_, c := redfishBMC(t, Config{Machine: newMemMachine()})
	anon := *c
	anon.user = ""
	root := anon.must("GET", "/redfish/v1/", nil, 200)
	if got := root["Links"].(map[string]any)["Sessions"].(map[string]any)["@odata.id"]; got != rfSessions {
		t.Fatalf("service root Links.Sessions = %v", got)
	}
	for _, p := range []string{rfSystems, rfSystem, rfManager, rfSessions} {
		resp, _ := anon.do("GET", p, nil)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s without credentials: HTTP %d (WWW-Authenticate %q), want 401", p, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	wrong := *c
	wrong.pass = "not-the-password"
	if resp, _ := wrong.do("GET", rfSystem, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong Basic password: HTTP %d", resp.StatusCode)
	}
	if resp, _ := anon.do("POST", rfSessions, map[string]string{"UserName": testUser, "Password": "nope"}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login with a wrong password: HTTP %d", resp.StatusCode)
	}

	// A session: token in, Location to delete, then the token is dead.
	resp, _ := anon.do("POST", rfSessions, map[string]string{"UserName": testUser, "Password": testPassword})
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Auth-Token") == "" || !strings.HasPrefix(resp.Header.Get("Location"), rfSessions+"/") {
		t.Fatalf("login: HTTP %d, token %q, location %q", resp.StatusCode, resp.Header.Get("X-Auth-Token"), resp.Header.Get("Location"))
	}
	sess := anon
	sess.token = resp.Header.Get("X-Auth-Token")
	sess.must("GET", rfSystem, nil, 200)
	sess.must("DELETE", resp.Header.Get("Location"), nil, 204)
	if resp, _ := sess.do("GET", rfSystem, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token after logout: HTTP %d", resp.StatusCode)
	}
	if resp, _ := c.do("GET", "/redfish/v1/Systems/1", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET of a system that does not exist: HTTP %d", resp.StatusCode)
	}
}

// TestRedfishAndIPMISeeOneMachine: what one protocol sets, the other reads
// and the firmware uses.
func TestRedfishAndIPMISeeOneMachine(t *testing.T) {
	testenv.RequireCommand(t, "ipmitool")
	m := newMemMachine()
	b, c := redfishBMC(t, Config{Machine: m})

	c.must("PATCH", rfSystem, map[string]any{"Boot": map[string]string{
		"BootSourceOverrideEnabled": "Continuous", "BootSourceOverrideTarget": "Pxe", "BootSourceOverrideMode": "UEFI"}}, 204)
	if got := b.bootParam5(t); got != "e004000000" {
		t.Fatalf("ipmitool reads %s after a Redfish PATCH, want e004000000", got)
	}
	b.mustIPMI(t, "chassis", "bootdev", "disk")
	if got := bootOf(c.must("GET", rfSystem, nil, 200)); got != "Once/Hdd/Legacy" {
		t.Fatalf("Redfish reads %s after ipmitool bootdev disk", got)
	}
	c.must("POST", rfReset, map[string]string{"ResetType": "On"}, 204)
	if got := b.powerStatus(t); got != "Chassis Power is on" {
		t.Fatalf("ipmitool after a Redfish On: %q", got)
	}
	if got := bootOf(c.must("GET", rfSystem, nil, 200)); got != "Disabled/Hdd/Legacy" {
		t.Fatalf("after the boot Redfish reads %s, want the Once override used up", got)
	}
	b.mustIPMI(t, "power", "off")
	if got := c.must("GET", rfSystem, nil, 200)["PowerState"]; got != "Off" {
		t.Fatalf("Redfish PowerState after ipmitool power off: %v", got)
	}
	if got := devices(m.startLog()); got != "[disk]" {
		t.Fatalf("starts = %s, want [disk]", got)
	}
}

func TestRedfishRefusesWhatHardwareRefuses(t *testing.T) {
	_, c := redfishBMC(t, Config{Machine: newMemMachine()})
	boot := func(k, v string) map[string]any { return map[string]any{"Boot": map[string]string{k: v}} }
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   any
		hdr    []string
		want   int
		msg    string
	}{
		{"unknown boot property", "PATCH", rfSystem, boot("BootNext", "0001"), nil, 400, "PropertyUnknown"},
		{"target not allowed", "PATCH", rfSystem, boot("BootSourceOverrideTarget", "Cd"), nil, 400, "PropertyValueNotInList"},
		{"read-only property", "PATCH", rfSystem, map[string]any{"PowerState": "On"}, nil, 400, "PropertyNotWritable"},
		{"stale If-Match", "PATCH", rfSystem, boot("BootSourceOverrideTarget", "Pxe"), []string{"If-Match", `"0000"`}, 412, "PreconditionFailed"},
		{"not JSON", "PATCH", rfSystem, boot("BootSourceOverrideTarget", "Pxe"), []string{"Content-Type", "text/plain"}, 415, "UnsupportedMediaType"},
		{"off when off", "POST", rfReset, map[string]string{"ResetType": "ForceOff"}, nil, 409, "ResetTypeNotAllowedInState"},
		{"restart when off", "POST", rfReset, map[string]string{"ResetType": "ForceRestart"}, nil, 409, "ResetTypeNotAllowedInState"},
		{"unknown reset", "POST", rfReset, map[string]string{"ResetType": "Nmi"}, nil, 400, "ActionParameterNotSupported"},
		{"no reset type", "POST", rfReset, map[string]string{}, nil, 400, "ActionParameterMissing"},
		{"huge body", "PATCH", rfSystem, map[string]string{"Boot": strings.Repeat("x", maxBody)}, nil, 413, "PayloadTooLarge"},
	} {
		resp, m := c.do(tc.method, tc.path, tc.body, tc.hdr...)
		code, _ := m["error"].(map[string]any)["code"].(string)
		if resp.StatusCode != tc.want || !strings.HasSuffix(code, "."+tc.msg) {
			t.Errorf("%s: HTTP %d %s, want %d %s", tc.name, resp.StatusCode, code, tc.want, tc.msg)
		}
	}
	// The current ETag is accepted.
	resp, _ := c.do("GET", rfSystem, nil)
	etag := resp.Header.Get("ETag")
	if resp, m := c.do("PATCH", rfSystem, boot("BootSourceOverrideTarget", "Pxe"), "If-Match", etag); resp.StatusCode != 204 {
		t.Fatalf("PATCH with the current ETag %s: HTTP %d %v", etag, resp.StatusCode, m)
	}
	c.must("POST", rfReset, map[string]string{"ResetType": "On"}, 204)
	if resp, _ := c.do("POST", rfReset, map[string]string{"ResetType": "On"}); resp.StatusCode != http.StatusConflict {
		t.Fatalf("On when on: HTTP %d, want 409", resp.StatusCode)
	}
}

func TestRedfishOnlyBMCHasNoIPMI(t *testing.T) {
	m := newMemMachine()
	b := startBMC(t, Config{Machine: m, Protocols: []Protocol{ProtocolRedfish}})
	if b.addr.IsValid() {
		t.Fatalf("a Redfish-only BMC listened for IPMI on %s", b.addr)
	}
	c := newRFClient(t, b)
	sys := c.must("GET", rfSystem, nil, 200)
	if sol := sys["SerialConsole"].(map[string]any)["IPMI"].(map[string]any)["ServiceEnabled"]; sol != false {
		t.Fatalf("a Redfish-only BMC reports IPMI SOL %v", sol)
	}
	nic := c.must("GET", rfManagerNIC, nil, 200)
	if got := nic["IPv4Addresses"].([]any)[0].(map[string]any)["Address"]; got != "127.0.0.1" {
		t.Fatalf("manager NIC address %v", got)
	}
}

func TestParseProtocols(t *testing.T) {
	ps, err := ParseProtocols("ipmi, Redfish,ipmi")
	if err != nil || len(ps) != 2 || ps[0] != ProtocolIPMI || ps[1] != ProtocolRedfish {
		t.Fatalf("ParseProtocols = %v, %v", ps, err)
	}
	if _, err := ParseProtocols("ipmi,snmp"); err == nil || !strings.Contains(err.Error(), `"snmp"`) {
		t.Fatalf("snmp: %v", err)
	}
}

// TestRedfishCertificateSurvivesARestart: with files given, a restarted
// vBMC shows the certificate a client pinned.
func TestRedfishCertificateSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	first, err := serverCertificate(dir+"/c.pem", dir+"/k.pem", "n1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := serverCertificate(dir+"/c.pem", dir+"/k.pem", "n1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Certificate[0], again.Certificate[0]) {
		t.Fatal("the certificate changed across a restart")
	}
	other, _ := serverCertificate("", "", "n1")
	if bytes.Equal(first.Certificate[0], other.Certificate[0]) {
		t.Fatal("two BMCs got the same certificate")
	}
	writeFile(t, dir+"/bad.pem", "not a certificate")
	if _, err := serverCertificate(dir+"/bad.pem", dir+"/k.pem", "n1"); err == nil || !strings.Contains(err.Error(), "bad.pem") {
		t.Fatalf("a broken certificate file: %v", err)
	}
}
