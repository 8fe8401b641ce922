package testos

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestReplaceSendsItsHTTPHeaders: config.replace with httpHeaders (spec
// 3.1+) is fetched with those headers, as Ignition does: Racker's boot stub
// presents the node's token that way, and a fetch without it is refused.
func TestReplaceSendsItsHTTPHeaders(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0ken-t0ken-t0ken-t0ken" {
			http.Error(w, "no token", http.StatusForbidden)
			return
		}
		w.Write([]byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hostname","contents":{"source":"data:,n1"}}]}}`))
	}))
	defer srv.Close()
	stub, err := ParseConfig([]byte(`{"ignition":{"version":"3.4.0","config":{"replace":{"source":"` + srv.URL +
		`/ignition","httpHeaders":[{"name":"Authorization","value":"Bearer t0ken-t0ken-t0ken-t0ken"}]}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Resolve(context.Background(), HTTPFetcher{}, stub, func(string) {})
	if err != nil {
		t.Fatalf("resolving a stub with httpHeaders: %v", err)
	}
	if len(cfg.Storage.Files) != 1 || cfg.Storage.Files[0].Path != "/etc/hostname" {
		t.Fatalf("replaced config: %+v", cfg.Storage.Files)
	}
	stub.Ignition.Config.Replace.HTTPHeaders = nil
	if _, err := Resolve(context.Background(), HTTPFetcher{}, stub, func(string) {}); err == nil {
		t.Fatal("the fetch without the header was not refused: the test server does not check")
	}
}
