package bmc

// Unlucky and hostile Redfish services, as a fake (httptest's TLS server
// with a hand-written handler): each test bends one thing a real BMC has
// been seen to do — no session service, busy answers, huge or redirected
// answers, several systems, a PATCH it ignores, no boot mode. The happy
// paths run against the simulator's vBMC in redfish_vbmc_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRedfish is a minimal Redfish service; its fields are the faults.
type fakeRedfish struct {
	mu          sync.Mutex
	sessions    bool   // offers a session service
	systems     int    // members of the Systems collection (default 1)
	busy        int    // answer 503 this many times
	systemBody  []byte // replaces the system's JSON
	ignorePATCH bool
	racedOn     bool // a Reset answers 409 because someone powered the node on
	noMode      bool
	redirect    string // GET of the system redirects here
	patches     []map[string]any
	resets      int
	authSeen    []string // Authorization / X-Auth-Token of every request
	boot        map[string]string
}

func (f *fakeRedfish) handler(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.authSeen = append(f.authSeen, r.Header.Get("Authorization")+r.Header.Get("X-Auth-Token"))
	if f.busy > 0 {
		f.busy--
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":{"code":"Base.1.8.ServiceTemporarilyUnavailable","message":"busy"}}`)
		return
	}
	js := func(v any) { w.Header().Set("Content-Type", "application/json"); json.NewEncoder(w).Encode(v) }
	if r.URL.Path == "/redfish/v1/" {
		root := map[string]any{"RedfishVersion": "1.6.0", "Systems": map[string]string{"@odata.id": "/redfish/v1/Systems"}}
		if f.sessions {
			root["Links"] = map[string]any{"Sessions": map[string]string{"@odata.id": "/redfish/v1/SessionService/Sessions"}}
		}
		js(root)
		return
	}
	if r.URL.Path == "/redfish/v1/SessionService/Sessions" && r.Method == "POST" {
		w.Header().Set("X-Auth-Token", "tok")
		w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/1")
		w.WriteHeader(http.StatusCreated)
		return
	}
	if u, p, ok := r.BasicAuth(); !(ok && u == testUser && p == testPassword) && r.Header.Get("X-Auth-Token") != "tok" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch {
	case r.URL.Path == "/redfish/v1/Systems":
		n := f.systems
		if n == 0 {
			n = 1
		}
		var members []map[string]string
		for i := 1; i <= n; i++ {
			members = append(members, map[string]string{"@odata.id": fmt.Sprintf("/redfish/v1/Systems/%d", i)})
		}
		js(map[string]any{"Members": members, "Members@odata.count": n})
	case r.URL.Path == "/redfish/v1/Systems/1" && r.Method == "GET":
		if f.redirect != "" {
			http.Redirect(w, r, f.redirect, http.StatusFound)
			return
		}
		if f.systemBody != nil {
			w.Write(f.systemBody)
			return
		}
		boot := map[string]any{}
		for k, v := range f.boot {
			boot[k] = v
		}
		if f.noMode {
			delete(boot, "BootSourceOverrideMode")
		}
		power := "Off"
		if f.racedOn {
			power = "On"
		}
		if f.resets == 0 {
			power = "Off" // as first read, before the race
		}
		js(map[string]any{"@odata.id": "/redfish/v1/Systems/1", "PowerState": power, "Boot": boot,
			"Actions": map[string]any{"#ComputerSystem.Reset": map[string]string{"target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"}}})
	case r.URL.Path == "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset":
		f.resets++
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"error":{"code":"Base.1.8.ResetTypeNotAllowedInState","message":"already on"}}`)
	case r.URL.Path == "/redfish/v1/Systems/1" && r.Method == "PATCH":
		var p map[string]any
		json.NewDecoder(r.Body).Decode(&p)
		f.patches = append(f.patches, p)
		if !f.ignorePATCH {
			for k, v := range p["Boot"].(map[string]any) {
				f.boot[k] = v.(string)
			}
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func startFakeRedfish(t *testing.T, f *fakeRedfish) (*httptest.Server, Controller, *bytes.Buffer) {
	t.Helper()
	if f.boot == nil {
		f.boot = map[string]string{"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None", "BootSourceOverrideMode": "Legacy"}
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(f.handler))
	t.Cleanup(srv.Close)
	var logs bytes.Buffer
	opts := redfishOpts(t, &logs)
	opts.Backoff = 10 * time.Millisecond
	c := openTest(t, "redfish://"+srv.Listener.Addr().String(), opts)
	return srv, c, &logs
}

func TestRedfishBasicAuthWhenThereAreNoSessions(t *testing.T) {
	f := &fakeRedfish{}
	_, c, _ := startFakeRedfish(t, f)
	if s, err := c.PowerState(context.Background()); err != nil || s != PowerOff {
		t.Fatalf("PowerState = %s, %v", s, err)
	}
	d, err := c.Diag(context.Background())
	if err != nil || !strings.Contains(d.Protocol, "Basic") {
		t.Fatalf("Diag = %+v, %v", d, err)
	}
}

func TestRedfishBusyBMCIsRetriedThenGivenUp(t *testing.T) {
	f := &fakeRedfish{sessions: true, busy: 2}
	_, c, _ := startFakeRedfish(t, f)
	if _, err := c.PowerState(context.Background()); err != nil {
		t.Fatalf("after two 503s: %v", err)
	}
	f.mu.Lock()
	f.busy = 100
	f.mu.Unlock()
	_, err := c.PowerState(context.Background())
	var re *RedfishError
	if !errors.As(err, &re) || re.Status != 503 || !strings.Contains(err.Error(), "after 3 tries") || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("err = %v", err)
	}
}

func TestRedfishHostileAnswers(t *testing.T) {
	ctx := context.Background()
	t.Run("huge body", func(t *testing.T) {
		f := &fakeRedfish{sessions: true, systemBody: append([]byte(`{"PowerState":"`), bytes.Repeat([]byte("x"), maxRedfishBody+10)...)}
		_, c, _ := startFakeRedfish(t, f)
		if _, err := c.PowerState(ctx); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("redirect", func(t *testing.T) {
		var leaked []string
		var mu sync.Mutex
		other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			leaked = append(leaked, r.Header.Get("X-Auth-Token")+r.Header.Get("Authorization"))
			mu.Unlock()
		}))
		defer other.Close()
		f := &fakeRedfish{sessions: true, redirect: other.URL + "/steal"}
		_, c, _ := startFakeRedfish(t, f)
		if _, err := c.PowerState(ctx); err == nil || !strings.Contains(err.Error(), "not following") {
			t.Fatalf("err = %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(leaked) != 0 {
			t.Fatalf("the redirect target got %d requests (%q)", len(leaked), leaked)
		}
	})
	t.Run("several systems", func(t *testing.T) {
		f := &fakeRedfish{sessions: true, systems: 2}
		srv, c, _ := startFakeRedfish(t, f)
		_, err := c.PowerState(ctx)
		if err == nil || !strings.Contains(err.Error(), "manages 2 systems") ||
			!strings.Contains(err.Error(), "redfish://"+srv.Listener.Addr().String()+"/redfish/v1/Systems/1") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown boot target", func(t *testing.T) {
		f := &fakeRedfish{sessions: true, boot: map[string]string{"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "UefiHttp"}}
		_, c, _ := startFakeRedfish(t, f)
		if _, err := c.Boot(ctx); err == nil || !strings.Contains(err.Error(), `"UefiHttp" is neither Pxe nor Hdd`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never speaks TLS
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
			}
		}()
		opts := redfishOpts(t, nil)
		opts.TryTimeout, opts.Backoff = 200*time.Millisecond, 10*time.Millisecond
		c := openTest(t, "redfish://"+ln.Addr().String(), opts)
		_, err = c.PowerState(ctx)
		if !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "BMC redfish://"+ln.Addr().String()) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestRedfishBMCThatIgnoresThePatchIsUnverified(t *testing.T) {
	f := &fakeRedfish{sessions: true, ignorePATCH: true}
	_, c, logs := startFakeRedfish(t, f)
	ok, err := c.SetBoot(context.Background(), BootFlags{Device: DevicePXE, EFI: true})
	if err != nil || ok {
		t.Fatalf("SetBoot = %v, %v; want unverified, no error", ok, err)
	}
	f.mu.Lock()
	n := len(f.patches)
	f.mu.Unlock()
	if n != 3 || !strings.Contains(logs.String(), "unverified") {
		t.Fatalf("%d PATCHes (want a bounded 3); logs:\n%s", n, logs)
	}
}

func TestRedfishBMCWithoutBootModeGetsNone(t *testing.T) {
	f := &fakeRedfish{sessions: true, noMode: true}
	_, c, logs := startFakeRedfish(t, f)
	ok, err := c.SetBoot(context.Background(), BootFlags{Device: DeviceDisk, Persistent: true, EFI: true})
	if err != nil || ok {
		t.Fatalf("SetBoot = %v, %v; want unverified (mode not reported)", ok, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.patches) != 1 {
		t.Fatalf("%d PATCHes, want 1 (the rest read back as written)", len(f.patches))
	}
	got, _ := json.Marshal(f.patches[0])
	if want := `{"Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideTarget":"Hdd"}}`; string(got) != want {
		t.Fatalf("PATCH body %s, want %s", got, want)
	}
	if !strings.Contains(logs.String(), "does not report BootSourceOverrideMode") {
		t.Fatalf("no warning:\n%s", logs)
	}
}

func TestRedfishMessageOfErrorBodies(t *testing.T) {
	for body, want := range map[string]string{
		`{"error":{"code":"x","message":"general","@Message.ExtendedInfo":[{"MessageId":"Base.1.8.PropertyUnknown","Message":"The property X is unknown."}]}}`: "The property X is unknown.",
		`{"error":{"code":"x","message":"general"}}`: "general",
		`<html>Internal Server Error</html>`:         "<html>Internal Server Error</html>",
		strings.Repeat("y", 500):                     strings.Repeat("y", 200) + "…",
	} {
		if got := redfishMessage([]byte(body)); got != want {
			t.Errorf("redfishMessage(%.40q) = %q, want %q", body, got, want)
		}
	}
	e := &RedfishError{Method: "PATCH", Resource: "/redfish/v1/Systems/1", Status: 400, Message: "bad"}
	if e.Error() != "PATCH /redfish/v1/Systems/1: HTTP 400 Bad Request: bad" {
		t.Fatalf("RedfishError = %q", e.Error())
	}
}

func TestRedfishConflictBecauseTheNodeGotThereMeanwhile(t *testing.T) {
	f := &fakeRedfish{sessions: true, racedOn: true}
	_, c, _ := startFakeRedfish(t, f)
	if err := c.Power(context.Background(), ActionOn); err != nil {
		t.Fatalf("power on answered 409 while someone else powered it on: %v", err)
	}
	// Off is not where the node is: the 409 stays an error, with its words.
	err := c.Power(context.Background(), ActionOff)
	if err == nil || !strings.Contains(err.Error(), "HTTP 409 Conflict: already on") {
		t.Fatalf("power off: %v", err)
	}
}
