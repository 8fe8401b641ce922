package rogue

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The rogue's reports must see what a leaky server gives away, or the
// e2e spec's "got nothing" would prove nothing: a fake boot service that
// serves every config, view and callback is caught on each count.
func TestReportsCatchALeakyServer(t *testing.T) {
	script := base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\nTOKEN='abc'\n"))
	leaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/ignition":
			w.Write([]byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/opt/racker/install.sh","contents":{"source":"data:;base64,` + script + `"}}]}}`))
		case r.URL.Path == "/api/v1/events" && r.Method == "POST":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Write([]byte("ok"))
		}
	}))
	defer leaky.Close()
	ctx := context.Background()
	r := FetchConfigs(ctx, leaky.URL, []string{"00:11:22:33:44:10"})
	if r.Ignition != 4 || r.Tokens != 4 || r.Views != 3 {
		t.Errorf("fetch-configs against a leaky server: %+v", r)
	}
	if c := Callbacks(ctx, leaky.URL, []string{"00:11:22:33:44:10"}); c.Accepted != 2*len(callbackKinds) {
		t.Errorf("callbacks against a leaky server: %+v", c)
	}
	strict := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer strict.Close()
	if r := FetchConfigs(ctx, strict.URL, []string{"00:11:22:33:44:10"}); r.Ignition+r.Tokens+r.Views != 0 || r.Codes[403] != r.Requests {
		t.Errorf("fetch-configs against a strict server: %+v", r)
	}
	if j := JunkHTTP(ctx, strict.URL, 8); j.Requests != 8 || j.Accepted != 0 {
		t.Errorf("junk HTTP: %+v", j)
	}
	if !strings.HasPrefix(randomMAC().String(), "") || randomMAC()[0]&1 != 0 {
		t.Error("random MACs must be unicast")
	}
}
