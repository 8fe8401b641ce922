package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCallbackValidate(t *testing.T) {
	good, err := Callback{MAC: "00-11-22-33-44-AA", Event: KindInstalled}.Validate()
	if err != nil || good.MAC != "00:11:22:33:44:aa" {
		t.Fatalf("good callback: %+v, %v", good, err)
	}
	bad := []Callback{
		{MAC: "nope", Event: KindBooted},
		{MAC: "00:11:22:33:44:aa", Event: KindDHCP}, // not a callback kind
		{MAC: "00:11:22:33:44:aa", Event: "exploded"},
		{MAC: "00:11:22:33:44:aa", Event: KindFailed, Message: strings.Repeat("x", MaxMessageBytes+1)},
	}
	for _, c := range bad {
		if _, err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
}

func TestNodeJSONFieldNames(t *testing.T) {
	b, err := json.Marshal(Node{PrimaryMAC: "00:11:22:33:44:10", Target: TargetInstall, Phase: PhaseUnknown})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{`"primary_mac"`, `"hostname"`, `"ip"`, `"bmc_mac"`, `"bmc_ip"`, `"target":"install"`, `"install_generation"`, `"wipe_all"`, `"phase":"unknown"`, `"last_event"`} {
		if !strings.Contains(string(b), f) {
			t.Errorf("node JSON %s lacks %s", b, f)
		}
	}
}

// The client against a real loopback HTTP server that answers canned JSON
// (a fake server: the real one is tested in provisioner/bootsvc/internal/web).
func TestClientDecodesAndReportsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/v1/events" && r.Method == http.MethodGet:
			if r.URL.Query().Get("after") != "7" || r.URL.Query().Get("wait") != "2s" {
				http.Error(w, "bad query "+r.URL.RawQuery, 400)
				return
			}
			json.NewEncoder(w).Encode(EventsResponse{Events: []Event{{Seq: 8, Kind: KindBooted, MAC: "00:11:22:33:44:10"}}})
		case r.URL.Path == "/api/v1/nodes/00:11:22:33:44:10/reinstall":
			var req ReinstallRequest
			json.NewDecoder(r.Body).Decode(&req)
			json.NewEncoder(w).Encode(Node{PrimaryMAC: "00:11:22:33:44:10", Target: TargetInstall, WipeAll: req.WipeAll, InstallGeneration: 2})
		default:
			w.WriteHeader(403)
			json.NewEncoder(w).Encode(ErrorResponse{Error: "not yours"})
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL + "/")
	ctx := context.Background()
	evs, err := c.Events(ctx, 7, 2*time.Second)
	if err != nil || len(evs) != 1 || evs[0].Seq != 8 {
		t.Fatalf("Events = %+v, %v", evs, err)
	}
	n, err := c.Reinstall(ctx, "00:11:22:33:44:10", true)
	if err != nil || !n.WipeAll || n.InstallGeneration != 2 {
		t.Fatalf("Reinstall = %+v, %v", n, err)
	}
	err = c.PostEvent(ctx, Callback{MAC: "00:11:22:33:44:10", Event: KindBooted}, "0123456789abcdef")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 403 || se.Message != "not yours" {
		t.Fatalf("PostEvent error = %v, want a 403 StatusError", err)
	}
}

func TestNilMetricsAreSafe(t *testing.T) {
	var m *Metrics
	m.Lease("node")
	m.Transfer("undionly.kpxe", 10, nil)
	m.Event(KindDHCP)
	m2 := NewMetrics()
	m2.Request("ipxe", 200)
	m2.Request("x", 418)
	fams, err := m2.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fams {
		if f.GetName() == "racker_http_requests_total" && len(f.GetMetric()) == 2 {
			found = true
		}
	}
	if !found {
		t.Error("racker_http_requests_total with two label sets not gathered")
	}
}
